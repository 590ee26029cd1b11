"""A second client for the serving benchmark: one keep-alive connection from Python's
http.client, 500 sequential requests to each server, median latency. If wrk's c=1
figure for a server is far from this one, the load tool is measuring TCP, not the server.
"""

import http.client
import json
import statistics
import sys
import time

BODY = json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                               "data": [float(i % 17) for i in range(64)]}]})

for label, port in (("edgewise", sys.argv[1]), ("fastapi", sys.argv[2])):
    connection = http.client.HTTPConnection("127.0.0.1", int(port))
    samples = []
    for _ in range(500):
        start = time.perf_counter()
        connection.request("POST", "/v2/models/digits/infer", BODY,
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            sys.exit(f"{label} answered {response.status}")
        samples.append(time.perf_counter() - start)
    print(f"cross-check, http.client, 1 connection: {label} median {statistics.median(samples) * 1e6:.0f} µs")
