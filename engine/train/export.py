"""ONNX export and int8 quantisation shared by the DNA and image encoders."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np


def export_onnx(model, example: "object", path: str | Path, input_name: str, output_name: str,
                dynamic_axes: Mapping[int, str]) -> Path:
    """Export with the dynamo exporter; dynamic_axes maps input axis -> name (e.g. {0: "batch"}).

    The legacy exporter freezes a transformer's sequence length, so dynamo it is. Pick an
    output name no aten op has ("embedding" collides with the Gather of nn.Embedding).
    """
    import torch
    from torch.export import Dim

    path = Path(path)
    model.eval()
    dims = {axis: Dim.DYNAMIC for axis in dynamic_axes}
    program = torch.onnx.export(
        model, (example,), dynamo=True, external_data=False, verbose=False,
        input_names=[input_name], output_names=[output_name],
        dynamic_shapes=({**dims},),
    )
    program.save(str(path))
    return path


class _Reader:
    """onnxruntime CalibrationDataReader over an iterable of input arrays."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]):
        self._it = iter({input_name: b} for b in batches)

    def get_next(self):
        return next(self._it, None)


def quantize_static_int8(fp32: str | Path, out: str | Path, input_name: str,
                         calibration_batches: Iterable[np.ndarray], per_channel: bool = True,
                         op_types: Sequence[str] | None = None, fp32_weights: Sequence[str] = (),
                         correct_bias: bool = True) -> Path:
    """Static QDQ int8 (weights and activations), calibrated on real inputs.

    Static, not dynamic: ONNX Runtime's dynamic int8 convolutions run ~6x slower than fp32.
    ``op_types`` limits quantisation to those operators (e.g. ["Conv"] keeps a small
    projection head in fp32, where one uint8 scale per tensor costs embedding accuracy).
    Nodes whose weight's name starts with one of ``fp32_weights`` stay fp32.
    ``correct_bias`` then runs empirical bias correction (see ``correct_conv_biases``) on the
    same calibration inputs.
    """
    import tempfile

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = Path(out)
    batches = list(calibration_batches)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        keep = _nodes_with_weights(pre, fp32_weights) if fp32_weights else []
        quantize_static(
            str(pre), str(out), _Reader(input_name, batches),
            quant_format=QuantFormat.QDQ, per_channel=per_channel,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            **({"op_types_to_quantize": list(op_types)} if op_types else {}),
            **({"nodes_to_exclude": keep} if keep else {}),
        )
        if correct_bias:
            correct_conv_biases(pre, out, input_name, batches)
    return out


def correct_conv_biases(fp32: str | Path, qdq: str | Path, input_name: str,
                        batches: Sequence[np.ndarray]) -> int:
    """Empirical bias correction (Nagel et al. 2019, "Data-free quantization through weight
    equalization and bias correction"), in place on the QDQ model ``qdq``.

    Rounding int8 weights and activations shifts the mean of each output channel a little,
    and in a deep depthwise network (EfficientNet-Lite) the shifts add up: the image model's
    embeddings of specimen photos drifted to cosine 0.987 from fp32. Going through the
    quantised convolutions in graph order, each one's bias is moved by its output channels'
    mean error on the calibration inputs, measured with every earlier convolution already
    corrected (correcting all at once from one measurement over-corrects: the errors
    downstream are partly those of upstream layers). ``fp32`` must be the model the QDQ one
    was quantised from (same node names). Returns the number of convolutions corrected.
    """
    import onnx
    from onnx import numpy_helper

    reference = onnx.load(str(fp32))
    model = onnx.load(str(qdq))
    fp32_convs = {n.name: n for n in reference.graph.node if n.op_type == "Conv"}
    producer = {o: n for n in model.graph.node for o in n.output}
    initializers = {t.name: t for t in model.graph.initializer}
    # quantised convolutions: the weight comes through a DequantizeLinear; others stay fp32
    convs = [n for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 2
             and getattr(producer.get(n.input[1]), "op_type", "") == "DequantizeLinear"]
    missing = [n.name for n in convs if n.name not in fp32_convs]
    if missing:
        raise ValueError(f"{Path(fp32).name} has no convolution named {missing[0]}: not the model {Path(qdq).name} came from")
    targets = _channel_means(reference, [fp32_convs[n.name].output[0] for n in convs], input_name, batches)
    for conv, target in zip(convs, targets):
        error = target - _channel_means(model, [conv.output[0]], input_name, batches)[0]
        dq = producer.get(conv.input[2])
        if dq is not None and dq.op_type == "DequantizeLinear":  # int32 bias, scale = input x weight scale
            bias, scale = initializers[dq.input[0]], numpy_helper.to_array(initializers[dq.input[1]])
            value = numpy_helper.to_array(bias).astype(np.int64) + np.round(error / scale).astype(np.int64)
            value = np.clip(value, np.iinfo(np.int32).min, np.iinfo(np.int32).max).astype(np.int32)
        else:
            bias = initializers[conv.input[2]]
            value = (numpy_helper.to_array(bias) + error).astype(np.float32)
        bias.CopyFrom(numpy_helper.from_array(value, bias.name))
    onnx.save(model, str(qdq))
    return len(convs)


