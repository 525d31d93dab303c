"""Causal video autoencoder: 4x in time, 4x in space (8x available), 16 latent channels by default.

Causal means every output frame depends only on input frames at or before it, and the first frame is
encoded alone: T = 1 + 4k frames map to 1 + k latent frames, so an image is a one-frame video (as in
Wan2.1, HunyuanVideo and CogVideoX). Norms are per frame (RMS over channels), never over time, so the
encoder and decoder can stream a long video chunk by chunk with a cache of the last frames each causal
convolution saw (`encode(x, chunk=...)`, `decode(z, chunk=...)`); the result equals one full pass.

Layout: videos are (B, 3, T, H, W) in [-1, 1]; latents are (B, C, 1 + (T-1)/4, H/s, W/s), s = spatial_ratio.
Train with `kinema train-vae`; see README "Recipe".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


@dataclass
class VAEConfig:
    latent_channels: int = 16
    channels: tuple[int, ...] = (64, 128, 160)  # per level; level 0 runs at H/2 after a 2x2 pixel unshuffle
    blocks: tuple[int, ...] = (1, 1, 2)  # residual blocks per level (encoder; the decoder mirrors)
    time_down: tuple[bool, ...] = (True, True)  # between levels; two halvings = 4x in time
    space_down: tuple[bool, ...] = (True, True)  # between levels, after the 2x2 input unshuffle: 8x in space
    # per-channel latent statistics, measured after training so the DiT sees ~unit-variance latents
    latent_mean: list[float] = field(default_factory=list)
    latent_std: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        self.blocks = tuple(self.blocks)
        self.time_down = tuple(self.time_down)
        self.space_down = tuple(self.space_down)
        n = len(self.channels)
        if len(self.blocks) != n or len(self.time_down) != n - 1 or len(self.space_down) != n - 1:
            raise ValueError("VAEConfig: channels and blocks need one entry per level, time_down/space_down one fewer")
        if not any(self.time_down + self.space_down) and n > 1:
            raise ValueError("VAEConfig: a level boundary must downsample in time or space")
        if self.latent_mean and len(self.latent_mean) != self.latent_channels:
            raise ValueError("VAEConfig: latent_mean must have latent_channels entries")

    @property
    def spatial_ratio(self) -> int:
        return 2 ** (1 + sum(self.space_down))  # the 2x2 input unshuffle plus the halvings between levels

    @property
    def temporal_ratio(self) -> int:
        return 2 ** sum(self.time_down)


VAE_PRESETS: dict[str, VAEConfig] = {
    "debug": VAEConfig(latent_channels=8, channels=(8, 16, 16), blocks=(1, 1, 1)),
    "small": VAEConfig(space_down=(True, False)),  # 4x time, 4x space: at 8x small shapes were lost (README)
    "small-8x": VAEConfig(),  # the field's 4x8x8, kept for comparison
}


class RMSNorm(nn.Module):
    """RMS norm over channels, per position and frame (causal, chunk invariant)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T, H, W)
        x = x * torch.rsqrt(x.float().pow(2).mean(1, keepdim=True) + 1e-6).to(x.dtype)
        return x * self.weight.view(1, -1, 1, 1, 1).to(x.dtype)


