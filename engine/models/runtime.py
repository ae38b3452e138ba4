"""ONNX Runtime sessions with an explicit device choice (CUDA when present, else CPU)."""
from __future__ import annotations

from pathlib import Path

from engine.errors import ModelPackError

DEVICES = ("auto", "cpu", "cuda")


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def providers_for(device: str = "auto") -> list[str]:
    """Execution providers to ask for, in order of preference."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    have = available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in have:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ModelPackError(
            "device 'cuda' was asked for, but this ONNX Runtime has no CUDA provider "
            "(install onnxruntime-gpu and a CUDA driver, or use --device cpu)"
        )
    return ["CPUExecutionProvider"]


def describe_device(device: str = "auto") -> str:
    """A short label for status bars and logs: 'GPU (CUDA)' or 'CPU'."""
    return "GPU (CUDA)" if providers_for(device)[0] == "CUDAExecutionProvider" else "CPU"


def create_session(model_path: str | Path, device: str = "auto", threads: int = 0):
    """An InferenceSession on the preferred device; threads=0 lets ONNX Runtime use all cores."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(model_path), sess_options=opts, providers=providers_for(device))
    except Exception as exc:  # onnxruntime raises its own types for corrupt models
        raise ModelPackError(f"{model_path}: ONNX Runtime could not load the model ({exc})") from exc
