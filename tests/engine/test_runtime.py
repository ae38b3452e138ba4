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


def test_side_by_side_runs_embed_the_same_bits_in_the_same_order_as_one_run_at_a_time(tiny_dna_pack, synthetic_split):
    import numpy as np

    from engine.models.dna_encoder import DnaEncoder
    from engine.models.pack import load_pack
    from engine.qc import check_barcode

    library, known, novel = synthetic_split
    sequences = [check_barcode(r.sequence).sequence for r in library + known + novel]
    sequences = sequences + [s[: len(s) // 2] for s in sequences]  # other lengths: other batches
    pack = load_pack(tiny_dna_pack)
    one, two = DnaEncoder(pack, device="cpu", threads=1), DnaEncoder(pack, device="cpu", threads=3)
    assert (one.parallel_runs, two.parallel_runs) == (1, 3)
    seen = []
    a = one.embed(sequences, batch_size=8)
    b = two.embed(sequences, batch_size=8, progress=lambda done, total, msg: seen.append(done))
    assert len(one.batches(sequences, 8)) > 4 * 3  # more batches than are kept in flight
    assert np.array_equal(a, b) and np.abs(a).sum() > 0
    assert seen == sorted(seen) and seen[-1] == len(sequences)
    np.testing.assert_array_equal(b[5], one.embed([sequences[5]])[0])  # the order of the input, not of the batches