class CausalConv3d(nn.Module):
    """A 3D convolution padded on the past side in time only. In streaming mode it keeps the last
    kt-1 input frames of the previous chunk as a cache, so chunked and full passes agree exactly."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (3, 3, 3)) -> None:
        super().__init__()
        self.kt = kernel[0]
        self.conv = nn.Conv3d(cin, cout, kernel, padding=(0, kernel[1] // 2, kernel[2] // 2))
        self.streaming = False
        self.cache: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.kt > 1:
            past = (
                self.cache
                if (self.streaming and self.cache is not None)
                else x[:, :, :1].expand(-1, -1, self.kt - 1, -1, -1)
            )
            x = torch.cat([past, x], dim=2)
            if self.streaming:
                self.cache = x[:, :, -(self.kt - 1) :].detach()
        return self.conv(x)


class ResBlock(nn.Module):
    def __init__(self, dim: int, kernel: tuple[int, int, int]) -> None:
        super().__init__()
        self.norm1, self.conv1 = RMSNorm(dim), CausalConv3d(dim, dim, kernel)
        self.norm2, self.conv2 = RMSNorm(dim), CausalConv3d(dim, dim, kernel)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class Down(nn.Module):
    """2x2 space-to-depth and/or 2x time-to-depth (the first frame paired with itself), then a 1x1 conv."""

    def __init__(self, cin: int, cout: int, time: bool, space: bool = True) -> None:
        super().__init__()
        self.time, self.space = time, space
        self.s = 2 if space else 1
        self.proj = nn.Conv3d(cin * self.s * self.s * (2 if time else 1), cout, 1)
        self.streaming = False
        self.seen_first = False

    def forward(self, x: Tensor) -> Tensor:
        if self.time:
            first = not (self.streaming and self.seen_first)
            if first:  # the first frame is alone: pair it with itself
                x = torch.cat([x[:, :, :1], x], dim=2)
            self.seen_first = self.streaming
        pt = 2 if self.time else 1
        x = rearrange(x, "b c (t pt) (h ph) (w pw) -> b (c pt ph pw) t h w", pt=pt, ph=self.s, pw=self.s)
        return self.proj(x)


class Up(nn.Module):
    """The mirror of Down: a 1x1 conv then depth-to-space and/or time (dropping the first frame's twin)."""

    def __init__(self, cin: int, cout: int, time: bool, space: bool = True) -> None:
        super().__init__()
        self.time, self.space = time, space
        self.s = 2 if space else 1
        self.proj = nn.Conv3d(cin, cout * self.s * self.s * (2 if time else 1), 1)
        self.streaming = False
        self.seen_first = False

    def forward(self, x: Tensor) -> Tensor:
        pt = 2 if self.time else 1
        x = rearrange(self.proj(x), "b (c pt ph pw) t h w -> b c (t pt) (h ph) (w pw)", pt=pt, ph=self.s, pw=self.s)
        if not self.time:
            return x
        first = not (self.streaming and self.seen_first)
        self.seen_first = self.streaming
        return x[:, :, 1:] if first else x


def _level_kernel(level: int) -> tuple[int, int, int]:
    # level 0 runs at the highest resolution, where 3D kernels cost the most; time mixing happens below
    return (1, 3, 3) if level == 0 else (3, 3, 3)


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        ch = cfg.channels
        self.conv_in = CausalConv3d(3 * 4, ch[0], _level_kernel(0))
        self.levels = nn.ModuleList()
        for i, c in enumerate(ch):
            blocks: list[nn.Module] = [ResBlock(c, _level_kernel(i)) for _ in range(cfg.blocks[i])]
            if i + 1 < len(ch):
                blocks.append(Down(c, ch[i + 1], cfg.time_down[i], cfg.space_down[i]))
            self.levels.append(nn.Sequential(*blocks))
        self.norm_out = RMSNorm(ch[-1])
        self.conv_out = CausalConv3d(ch[-1], 2 * cfg.latent_channels, (3, 3, 3))

    def forward(self, x: Tensor) -> Tensor:  # (B, 3, T, H, W) -> (B, 2C, T', H/s, W/s)
        x = rearrange(x, "b c t (h ph) (w pw) -> b (c ph pw) t h w", ph=2, pw=2)
        x = self.conv_in(x)
        for level in self.levels:
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        ch = cfg.channels[::-1]
        n = len(ch)
        self.conv_in = CausalConv3d(cfg.latent_channels, ch[0], (3, 3, 3))
        self.levels = nn.ModuleList()
        for i, c in enumerate(ch):
            level = n - 1 - i  # the matching encoder level
            blocks: list[nn.Module] = [ResBlock(c, _level_kernel(level)) for _ in range(cfg.blocks[level])]
            if i + 1 < n:
                blocks.append(Up(c, ch[i + 1], cfg.time_down[level - 1], cfg.space_down[level - 1]))
            self.levels.append(nn.Sequential(*blocks))
        self.norm_out = RMSNorm(ch[-1])
        self.conv_out = CausalConv3d(ch[-1], 3 * 4, _level_kernel(0))

    def forward(self, z: Tensor) -> Tensor:  # (B, C, T', h, w) -> (B, 3, T, s h, s w)
        x = self.conv_in(z)
        for level in self.levels:
            x = level(x)
        x = self.conv_out(F.silu(self.norm_out(x)))
        return rearrange(x, "b (c ph pw) t h w -> b c t (h ph) (w pw)", ph=2, pw=2)


class VideoVAE(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        c = cfg.latent_channels
        mean = torch.tensor(cfg.latent_mean) if cfg.latent_mean else torch.zeros(c)
        std = torch.tensor(cfg.latent_std) if cfg.latent_std else torch.ones(c)
        self.register_buffer("latent_mean", mean.view(1, c, 1, 1, 1), persistent=False)
        self.register_buffer("latent_std", std.view(1, c, 1, 1, 1), persistent=False)

    # ---- shapes -------------------------------------------------------------------------------------
    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        check_video_shape(self.cfg, frames, height, width)
        r = self.cfg.temporal_ratio
        s = self.cfg.spatial_ratio
        return 1 + (frames - 1) // r, height // s, width // s

    # ---- raw passes (training) ----------------------------------------------------------------------
    def encode_dist(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance (unnormalised latent space)."""
        h = self.encoder(x)
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(-30, 20)

    # ---- normalised latents (what the DiT sees) -----------------------------------------------------
    @torch.no_grad()
    def encode(self, x: Tensor, chunk: int | None = None) -> Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> normalised latent mean. chunk: latent frames per streamed step."""
        check_video_shape(self.cfg, x.shape[2], x.shape[3], x.shape[4])
        if chunk is None:
            mean = self.encode_dist(x)[0]
        else:
            r = self.cfg.temporal_ratio
            # the first frame alone, then r*chunk frames at a time
            pieces = [x[:, :, :1], *list(x[:, :, 1:].split(r * chunk, dim=2))]
            with self.streaming():
                mean = torch.cat([self.encode_dist(p)[0] for p in pieces], dim=2)
        return (mean - self.latent_mean) / self.latent_std

    @torch.no_grad()
    def decode(self, z: Tensor, chunk: int | None = None) -> Tensor:
        """Normalised latent -> (B, 3, T, H, W) in [-1, 1]. chunk: latent frames per streamed step."""
        z = z * self.latent_std + self.latent_mean
        if chunk is None:
            return self.decoder(z).clamp(-1, 1)
        pieces = [z[:, :, :1], *list(z[:, :, 1:].split(chunk, dim=2))]
        with self.streaming():
            return torch.cat([self.decoder(p).clamp(-1, 1) for p in pieces], dim=2)

    @contextmanager
    def streaming(self) -> Iterator[None]:
        """Run the causal modules with frame caches, so a video can be passed in consecutive chunks."""
        mods = [m for m in self.modules() if isinstance(m, CausalConv3d | Down | Up)]
        for m in mods:
            m.streaming, m.cache, m.seen_first = True, None, False
        try:
            yield
        finally:
            for m in mods:
                m.streaming, m.cache, m.seen_first = False, None, False


def check_video_shape(cfg: VAEConfig, frames: int, height: int, width: int) -> None:
    """Raise a one-line ValueError unless (frames, height, width) fit the VAE's strides."""
    r, s = cfg.temporal_ratio, cfg.spatial_ratio
    if frames < 1 or (frames - 1) % r:
        raise ValueError(f"frame count must be 1 + {r}k (1, {1 + r}, {1 + 2 * r}, ...), got {frames}")
    if height % s or width % s or height <= 0 or width <= 0:
        raise ValueError(f"size must be a multiple of {s} in both dimensions, got {width}x{height}")


def object_weight(x: Tensor, boost: float = 9.0) -> Tensor:
    """Per-pixel loss weight 1 + boost on saturated pixels (and a 1-pixel border around them).

    Objects are a few percent of the pixels of a world clip; an unweighted loss spends the VAE's capacity
    on the background texture and decodes small squares and triangles as blobs."""
    rgb = (x + 1) / 2  # (B, 3, T, H, W) in [0, 1]
    chroma = rgb.amax(1, keepdim=True) - rgb.amin(1, keepdim=True)
    mask = (chroma > 0.25).float()
    mask = F.max_pool3d(mask, kernel_size=(1, 3, 3), stride=1, padding=(0, 1, 1))
    return 1.0 + boost * mask


def vae_loss(
    vae: VideoVAE, x: Tensor, kl_weight: float = 1e-6, boost: float = 0.0, temporal: float = 0.0
) -> tuple[Tensor, dict[str, float]]:
    """Reconstruction (L1 + MSE, optionally weighted towards object pixels) plus a small KL to a unit
    Gaussian (Kingma & Welling, 2014). temporal > 0 adds that weight times the L1 distance between the
    frame-to-frame changes of the reconstruction and of the input: per-frame errors that are each small
    but independent show as flicker on a still background, which the per-frame loss hardly sees."""
    mean, logvar = vae.encode_dist(x)
    z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
    rec = vae.decoder(z)
    err = rec.float() - x
    w = object_weight(x, boost) if boost > 0 else torch.ones_like(x[:, :1])
    l1 = (err.abs() * w).mean() / w.mean()
    mse = (err.pow(2) * w).mean() / w.mean()
    kl = 0.5 * (mean.float().pow(2) + logvar.float().exp() - 1 - logvar.float()).mean()
    loss = l1 + mse + kl_weight * kl
    logs = {"l1": l1.item(), "mse": mse.item(), "kl": kl.item()}
    if temporal > 0 and x.shape[2] > 1:
        flicker = (rec.float().diff(dim=2) - x.diff(dim=2)).abs().mean()
        loss = loss + temporal * flicker
        logs["temporal"] = flicker.item()
    return loss, logs
