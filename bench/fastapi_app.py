"""The usual Python alternative to an Edgewise node: FastAPI on uvicorn, answering the same
KServe V2 JSON request (`POST /v2/models/{name}/infer`) with ONNX Runtime running the same
model. `EDGEWISE_BENCH_ONNX` names the ONNX file (from `edgewise-train export`, built by
bench/engine.py). Run: uvicorn --app-dir bench fastapi_app:app.
"""

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(os.environ["EDGEWISE_BENCH_ONNX"], options,
                               providers=["CPUExecutionProvider"])
app = FastAPI()


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferRequest(BaseModel):
    inputs: list[Tensor]


@app.post("/v2/models/{model}/infer")
def infer(model: str, request: InferRequest):
    tensor = request.inputs[0]
    if tensor.datatype != "FP32" or len(tensor.shape) != 2:
        raise HTTPException(400, "inputs[0] must be FP32 with shape [batch, features]")
    values = np.asarray(tensor.data, dtype=np.float32)
    if values.size != tensor.shape[0] * tensor.shape[1]:
        raise HTTPException(400, "inputs[0].data does not hold shape's values")
    probabilities = session.run(None, {"input": values.reshape(tensor.shape)})[0]
    return {
        "model_name": model,
        "outputs": [{"name": "probabilities", "shape": list(probabilities.shape),
                     "datatype": "FP32", "data": probabilities.ravel().tolist()}],
    }
