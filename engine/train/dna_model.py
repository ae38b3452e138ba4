"""The DNA barcode encoder: overlapping k-mer embeddings + a strided 1-D CNN.

Chosen over a BarcodeBERT-style transformer for 2-core CPUs: it trains in minutes and
encodes thousands of barcodes a second, and global pooling makes it tolerant of the
different start positions of barcodes sequenced with different primers.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.norm(self.conv(x)))


class DnaCnn(nn.Module):
    def __init__(self, vocab_size: int, embed: int = 64, channels: tuple[int, ...] = (128, 192, 256, 256),
                 out_dim: int = 256):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, embed, padding_idx=0)
        blocks, c = [], embed
        for i, ch in enumerate(channels):
            blocks.append(ConvBlock(c, ch, kernel=5 if i < 3 else 3, stride=2))
            c = ch
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(2 * c, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (batch, length) int64 -> L2-normalised embeddings (batch, out_dim)."""
        mask = (tokens > 0).float().unsqueeze(1)  # (B, 1, L)
        x = self.token_embedding(tokens).transpose(1, 2) * mask
        x = self.blocks(x)
        # the padding mask, downsampled with each block's own window, so padding never enters
        # the pooling (same arithmetic as the convolutions: no slicing, no static lengths)
        m = mask
        for block in self.blocks:
            conv = block.conv
            # a ones-kernel convolution, not max_pool1d: torch.export freezes max_pool1d's length
            window = torch.ones(1, 1, conv.kernel_size[0], dtype=m.dtype)
            m = (F.conv1d(m, window, stride=conv.stride[0], padding=conv.padding[0]) > 0).to(m.dtype)
        mean = (x * m).sum(-1) / m.sum(-1).clamp(min=1.0)
        mx = (x + (m - 1.0) * 1e4).amax(-1)
        return F.normalize(self.head(torch.cat([mean, mx], dim=1)), dim=-1)
