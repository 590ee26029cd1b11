#!/usr/bin/env python3
"""Engine benchmark: one trained bundle in Edgewise and in ONNX Runtime, side by side.

The bundle's weights are exported by `edgewise-train export`, rebuilt as an ONNX graph
with the `onnx` package (normalise, then MatMul/Add and the activations, then Softmax),
checked against the bundle's own self-test vectors to 1e-5, and timed in ONNX Runtime
(CPU, one thread, as the Edgewise engine runs) at each batch size. Edgewise is timed by
`edgewise-train bench` on the same machine in the same run: its serving path (the dense
fast path for small batches of a network like this, burn above), burn's general path,
and the GPU where one exists. ONNX Runtime is timed as Python code calls it
(`session.run`, what a FastAPI server pays), and so is a graph that does nothing, to
show how much of that is the fixed cost of a call.
Prints a table with the ratios and writes the figures as JSON.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def build_onnx(exported):
    """An ONNX model computing the exported network's class probabilities."""
    norm = exported["normalization"]
    width = len(norm["mean"])
    nodes, inits = [], []
    inits.append(numpy_helper.from_array(np.array(norm["mean"], np.float32), "mean"))
    inits.append(numpy_helper.from_array(np.array(norm["std"], np.float32), "std"))
    nodes.append(helper.make_node("Sub", ["input", "mean"], ["centred"]))
    nodes.append(helper.make_node("Div", ["centred", "std"], ["x0"]))
    current, n = "x0", 0
    for step in exported["network"]["steps"]:
        n += 1
        out = f"x{n}"
        op = step["op"]
        if op == "linear":
            w = np.array(step["weight"], np.float32).reshape(step["inputs"], step["outputs"])
            inits.append(numpy_helper.from_array(w, f"w{n}"))
            inits.append(numpy_helper.from_array(np.array(step["bias"], np.float32), f"b{n}"))
            nodes.append(helper.make_node("Gemm", [current, f"w{n}", f"b{n}"], [out]))
        elif op == "relu":
            nodes.append(helper.make_node("Relu", [current], [out]))
        elif op == "tanh":
            nodes.append(helper.make_node("Tanh", [current], [out]))
        elif op == "sigmoid":
            nodes.append(helper.make_node("Sigmoid", [current], [out]))
        else:
            sys.exit(f"unknown step {op!r}")
        current = out
    nodes.append(helper.make_node("Softmax", [current], ["probabilities"], axis=1))
    classes = len(exported["labels"])
    graph = helper.make_graph(
        nodes,
        exported["model"],
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def time_ort(session, inputs, iterations, warmup=200):
    """Median and p99 of session.run per batch, microseconds."""
    feed = {"input": inputs}
    for _ in range(warmup):
        session.run(None, feed)
    samples = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        session.run(None, feed)
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return statistics.median(samples), samples[round((len(samples) - 1) * 0.99)]


def time_ort_floor(width, inputs, iterations):
    """ONNX Runtime's cost per call through Python for a graph that does nothing
    (Identity on the same input): the fixed part of `session.run`, microseconds."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])], "floor",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", width])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), single_thread_options(),
                                   providers=["CPUExecutionProvider"])
    return time_ort(session, inputs, iterations)


def single_thread_options():
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


def edgewise(trainer, bundle, device, path, batches, iterations):
    args = [trainer, "bench", bundle, "--device", device, "--path", path, "--iterations", str(iterations)]
    for batch in batches:
        args += ["--batch", str(batch)]
    run = subprocess.run(args, capture_output=True, text=True)
    if run.returncode != 0:
        return None, run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "failed"
    return json.loads(run.stdout), None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainer", required=True, help="the edgewise-train binary")
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--onnx-out", required=True, help="where to write the ONNX model")
    parser.add_argument("--json-out", required=True, help="where to write the figures")
    parser.add_argument("--batch", type=int, action="append", default=None)
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--export-only", action="store_true",
                        help="write and check the ONNX model, time nothing")
    args = parser.parse_args()
    batches = args.batch or [1, 64]

    exported = json.loads(subprocess.run(
        [args.trainer, "export", args.bundle], check=True, capture_output=True, text=True).stdout)
    model = build_onnx(exported)
    onnx.save(model, args.onnx_out)

    session = ort.InferenceSession(args.onnx_out, single_thread_options(),
                                   providers=["CPUExecutionProvider"])

    # The same function: ONNX Runtime reproduces the bundle's self-test to 1e-5.
    test = exported["self_test"]
    got = session.run(None, {"input": np.array(test["inputs"], np.float32)})[0]
    worst = float(np.max(np.abs(got - np.array(test["expected_probabilities"], np.float32))))
    if worst > 1e-5:
        sys.exit(f"ONNX Runtime's outputs differ from the bundle's self-test by {worst}")
    if args.export_only:
        print(f"wrote {args.onnx_out}; ONNX Runtime reproduces the self-test to {worst:.1e}")
        return

    rows = np.array(test["inputs"], np.float32)
    results = {"machine": f"{platform.processor() or platform.machine()}, "
                          f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores",
               "model": f"{exported['model']} v{exported['version']}",
               "onnxruntime": ort.__version__, "self_test_max_diff": worst, "runs": []}
    for batch in batches:
        inputs = np.resize(rows, (batch, rows.shape[1])).astype(np.float32)
        median, p99 = time_ort(session, inputs, args.iterations)
        results["runs"].append({"engine": "ONNX Runtime (CPU, 1 thread, Python API)", "batch": batch,
                                "median_us": median, "p99_us": p99})
        median, p99 = time_ort_floor(rows.shape[1], inputs, args.iterations)
        results["runs"].append({"engine": "  its per-call floor (an Identity graph)",
                                "batch": batch, "median_us": median, "p99_us": p99})
    for device, path, label in [("cpu", "serving", "Edgewise CPU (serving path)"),
                                ("cpu", "burn", "Edgewise CPU (burn flex)"),
                                ("gpu", "serving", "Edgewise GPU (wgpu)")]:
        report, error = edgewise(args.trainer, args.bundle, device, path, batches, args.iterations)
        if report is None:
            print(f"{label}: skipped ({error})", file=sys.stderr)
            continue
        for timing in report["timings"]:
            results["runs"].append({"engine": f"{label}: {report['device']}, {timing['path']}",
                                    "batch": timing["batch"], "median_us": timing["median_us"],
                                    "p99_us": timing["p99_us"]})

    with open(args.json_out, "w") as out:
        json.dump(results, out, indent=2)
    print(f"machine: {results['machine']}; model {results['model']}; onnxruntime {ort.__version__}")
    print(f"ONNX Runtime reproduces the self-test to {worst:.1e}")
    print(f"{'engine':<62} {'batch':>5} {'median µs':>10} {'p99 µs':>9} {'vs ORT':>7}")
    ort_median = {r["batch"]: r["median_us"] for r in results["runs"] if "Python API" in r["engine"]}
    for r in results["runs"]:
        ratio = ort_median[r["batch"]] / r["median_us"]
        print(f"{r['engine']:<62} {r['batch']:>5} {r['median_us']:>10.2f} {r['p99_us']:>9.2f} {ratio:>6.2f}×")
    print("(vs ORT: ONNX Runtime's median through its Python API over this engine's; above 1 means faster)")


if __name__ == "__main__":
    main()
