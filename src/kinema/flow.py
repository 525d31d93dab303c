"""Rectified-flow math as pure functions: noising, timesteps, loss, guidance and ODE samplers.

Convention (Liu et al., 2022, "Flow Straight and Fast"; Esser et al., 2024, "SD3"): x_t = (1 - t) x_0 + t e
with e ~ N(0, I); t = 1 is noise and t = 0 is data; the network predicts the velocity v = e - x_0, and
sampling integrates dx/dt = v from t = 1 down to t = 0. Every sampler has one signature,
`sampler(model_fn, x, timesteps, callback=None) -> x_0` with `model_fn(x, t) -> v` (after k-diffusion).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

ModelFn = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[int, int], None] | None


def shift_for_tokens(tokens: int, base_tokens: int = 256, max_shift: float = 6.0) -> float:
    """Timestep shift that grows with the token count: sqrt(n / n_base) (SD3 section 5.3.2), at least 1.
    More tokens carry more redundant signal, so more of training and sampling must sit at high noise."""
    return float(min(max_shift, max(1.0, math.sqrt(tokens / base_tokens))))


def shift_timesteps(t: Tensor, shift: float) -> Tensor:
    """Map t in [0, 1] to shift * t / (1 + (shift - 1) t): shift > 1 spends more time at high noise."""
    return shift * t / (1 + (shift - 1) * t)


def sample_timesteps(
    n: int, shift: float = 1.0, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Logit-normal timesteps (SD3 section 3.1): t = sigmoid(N(mean, std)), then shifted. Shape (n,)."""
    u = torch.randn(n, generator=generator) * std + mean
    return shift_timesteps(torch.sigmoid(u), shift)


def _per_frame(t: Tensor) -> Tensor:
    """Times (B,) or per latent frame (B, T) shaped to broadcast over latents (B, C, T, H, W)."""
    return t.view(t.shape[0], 1, -1, 1, 1) if t.ndim == 2 else t.view(-1, 1, 1, 1, 1)


