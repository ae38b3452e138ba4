"""Static int8 quantisation with empirical bias correction (engine.train.export), on a small
depthwise CNN the test builds: the shape of network whose int8 embeddings drift from fp32."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the [train] extra")

from engine.train.export import _channel_means, correct_conv_biases, export_onnx, quantize_static_int8  # noqa: E402


def _depthwise_net():
    from torch import nn

    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in), nn.ReLU6(),
                nn.Conv2d(c_in, c_out, 1)]

    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU6()]
    for c_in, c_out in [(16, 24), (24, 24), (24, 32), (32, 32), (32, 48)]:
        layers += block(c_in, c_out)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers).eval()


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("quant") / "fp32.onnx"
    export_onnx(_depthwise_net(), torch.rand(2, 3, 32, 32), path, "image", "features", {0: "batch"})
    return path


def _photos(seed: int, n: int) -> np.ndarray:
    # smooth, positive "photos" (not white noise): what a stem sees after normalisation
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 1, (n, 3, 4, 4)).astype(np.float32)
    return np.kron(base, np.ones((1, 1, 8, 8), np.float32)) + rng.normal(0, 0.05, (n, 3, 32, 32)).astype(np.float32)


def _last_conv_error(fp32, int8, x) -> float:
    import onnx

    ref, quant = onnx.load(str(fp32)), onnx.load(str(int8))
    name = [n for n in quant.graph.node if n.op_type == "Conv"][-1].name
    ref_out = next(n.output[0] for n in ref.graph.node if n.name == name)
    q_out = next(n.output[0] for n in quant.graph.node if n.name == name)
    return float(np.abs(_channel_means(ref, [ref_out], "image", [x])[0]
                        - _channel_means(quant, [q_out], "image", [x])[0]).mean())


def _relative_error(fp32, int8, x) -> float:
    from engine.models.runtime import create_session

    a, b = (create_session(m, "cpu").run(None, {"image": x})[0] for m in (fp32, int8))
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def test_bias_correction_removes_channel_mean_error_and_brings_int8_closer_to_fp32(fp32_model, tmp_path):
    calib, held_out = _photos(1, 64), _photos(2, 64)
    plain, corrected = tmp_path / "plain.onnx", tmp_path / "corrected.onnx"
    batches = [calib[i: i + 16] for i in range(0, 64, 16)]
    quantize_static_int8(fp32_model, plain, "image", batches, correct_bias=False)
    quantize_static_int8(fp32_model, corrected, "image", batches)
    before = _last_conv_error(fp32_model, plain, calib)
    after = _last_conv_error(fp32_model, corrected, calib)
    assert before > 0 and after < 0.25 * before
    # and on inputs it was not corrected on, the output is closer to fp32
    assert _relative_error(fp32_model, corrected, held_out) < 0.8 * _relative_error(fp32_model, plain, held_out)
    # only biases moved: the weights and the graph are those of the plain quantisation
    import onnx
    a, b = onnx.load(str(plain)), onnx.load(str(corrected))
    assert [n.op_type for n in a.graph.node] == [n.op_type for n in b.graph.node]
    changed = {t.name for t, u in zip(a.graph.initializer, b.graph.initializer) if t.raw_data != u.raw_data}
    assert changed and all("bias" in name for name in changed)


def test_bias_correction_refuses_a_model_it_was_not_quantised_from(fp32_model, tmp_path):
    from torch import nn

    other = tmp_path / "other.onnx"
    export_onnx(nn.Sequential(nn.Conv2d(3, 4, 1)).eval(), torch.rand(2, 3, 8, 8), other, "image", "features", {0: "batch"})
    int8 = quantize_static_int8(fp32_model, tmp_path / "q.onnx", "image", [_photos(1, 16)], correct_bias=False)
    with pytest.raises(ValueError, match="not the model"):
        correct_conv_biases(other, int8, "image", [_photos(1, 16)])
