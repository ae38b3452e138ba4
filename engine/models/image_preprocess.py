"""Photo -> model input, the one function both training and inference use.

The transform is described by a config dict that is written into the image model pack's
manifest (``"preprocessing": {"kind": "image", ...}``) and read back by the encoder, so a
pack always sees its photos exactly as it saw them in training::

    {"kind": "image", "size": 224, "resize": "shorter", "crop": "center",
     "resample": "bilinear", "offset": 127.0, "scale": 128.0, "layout": "NCHW", "channels": "RGB"}

Steps: 8-bit RGB (engine.io.images.load_photo) -> shorter side resized to ``size`` ->
centre crop ``size`` x ``size`` -> float32 (x - offset) / scale (EfficientNet-Lite's
scaling: [-0.99, 1]; per-channel values express a mean/std normalisation, e.g. for
converted ViT / CLIP checkpoints: offset = 255 mean, scale = 255 std) -> channels first. Training augments the PIL image *before* this
(random crops, flips, colour), never after, so the numeric path is the same.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

KIND = "image"
_RESAMPLE = {"bilinear": 2, "bicubic": 3, "lanczos": 1}  # PIL.Image.Resampling values
# Photos up to 4:1 are resized whole then cropped, bit for bit as in training (the int8 pack
# turns a one-level rounding difference in 0.2 % of the inputs into cosines down to 0.986)
MAX_RESIZED_AREA = 4
DECODE_MARGIN = 2  # see ImagePreprocess.decode_side; the cosines it keeps are in docs/promises.md


@dataclass(frozen=True)
class ImagePreprocess:
    size: int = 224
    resize: str = "shorter"
    crop: str = "center"
    resample: str = "bilinear"
    offset: float | tuple[float, float, float] = 127.0  # per channel (R, G, B) or one for all
    scale: float | tuple[float, float, float] = 128.0
    layout: str = "NCHW"
    channels: str = "RGB"

    @classmethod
    def from_config(cls, config: dict) -> "ImagePreprocess":
        if config.get("kind") != KIND:
            raise ValueError(f"not an image preprocessing config: {config!r}")
        fields = {k: (tuple(float(x) for x in v) if isinstance(v, list) else v)
                  for k, v in config.items() if k != "kind"}
        pre = cls(**fields)
        if pre.resize != "shorter" or pre.crop != "center" or pre.layout != "NCHW" or pre.channels != "RGB":
            raise ValueError(f"unsupported image preprocessing: {config!r}")
        if pre.resample not in _RESAMPLE:
            raise ValueError(f"unsupported resampling {pre.resample!r}")
        return pre

    def config(self) -> dict:
        return {"kind": KIND, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}}

    @property
    def decode_side(self) -> int:
        """The shorter side a large photo may be decoded or reduced to (engine.io.images.load_photo's
        ``min_side``) and still look to this transform almost as at full resolution: the bilinear
        resize is left a reduction of 2x or more, whose smoothing a box-reduced photo needs."""
        return DECODE_MARGIN * self.size

    def to_array(self, image) -> np.ndarray:
        """One 8-bit RGB PIL image -> (3, size, size) float32.

        The packs were trained on the whole photo resized, then cropped. When that resized
        whole would exceed MAX_RESIZED_AREA outputs (an elongated strip: 100000 x 2 px would
        become 11 million x 224), the crop's region of the source is resampled directly
        (``resize(box=...)``): the same pixels up to a rounding of one grey level.
        """
        w, h = image.size
        s = self.size / min(w, h)
        nw, nh = max(self.size, round(w * s)), max(self.size, round(h * s))
        left, top = (nw - self.size) // 2, (nh - self.size) // 2
        img = image if image.mode == "RGB" else image.convert("RGB")
        resample = _RESAMPLE[self.resample]
        if nw * nh <= MAX_RESIZED_AREA * self.size * self.size:
            img = img.resize((nw, nh), resample=resample).crop((left, top, left + self.size, top + self.size))
        else:
            sx, sy = w / nw, h / nh  # source pixels per resized pixel
            box = (left * sx, top * sy, min(w, (left + self.size) * sx), min(h, (top + self.size) * sy))
            img = img.resize((self.size, self.size), resample=resample, box=box)
        offset, scale = np.asarray(self.offset, np.float32), np.asarray(self.scale, np.float32)
        a = (np.asarray(img, dtype=np.float32) - offset) / scale
        return np.ascontiguousarray(a.transpose(2, 0, 1))

    def batch(self, images: Sequence) -> np.ndarray:
        """(n, 3, size, size) float32 for a list of 8-bit RGB PIL images."""
        out = np.empty((len(images), 3, self.size, self.size), dtype=np.float32)
        for i, img in enumerate(images):
            out[i] = self.to_array(img)
        return out
