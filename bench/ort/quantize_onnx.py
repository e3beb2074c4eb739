#!/usr/bin/python3
"""Quantise the benchmark's ONNX graph to int8, as ONNX Runtime's quantize_dynamic does.

Every MatMul whose second input is a constant 2-D weight W[K, N] (the linear
layers; attention's activation products stay fp32) becomes

    DynamicQuantizeLinear(x) -> x_q (uint8), x_scale, x_zero_point   # per tensor, at run time
    MatMulInteger(x_q, W_q, x_zero_point, W_zero_point) -> int32
    Cast(float) * (x_scale * W_scale)                                 # back to fp32

with W_q int8, one symmetric scale per column (output channel) W_scale[n] =
max|W[:, n]| / 127 and zero points 0: quantize_dynamic(per_channel=True,
weight_type=QInt8).  Only python3-onnx is needed (Debian has no
onnxruntime-tools).

usage: bench/ort/quantize_onnx.py IN.onnx OUT.onnx
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main():
    src, out = sys.argv[1], sys.argv[2]
    model = onnx.load(src)
    g = model.graph
    constants = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    nodes, quantised = [], 0
    for n in g.node:
        c = constants.get(n.input[1]) if n.op_type == "MatMul" else None
        w = numpy_helper.to_array(c.attribute[0].t) if c is not None and c.attribute[0].name == "value" else None
        if w is None or w.ndim != 2 or w.dtype != np.float32:
            nodes.append(n)
            continue
        p = f"q{quantised}_"
        scale = np.abs(w).max(axis=0) / 127.0
        scale[scale == 0] = 1.0
        wq = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        g.initializer.extend([
            numpy_helper.from_array(wq, p + "w"),
            numpy_helper.from_array(scale.astype(np.float32), p + "w_scale"),
            numpy_helper.from_array(np.zeros(w.shape[1], np.int8), p + "w_zero"),
        ])
        nodes += [
            helper.make_node("DynamicQuantizeLinear", [n.input[0]], [p + "x", p + "x_scale", p + "x_zero"]),
            helper.make_node("MatMulInteger", [p + "x", p + "w", p + "x_zero", p + "w_zero"], [p + "acc"]),
            helper.make_node("Cast", [p + "acc"], [p + "accf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [p + "x_scale", p + "w_scale"], [p + "scale"]),
            helper.make_node("Mul", [p + "accf", p + "scale"], [n.output[0]]),
        ]
        quantised += 1
    del g.node[:]
    g.node.extend(nodes)
    # the weights' Constant nodes no MatMul reads any more
    used = {i for n in g.node for i in n.input}
    keep = [n for n in g.node if n.op_type != "Constant" or n.output[0] in used]
    del g.node[:]
    g.node.extend(keep)
    onnx.checker.check_model(model)
    onnx.save(model, out)
    print(f"{out}: {quantised} MatMul nodes quantised, {os.path.getsize(out)} bytes")


if __name__ == "__main__":
    main()
