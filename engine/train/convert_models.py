"""Torch wrappers that turn imported checkpoints into embedding models for ONNX export."""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class BertMeanEmbedder(nn.Module):
    """BERT over k-mer tokens -> mean of the last hidden states over non-padding tokens."""

    def __init__(self, bert: nn.Module, pad_id: int):
        super().__init__()
        self.bert = bert
        self.pad_id = pad_id

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != self.pad_id).long()
        hidden = self.bert(input_ids=tokens, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return F.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)


class ViTClsEmbedder(nn.Module):
    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.vit(pixel_values=images).last_hidden_state[:, 0], dim=-1)


class Normalized(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.inner(x), dim=-1)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """open_clip's pre-norm block; parameter names as in its state dicts."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, quick_gelu: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, hidden)), ("gelu", QuickGELU() if quick_gelu else nn.GELU()),
            ("c_proj", nn.Linear(hidden, width)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, quick_gelu: bool):
        super().__init__()
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(width, heads, mlp_ratio, quick_gelu) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class OpenClipVisual(nn.Module):
    """The image tower of an open_clip ViT (``visual.*`` of its state dict): patch conv,
    [CLS] + learned positions, ln_pre, pre-norm transformer, ln_post on [CLS], projection."""

    def __init__(self, image_size: int, patch_size: int, width: int, layers: int, heads: int,
                 mlp_ratio: float, output_dim: int, quick_gelu: bool = False):
        super().__init__()
        self.image_size, self.output_dim = image_size, output_dim
        grid = image_size // patch_size
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, mlp_ratio, quick_gelu)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    @classmethod
    def from_config(cls, model_cfg: dict) -> "OpenClipVisual":
        v = model_cfg["vision_cfg"]
        width = int(v.get("width", 768))
        return cls(image_size=int(v.get("image_size", 224)), patch_size=int(v.get("patch_size", 16)), width=width,
                   layers=int(v.get("layers", 12)), heads=width // int(v.get("head_width", 64)),
                   mlp_ratio=float(v.get("mlp_ratio", 4.0)), output_dim=int(model_cfg.get("embed_dim", 512)),
                   quick_gelu=bool(model_cfg.get("quick_gelu", False)))

    @classmethod
    def from_state_dict(cls, state_dict: dict, model_cfg: dict) -> "OpenClipVisual":
        from engine.errors import ModelPackError

        model = cls.from_config(model_cfg)
        visual = {k.removeprefix("visual."): v for k, v in state_dict.items() if k.startswith("visual.")}
        missing, unexpected = model.load_state_dict(visual, strict=False)
        if missing or unexpected:
            raise ModelPackError(
                "not an open_clip ViT image tower of this config: "
                + (f"missing {', '.join(missing[:4])}" if missing else "")
                + (f" unexpected {', '.join(unexpected[:4])}" if unexpected else ""))
        return model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv1(images).flatten(2).transpose(1, 2)  # (B, grid*grid, width)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj
