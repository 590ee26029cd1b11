"""Drive a running edgewise-runtime with NVIDIA's stock KServe V2 HTTP client.

Usage: python3 tritonclient_infer.py HOST:PORT MODEL
Exits non-zero if any call fails or returns something a KServe V2 client cannot read.
"""
import sys

import numpy as np
import tritonclient.http as httpclient

url, model = sys.argv[1], sys.argv[2]
client = httpclient.InferenceServerClient(url=url)
assert client.is_server_live(), "server not live"
assert client.is_server_ready(), "server not ready"
assert client.is_model_ready(model), "model not ready"
metadata = client.get_model_metadata(model)
width = metadata["inputs"][0]["shape"][1]

batch = np.arange(3 * width, dtype=np.float32).reshape(3, width) % 17
tensor = httpclient.InferInput("input", list(batch.shape), "FP32")
tensor.set_data_from_numpy(batch, binary_data=False)
outputs = [
    httpclient.InferRequestedOutput("probabilities", binary_data=False),
    httpclient.InferRequestedOutput("label", binary_data=False),
]
result = client.infer(model, inputs=[tensor], outputs=outputs, request_id="stock-client")
probabilities = result.as_numpy("probabilities")
labels = result.as_numpy("label")
classes = metadata["outputs"][0]["shape"][1]
assert probabilities.shape == (3, classes), probabilities.shape
assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4), probabilities
assert labels.shape == (3,), labels.shape
print("stock client OK:", [label.decode() if isinstance(label, bytes) else label for label in labels])
