"""Device choice: CUDA only when ONNX Runtime has the provider AND the driver reports a GPU."""
import pytest

from engine.errors import ModelPackError
from engine.models import runtime

GPU_BUILD = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_this_machine_without_a_nvidia_driver_counts_no_cuda_device():
    # the CI and development machines have no GPU: the probe must say so rather than fail
    assert runtime.cuda_device_count() == 0


@pytest.mark.parametrize("devices, expected", [(0, "CPU"), (1, "GPU (CUDA)")])
def test_gpu_build_uses_cuda_only_when_a_device_is_present(monkeypatch, devices, expected):
    monkeypatch.setattr(runtime, "available_providers", lambda: GPU_BUILD)
    monkeypatch.setattr(runtime, "cuda_device_count", lambda: devices)
    assert runtime.describe_device("auto") == expected
    assert runtime.providers_for("auto")[0] == ("CUDAExecutionProvider" if devices else "CPUExecutionProvider")
    assert runtime.providers_for("cpu") == ["CPUExecutionProvider"]


def test_asking_for_cuda_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(runtime, "cuda_device_count", lambda: 0)
    monkeypatch.setattr(runtime, "available_providers", lambda: GPU_BUILD)
    with pytest.raises(ModelPackError, match="no CUDA device"):
        runtime.providers_for("cuda")
    monkeypatch.setattr(runtime, "available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ModelPackError, match="install onnxruntime-gpu"):
        runtime.providers_for("cuda")
