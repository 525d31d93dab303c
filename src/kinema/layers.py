"""Attention and position helpers shared by kinema's transformers: 3D RoPE, RMSNorm, attention.

3D rotary embeddings split the head dimension across (time, height, width), as in Wan2.1 and
HunyuanVideo; positions are latent-grid indices, so any frame count and aspect ratio gets a valid code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dimension (Zhang & Sennrich, 2019)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        y = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """Channels of each head given to (t, h, w) rotations: time gets a quarter, space the rest (all even)."""
    if head_dim % 8:
        raise ValueError(f"head_dim must be a multiple of 8 for 3D RoPE, got {head_dim}")
    t = head_dim // 4
    t -= t % 2
    h = (head_dim - t) // 2
    h -= h % 2
    return t, h, head_dim - t - h


def rope_3d(
    grid: tuple[int, int, int],
    head_dim: int,
    theta: float = 10000.0,
    offset: tuple[int, int, int] = (0, 0, 0),
    device: torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """cos and sin tables of shape (N, head_dim // 2) for the tokens of a (T, H, W) grid in t-h-w order.

    RoPE: Su et al., 2021 (RoFormer). offset shifts positions (used when a window of a longer video is
    denoised, so positions stay those of the whole video).
    """
    dims = rope_split(head_dim)
    angles = []
    for size, dim, off in zip(grid, dims, offset, strict=True):
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim)  # (dim/2,)
        pos = torch.arange(off, off + size, device=device, dtype=torch.float64)
        angles.append(torch.outer(pos, freqs))  # (size, dim/2)
    T, H, W = grid
    at = angles[0][:, None, None, :].expand(T, H, W, -1)
    ah = angles[1][None, :, None, :].expand(T, H, W, -1)
    aw = angles[2][None, None, :, :].expand(T, H, W, -1)
    ang = torch.cat([at, ah, aw], dim=-1).reshape(T * H * W, head_dim // 2)
    return ang.cos().float(), ang.sin().float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs of channels. x: (B, heads, N, head_dim); cos, sin: (N, head_dim // 2)."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # (B, h, N, d/2) each
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    return out.to(x.dtype)


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """(B, heads, N, d) attention through PyTorch's fused kernel. mask: (B, M) bool keys to keep."""
    attn_mask = None if mask is None else mask[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
