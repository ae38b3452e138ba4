"""ONNX Runtime sessions with an explicit device choice (CUDA when present, else CPU)."""
from __future__ import annotations

import ctypes
import sys
from pathlib import Path

from engine.errors import ModelPackError

DEVICES = ("auto", "cpu", "cuda")

# ONNX Runtime's telemetry is switched off by engine.offline (ORT_DISABLE_TELEMETRY), which the
# engine package runs on import, so before any import of onnxruntime below.


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def cuda_device_count() -> int:
    """CUDA devices the NVIDIA driver reports; 0 without a driver or a device.

    onnxruntime-gpu lists CUDAExecutionProvider on any machine, and its sessions fall back to
    the CPU when there is no GPU, so the provider list alone cannot say which device is used.
    """
    names = ("nvcuda.dll",) if sys.platform == "win32" else ("libcuda.so.1", "libcuda.so")
    for name in names:
        try:
            driver = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0  # a driver without a usable device (or with an error) is no GPU
        return count.value
    return 0


def providers_for(device: str = "auto") -> list[str]:
    """Execution providers to ask for, in order of preference."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    has_provider = "CUDAExecutionProvider" in available_providers()
    if has_provider and cuda_device_count() > 0:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ModelPackError(
            "device 'cuda' was asked for, but "
            + ("no CUDA device was found (NVIDIA driver and GPU)" if has_provider
               else "this ONNX Runtime has no CUDA provider (install onnxruntime-gpu)")
            + "; use --device cpu or auto"
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
