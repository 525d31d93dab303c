"""The spacetime diffusion transformer: denoises spacetime patches of the video latent, conditioned on text.

Design (each choice is the field's consensus, see ../shared/docs/ANCHORS.md):
- tokens are 1xpxp spacetime patches of the VAE latent (1x2x2 on an 8x latent, 1x4x4 on the shipped 4x
  one: the same 16-pixel token either way); full self-attention over all of them with 3D RoPE
  and QK-norm (RMSNorm on queries and keys, which keeps attention logits bounded in bf16);
- text enters by cross-attention to the frozen encoder's tokens, plus a pooled text vector added to the
  timestep embedding. Cross-attention rather than MM-DiT joint attention because (a) the text stream is
  frozen and small, so it needs no weights of its own, (b) its keys and values are the same at every
  sampling step and are computed once per video, not once per step, and (c) self-attention cost stays
  that of the video tokens alone, which matters on a CPU where attention is the bottleneck (PERF.md);
- adaLN-Zero modulation (Peebles & Xie, 2023, "DiT") from the timestep. The timestep may differ per
  latent frame, (B,) or (B, T'): frames given as clean references carry t = 0 (issue 4's conditioning).

`forward(x, t, text, text_mask) -> velocity` is tensors in, tensors out; sampling lives in flow.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from kinema.layers import RMSNorm, apply_rope, attention, rope_3d


@dataclass
class DiTConfig:
    in_channels: int = 16
    patch: tuple[int, int, int] = (1, 2, 2)
    width: int = 256
    depth: int = 8
    heads: int = 4
    mlp_ratio: float = 4.0
    text_dim: int = 384
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        self.patch = tuple(self.patch)
        if self.width % self.heads:
            raise ValueError(f"DiTConfig: width {self.width} is not divisible by heads {self.heads}")
        if (self.width // self.heads) % 8:
            raise ValueError("DiTConfig: head dimension must be a multiple of 8 (3D RoPE)")
        if self.depth < 1 or len(self.patch) != 3 or min(self.patch) < 1:
            raise ValueError("DiTConfig: depth >= 1 and a 3-entry positive patch are required")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


DIT_PRESETS: dict[str, DiTConfig] = {
    "debug": DiTConfig(in_channels=8, width=32, depth=2, heads=2, text_dim=384),
    # the shipped CPU model: ~13M, 1x4x4 patches of the 4x-spatial latent (112 tokens for 2 s at 64x64)
    "small": DiTConfig(width=256, depth=8, heads=4, patch=(1, 4, 4)),
    "base": DiTConfig(width=512, depth=12, heads=8),  # ~70M
    "large": DiTConfig(width=1024, depth=24, heads=16),  # ~470M: GPU training (issue 7)
}


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000, as in DiT). t: any shape -> (*t.shape, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[..., None] * 1000.0 * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Mlp(nn.Sequential):
    def __init__(self, dim: int, hidden: int, out: int | None = None) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, out or dim))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm, self.k_norm = RMSNorm(dim // heads), RMSNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:  # (B, N, D)
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        q = apply_rope(self.q_norm(q), *rope)
        k = apply_rope(self.k_norm(k), *rope)
        out = attention(q, k, v)  # (B, h, N, d)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.q_norm, self.k_norm = RMSNorm(dim // heads), RMSNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:  # x (B, N, D), context (B, L, D)
        q = self.q_norm(rearrange(self.q(x), "b n (h d) -> b h n d", h=self.heads))
        k, v = rearrange(self.kv(context), "b l (two h d) -> two b h l d", two=2, h=self.heads)
        out = attention(q, self.k_norm(k), v, mask)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


def per_frame(x: Tensor, frame_tokens: int) -> Tensor:
    """(B, N, D) tokens in t-h-w order -> (B, T', h*w, D), so per-frame (B, T', 1, D) terms broadcast."""
    return x.unflatten(1, (-1, frame_tokens))


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    """Self-attention and MLP under adaLN-Zero modulation, cross-attention to text in between."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        d = cfg.width
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(d, cfg.heads)
        self.norm_cross = nn.LayerNorm(d, eps=1e-6)
        self.cross = CrossAttention(d, cfg.heads)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(d, int(d * cfg.mlp_ratio))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))

    def forward(
        self, x: Tensor, c: Tensor, context: Tensor, mask: Tensor, rope: tuple[Tensor, Tensor], frame_tokens: int
    ) -> Tensor:
        # c: (B, T', D) per latent frame, broadcast over each frame's h*w tokens
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(c)[:, :, None].chunk(6, dim=-1)  # (B, T', 1, D) each
        f = frame_tokens
        y = modulate(per_frame(self.norm1(x), f), sh1, sc1).flatten(1, 2)
        x = x + (g1 * per_frame(self.attn(y, rope), f)).flatten(1, 2)
        x = x + self.cross(self.norm_cross(x), context, mask)
        y = modulate(per_frame(self.norm2(x), f), sh2, sc2).flatten(1, 2)
        return x + (g2 * per_frame(self.mlp(y), f)).flatten(1, 2)


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out)

    def forward(self, x: Tensor, c: Tensor, frame_tokens: int) -> Tensor:
        shift, scale = self.ada(c)[:, :, None].chunk(2, dim=-1)
        return self.linear(modulate(per_frame(self.norm(x), frame_tokens), shift, scale).flatten(1, 2))