def _channel_means(model, tensors: Sequence[str], input_name: str, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per-channel (axis 1) means of intermediate ``tensors`` of an in-memory ONNX model."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in tensors if t not in outputs)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    sums, counts = [0.0] * len(tensors), [0] * len(tensors)
    for batch in batches:
        for i, value in enumerate(session.run(list(tensors), {input_name: batch})):
            flat = value.reshape(value.shape[0], value.shape[1], -1)
            sums[i] = sums[i] + flat.astype(np.float64).sum(axis=(0, 2))
            counts[i] += flat.shape[0] * flat.shape[2]
    return [s / c for s, c in zip(sums, counts)]


def _nodes_with_weights(model: Path, prefixes: Sequence[str]) -> list[str]:
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    nodes = [n.name for n in graph.node if any(i in initializers and i.startswith(tuple(prefixes)) for i in n.input)]
    if not nodes:
        raise ValueError(f"no node of {model.name} has a weight named {', '.join(prefixes)}...")
    return nodes


def quantize_dynamic_int8(fp32: str | Path, out: str | Path) -> Path:
    """Dynamic int8 (weights only) for transformer encoders (MatMul-heavy, no convolutions)."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8)
    return out


def int8_cosine(fp32: str | Path, int8: str | Path, inputs: Mapping[str, np.ndarray]) -> dict:
    """Mean and min cosine between the int8 and fp32 models' outputs on the same inputs."""
    from engine.models.runtime import create_session

    a = create_session(fp32, "cpu").run(None, dict(inputs))[0].reshape(len(next(iter(inputs.values()))), -1)
    b = create_session(int8, "cpu").run(None, dict(inputs))[0].reshape(a.shape)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)).clip(1e-12)
    return {"mean": round(float(cos.mean()), 4), "min": round(float(cos.min()), 4)}


def exact_topk_graph() -> bytes:
    """The ONNX graph behind engine.search.ExactIndex: similarities = queries @ references^T, then
    TopK along the references (committed as engine/models/exact_topk.onnx; the runtime has no
    `onnx` package to build it). ONNX Runtime runs both ops multi-threaded, ~6x faster than
    numpy's matmul + argpartition on 2 cores."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Gemm", ["queries", "references"], ["scores"], transB=1),
         helper.make_node("TopK", ["scores", "k"], ["similarities", "indices"], axis=1, largest=1, sorted=1)],
        "exact_topk",
        [helper.make_tensor_value_info("queries", TensorProto.FLOAT, ["n", "d"]),
         helper.make_tensor_value_info("references", TensorProto.FLOAT, ["m", "d"]),
         helper.make_tensor_value_info("k", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("similarities", TensorProto.FLOAT, ["n", "k"]),
         helper.make_tensor_value_info("indices", TensorProto.INT64, ["n", "k"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="bioscan-desktop")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