def add_noise(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """x_t = (1 - t) x0 + t noise; t broadcasts from (B,) or (B, T) over (B, C, T, H, W)."""
    t = _per_frame(t)
    return (1 - t) * x0 + t * noise


def flow_loss(v_pred: Tensor, x0: Tensor, noise: Tensor, weight: Tensor | None = None) -> Tensor:
    """Rectified-flow (conditional flow matching) loss: mean squared error to v = noise - x0.
    weight: optional (B, 1, T, 1, 1) mask, e.g. zero on frames given as clean references."""
    err = (v_pred.float() - (noise - x0).float()).pow(2)
    if weight is None:
        return err.mean()
    w = weight.expand_as(err)
    return (err * w).sum() / w.sum().clamp(min=1)


def timestep_schedule(steps: int, shift: float = 1.0) -> Tensor:
    """steps + 1 decreasing times from 1 to 0, uniformly spaced then shifted."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return shift_timesteps(torch.linspace(1.0, 0.0, steps + 1), shift)


def guidance(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance (Ho & Salimans, 2022): uncond + scale (cond - uncond)."""
    return uncond + scale * (cond - uncond)


def autoguidance(guided: Tensor, cond: Tensor, weak: Tensor, weight: float) -> Tensor:
    """Autoguidance (Karras et al., 2024, "Guiding a Diffusion Model with a Bad Version of Itself"): push the
    velocity further along cond - weak, where weak is the same condition's prediction by a weaker model of
    the same family (fewer steps, less data), whose errors resemble the strong one's but are larger. Added
    to an already guided velocity: guided + (weight - 1) (cond - weak); with guided = cond it is
    weak + weight (cond - weak), the paper's form. weight = 1 leaves guided unchanged."""
    return guided + (weight - 1.0) * (cond - weak)


def projected_guidance(cond: Tensor, uncond: Tensor, scale: float, x: Tensor, t: Tensor, eta: float = 0.0) -> Tensor:
    """Classifier-free guidance with the update's part along the prediction scaled by eta (the projection of
    adaptive projected guidance, Sadat et al., 2024): in the clean-sample space x0 = x - t v the guidance
    update d = x0(cond) - x0(uncond) splits, per sample and latent frame, into its part parallel to
    x0(cond), which mostly raises contrast and saturation, and the orthogonal rest. The result is the velocity
    of x0(cond) + (scale - 1) (d_orth + eta d_par); eta = 1 is `guidance`. Velocities (B, C, T, H, W);
    t is (B,) or per latent frame (B, T); frames at t = 0 (clean references) get the conditional velocity."""
    tb = _per_frame(t).to(cond.dtype)
    x0 = x - tb * cond
    d = -tb * (cond - uncond)
    dims = (1, 3, 4)
    par = (d * x0).sum(dims, keepdim=True) / x0.pow(2).sum(dims, keepdim=True).clamp_min(1e-12) * x0
    u = d - (1.0 - eta) * par
    return cond - (scale - 1.0) * u / tb.clamp_min(1e-12)


def in_guidance_interval(t: Tensor, interval: tuple[float, float]) -> bool:
    """Whether a step at time t gets guidance (Kynkaanniemi et al., 2024, "Applying Guidance in a Limited
    Interval"): lo < t <= hi. Guidance at high noise pulls every sample towards the same layouts and
    sizes, and at low noise it only sharpens; outside the interval the conditional velocity alone is used.
    t is (B,) or per latent frame (B, T), where clean references sit at 0: the noise level is its maximum."""
    lo, hi = interval
    level = float(t.max())
    return lo < level <= hi


def conditioned(model_fn: ModelFn, clean: Tensor, given: Tensor) -> ModelFn:
    """Wrap model_fn so that the latent frames where given (T,) is True are clean references.

    Those frames are held at `clean` (B, C, T, H, W) whatever the sampler passes in, enter the network at
    t = 0 (a per-frame timestep (B, T)), and get zero velocity, so every sampler leaves them exactly equal
    to `clean` provided it starts there. This matches training (train.sample_task_masks: clean frames at
    t = 0, no loss on them), the masked conditioning of Open-Sora 2.0, Wan2.2-5B and LTX-Video. With CFG
    inside model_fn the unconditional branch sees the same reference frames: only the text is dropped.
    """
    keep = given.view(1, 1, -1, 1, 1)

    def fn(x: Tensor, t: Tensor) -> Tensor:
        x = torch.where(keep, clean, x)
        t = (t[:, None] if t.ndim == 1 else t).expand(x.shape[0], x.shape[2]).masked_fill(given[None], 0.0)
        return model_fn(x, t).masked_fill(keep, 0.0)

    return fn


def truncate_schedule(timesteps: Tensor, t_start: float) -> Tensor:
    """The part of a schedule below t_start, starting exactly at t_start: SDEdit (Meng et al., 2022) noises
    an input to t_start and integrates from there, so a small t_start keeps more of the input."""
    return torch.cat([timesteps.new_tensor([t_start]), timesteps[timesteps < t_start]])


@torch.no_grad()
def euler(
    model_fn: ModelFn, x: Tensor, timesteps: Tensor, callback: Callback = None, generator: torch.Generator | None = None
) -> Tensor:
    """First-order Euler integration of dx/dt = v over the given times (deterministic: generator unused)."""
    n = len(timesteps) - 1
    for i in range(n):
        t, t_next = timesteps[i], timesteps[i + 1]
        x = x + (t_next - t) * model_fn(x, t.expand(x.shape[0]))
        if callback is not None:
            callback(i + 1, n)
    return x


@torch.no_grad()
def heun(
    model_fn: ModelFn, x: Tensor, timesteps: Tensor, callback: Callback = None, generator: torch.Generator | None = None
) -> Tensor:
    """Second-order Heun integration (Karras et al., 2022, Algorithm 1): two model calls per step, the
    last step to t = 0 is a plain Euler step (deterministic: generator unused)."""
    n = len(timesteps) - 1
    for i in range(n):
        t, t_next = timesteps[i], timesteps[i + 1]
        v = model_fn(x, t.expand(x.shape[0]))
        x_euler = x + (t_next - t) * v
        if t_next > 0:
            v_next = model_fn(x_euler, t_next.expand(x.shape[0]))
            x = x + (t_next - t) * 0.5 * (v + v_next)
        else:
            x = x_euler
        if callback is not None:
            callback(i + 1, n)
    return x


@torch.no_grad()
def stochastic(
    model_fn: ModelFn,
    x: Tensor,
    timesteps: Tensor,
    callback: Callback = None,
    churn: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Euler steps that renew part of the noise at each step (the flow form of DDIM with eta > 0, Song et al.,
    2021; of EDM's churn, Karras et al., 2022): from the model's estimates x0 = x - t v and eps = x + (1 - t) v
    the next state is (1 - t') x0 + t' (sqrt(1 - churn^2) eps + churn z) with fresh Gaussian z. churn = 0 is
    `euler` up to rounding; churn = 1 draws all the noise anew (ancestral sampling). The fresh noise pulls the state
    back onto the noise level the model was trained at, so errors of early steps are not carried to the
    end as they are by the deterministic ODE. No noise is added where the velocity is exactly zero: the
    clean references that `conditioned` holds stay exact. The last step (t' = 0) adds none."""
    if not 0.0 <= churn <= 1.0:
        raise ValueError(f"churn must be in [0, 1], got {churn}")
    keep = math.sqrt(1.0 - churn * churn)
    n = len(timesteps) - 1
    for i in range(n):
        t, t_next = timesteps[i], timesteps[i + 1]
        v = model_fn(x, t.expand(x.shape[0]))
        x0, eps = x - t * v, x + (1 - t) * v
        if t_next > 0 and churn > 0:
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            eps = torch.where(v != 0, keep * eps + churn * z, eps)
        x = (1 - t_next) * x0 + t_next * eps
        if callback is not None:
            callback(i + 1, n)
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {"euler": euler, "heun": heun, "stochastic": stochastic}