class DiT(nn.Module):
    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        pt, ph, pw = cfg.patch
        d = cfg.width
        self.patch_dim = cfg.in_channels * pt * ph * pw
        self.x_embed = nn.Linear(self.patch_dim, d)
        self.t_embed = Mlp(256, d, d)
        self.text_proj = nn.Sequential(RMSNorm(cfg.text_dim), nn.Linear(cfg.text_dim, d))
        self.pool_embed = Mlp(cfg.text_dim, d, d)
        self.blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.depth)])
        self.final = FinalLayer(d, self.patch_dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier linears, zeroed adaLN gates and output (adaLN-Zero: every block starts as identity)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.t_embed[0].weight, std=0.02)
        nn.init.normal_(self.t_embed[2].weight, std=0.02)
        for blk in self.blocks:
            nn.init.zeros_(blk.ada[-1].weight)
            nn.init.zeros_(blk.ada[-1].bias)
            nn.init.zeros_(blk.cross.proj.weight)
        nn.init.zeros_(self.final.ada[-1].weight)
        nn.init.zeros_(self.final.ada[-1].bias)
        nn.init.zeros_(self.final.linear.weight)

    def encode_text(self, text: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Projected text tokens (B, L, D) and the pooled text vector (B, D); reusable across steps."""
        m = mask.to(text.dtype)[..., None]
        pooled = (text * m).sum(1) / m.sum(1).clamp(min=1)
        return self.text_proj(text), self.pool_embed(pooled)

    def forward(
        self, x: Tensor, t: Tensor, text: Tensor, text_mask: Tensor, text_cache: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """x: (B, C, T, H, W) noisy latent; t: (B,) or (B, T) in [0, 1]; text: (B, L, text_dim);
        text_mask: (B, L) bool. Returns the predicted velocity, shaped like x."""
        assert x.ndim == 5, f"expected (B, C, T, H, W), got {tuple(x.shape)}"
        B, _C, T, H, W = x.shape
        pt, ph, pw = self.cfg.patch
        if T % pt or H % ph or W % pw:
            raise ValueError(f"latent {T}x{H}x{W} is not divisible by the patch {self.cfg.patch}")
        gt, gh, gw = T // pt, H // ph, W // pw
        tokens = rearrange(x, "b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw)
        h = self.x_embed(tokens)  # (B, N, D)
        if t.ndim == 1:
            t = t[:, None].expand(B, gt)
        elif t.shape[1] == T and pt > 1:
            t = t[:, ::pt]
        context, pooled = text_cache if text_cache is not None else self.encode_text(text, text_mask)
        c = self.t_embed(timestep_embedding(t, 256)) + pooled[:, None, :]  # (B, T', D)
        rope = rope_3d((gt, gh, gw), self.cfg.head_dim, self.cfg.rope_theta, device=x.device)
        for blk in self.blocks:
            h = blk(h, c, context, text_mask, rope, gh * gw)
        out = self.final(h, c, gh * gw)  # (B, N, patch_dim)
        return rearrange(
            out, "b (t h w) (c pt ph pw) -> b c (t pt) (h ph) (w pw)", t=gt, h=gh, w=gw, pt=pt, ph=ph, pw=pw
        )


def check_patch(patch: tuple[int, ...], within: tuple[int, ...] | None = None) -> None:
    """A patch is three positive integers; given `within` (a model's patch, for repatch), it divides it."""
    if within is not None:
        if len(patch) != 3 or any(q < 1 or p % q for p, q in zip(within, patch, strict=True)):
            raise ValueError(f"patch {tuple(patch)} must divide the model's patch {tuple(within)} in every dimension")
    elif len(patch) != 3 or min(patch) < 1:
        raise ValueError(f"patch must be three positive integers, got {tuple(patch)}")


def repatch(model: DiT, patch: tuple[int, int, int]) -> DiT:
    """A copy of `model` that cuts the latent into finer patches, each dimension of `patch` dividing the old one.

    The copy computes exactly `avg_pool(model(upsample(x)))`, with `upsample` repeating each latent cell r
    times per dimension (r = old patch / new patch) and `avg_pool` averaging the r-blocks back: a token of
    the new model sees its small patch as the old model saw a patch of the same latent blown up r times,
    on the same token grid and RoPE positions. For the procedural world that is the old model drawing the
    scene at r times the resolution, where objects are r times as many pixels across, so the blocks start
    with what they learned of text, time and layout (FlexiViT's resize of patch weights, with the
    unembedding resized to match). The repeated noise is blocky, which the old model never saw, so the copy
    is a start for fine-tuning at the finer grid, not a model to sample from as it is.
    """
    old = model.cfg.patch
    check_patch(patch, within=old)
    cfg = DiTConfig(**{**model.cfg.__dict__, "patch": tuple(patch)})
    new = DiT(cfg).to(next(model.parameters()).device)
    resized = ("x_embed.weight", "final.linear.weight", "final.linear.bias")
    missing, _ = new.load_state_dict({k: v for k, v in model.state_dict().items() if k not in resized}, strict=False)
    assert set(missing) <= set(resized), missing
    rt, rh, rw = (p // q for p, q in zip(old, patch, strict=True))
    c = cfg.in_channels

    def blocks(w: Tensor) -> Tensor:  # (..., c*pt*ph*pw) -> (..., c*qt*qh*qw, r-block cells)
        pattern = "... (c qt rt qh rh qw rw) -> ... (c qt qh qw) (rt rh rw)"
        return rearrange(w, pattern, c=c, qt=patch[0], qh=patch[1], qw=patch[2], rt=rt, rh=rh, rw=rw)

    with torch.no_grad():
        # embedding of the upsampled patch: every old input weight of an r-block acts on the same new cell
        new.x_embed.weight.copy_(blocks(model.x_embed.weight).sum(-1))
        # the mean over each r-block of the old outputs
        new.final.linear.weight.copy_(blocks(model.final.linear.weight.T).mean(-1).T)
        new.final.linear.bias.copy_(blocks(model.final.linear.bias).mean(-1))
    return new


def forward_flops(cfg: DiTConfig, tokens: int, text_tokens: int) -> float:
    """Matmul FLOPs of one forward pass (2 per multiply-add), for GFLOP/s and MFU reporting."""
    d, n, L = cfg.width, tokens, text_tokens
    hidden = int(d * cfg.mlp_ratio)
    per_block = n * 4 * d * d + 2 * n * n * d  # qkv + output projection, QK^T and AV
    per_block += n * 2 * d * d + L * 2 * d * d + 2 * n * L * d  # cross-attention q, o, kv and attention
    per_block += n * 2 * d * hidden  # MLP
    patch_dim = cfg.in_channels * math.prod(cfg.patch)
    return 2.0 * (cfg.depth * per_block + 2 * n * patch_dim * d)
