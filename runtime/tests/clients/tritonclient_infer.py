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
classes = metadata["outputs"][0]["shape"][1]
answers = {}
# JSON tensors, then the client's defaults (the binary tensor extension both ways).
for binary in (False, True):
    tensor = httpclient.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput("probabilities", binary_data=binary),
        httpclient.InferRequestedOutput("label", binary_data=binary),
    ]
    result = client.infer(model, inputs=[tensor], outputs=outputs, request_id="stock-client")
    probabilities = result.as_numpy("probabilities")
    labels = result.as_numpy("label")
    assert probabilities.shape == (3, classes), probabilities.shape
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4), probabilities
    assert labels.shape == (3,), labels.shape
    answers[binary] = [label.decode() if isinstance(label, bytes) else str(label) for label in labels]
    # With no outputs named, the client asks for every output in binary.
    tensor_only = client.infer(model, inputs=[tensor]).as_numpy("probabilities")
    assert np.allclose(tensor_only, probabilities, atol=1e-6)
assert answers[False] == answers[True], answers
print("stock client OK:", answers[True])
