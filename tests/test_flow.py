import math

import pytest
import torch

from kinema import flow


def test_euler_and_heun_integrate_a_known_ode() -> None:
    # dx/dt = x from t = 1 to t = 0 has the solution x(0) = x(1) / e
    x1 = torch.tensor([[1.0, -2.0, 0.5]])
    exact = x1 / math.e
    errs = {}
    for name, sampler in flow.SAMPLERS.items():
        errs[name] = [
            (sampler(lambda x, t: x, x1, flow.timestep_schedule(n)) - exact).abs().max().item() for n in (10, 20)
        ]
    assert errs["euler"][1] < 0.02 and errs["euler"][0] / errs["euler"][1] == pytest.approx(2, rel=0.15)
    assert errs["heun"][1] < errs["euler"][1] / 10  # second order is far more accurate


def test_straight_flow_is_exact() -> None:
    # the flow of a point mass at a: v(x, t) = (x - a) / t; Euler follows straight lines exactly
    a = torch.tensor([[0.3, -0.7]])
    x1 = torch.tensor([[2.0, 1.0]])
    out = flow.euler(lambda x, t: (x - a) / t.view(-1, 1), x1, flow.timestep_schedule(7, shift=3.0))
    torch.testing.assert_close(out, a)


def test_stochastic_sampler() -> None:
    a = torch.tensor([[0.3, -0.7]])
    x1 = torch.tensor([[2.0, 1.0]])
    sched = flow.timestep_schedule(7, shift=3.0)

    def point_mass(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (x - a) / t.view(-1, 1)

    # whatever noise it renews, every step's x0 estimate of a point mass is the point itself
    for churn in (0.0, 0.5, 1.0):
        torch.testing.assert_close(flow.stochastic(point_mass, x1, sched, churn=churn), a)
    # churn = 0 is Euler; with churn the path depends on the generator, and is reproducible with it
    x = torch.randn(2, 3, 4)

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.sin(3 * x) + t.view(-1, 1, 1)

    torch.testing.assert_close(flow.stochastic(fn, x, sched, churn=0.0), flow.euler(fn, x, sched))
    runs = [flow.stochastic(fn, x, sched, churn=0.5, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert torch.equal(runs[0], runs[1]) and not torch.allclose(runs[0], runs[2])
    assert not torch.allclose(runs[0], flow.euler(fn, x, sched))
    with pytest.raises(ValueError, match="churn"):
        flow.stochastic(fn, x, sched, churn=1.5)


def test_loss_is_zero_for_the_true_velocity() -> None:
    x0, noise = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2)
    assert flow.flow_loss(noise - x0, x0, noise).item() == 0.0
    w = torch.zeros(2, 1, 3, 1, 1)
    w[:, :, 1:] = 1
    v = noise - x0
    v[:, :, 0] += 5  # errors only on a masked-out frame
    assert flow.flow_loss(v, x0, noise, weight=w).item() == 0.0


def test_noise_endpoints_and_per_frame_t() -> None:
    x0, noise = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2)
    assert torch.equal(flow.add_noise(x0, noise, torch.zeros(2)), x0)
    assert torch.equal(flow.add_noise(x0, noise, torch.ones(2)), noise)
    t = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    xt = flow.add_noise(x0, noise, t)
    assert torch.equal(xt[0, :, 0], x0[0, :, 0]) and torch.equal(xt[0, :, 1], noise[0, :, 1])


def test_timesteps() -> None:
    g = torch.Generator().manual_seed(0)
    t = flow.sample_timesteps(10000, shift=3.0, generator=g)
    assert 0 < t.min() and t.max() < 1
    assert t.mean() > flow.sample_timesteps(10000, generator=g).mean()  # the shift moves mass to high noise
    sched = flow.timestep_schedule(10, shift=2.0)
    assert sched[0] == 1 and sched[-1] == 0 and bool((sched[1:] < sched[:-1]).all())
    assert flow.shift_for_tokens(256) == 1.0 and flow.shift_for_tokens(4096) == 4.0
    with pytest.raises(ValueError):
        flow.timestep_schedule(0)


def test_autoguidance():
    """guided + (w - 1) (cond - weak): weight 1 or a weak model equal to the strong one changes nothing; on
    unguided velocities it is weak + w (cond - weak)."""
    cond, weak, guided = torch.randn(3, 1, 4, 2, 3, 3, dtype=torch.float64)
    assert torch.equal(flow.autoguidance(guided, cond, weak, 1.0), guided)
    assert torch.equal(flow.autoguidance(guided, cond, cond, 3.0), guided)
    assert torch.allclose(flow.autoguidance(cond, cond, weak, 2.5), weak + 2.5 * (cond - weak))


def test_projected_guidance():
    """eta = 1 is plain CFG; eta = 0 moves the clean estimate only orthogonally to the conditional one, per
    sample and frame; frames at t = 0 (clean references) keep the conditional velocity."""
    g = torch.Generator().manual_seed(0)
    cond, uncond, x = (torch.randn(2, 4, 3, 5, 6, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([0.7, 0.3], dtype=torch.float64)
    assert torch.allclose(flow.projected_guidance(cond, uncond, 4.0, x, t, eta=1.0), flow.guidance(cond, uncond, 4.0))
    v = flow.projected_guidance(cond, uncond, 4.0, x, t, eta=0.0)
    tb = t.view(-1, 1, 1, 1, 1)
    x0_cond, x0 = x - tb * cond, x - tb * v
    assert not torch.allclose(v, flow.guidance(cond, uncond, 4.0))
    dot = ((x0 - x0_cond) * x0_cond).sum((1, 3, 4))  # (B, T): no component along x0(cond)
    assert torch.allclose(dot, torch.zeros_like(dot), atol=1e-9)
    per_frame = torch.tensor([[0.0, 0.5, 0.5], [0.0, 0.9, 0.9]], dtype=torch.float64)
    v = flow.projected_guidance(cond, uncond, 4.0, x, per_frame, eta=0.0)
    assert torch.equal(v[:, :, 0], cond[:, :, 0]) and torch.isfinite(v).all()


def test_guidance_interval_reads_the_noise_level():
    """lo < t <= hi, with per-frame times read at their maximum (clean reference frames sit at t = 0)."""
    assert flow.in_guidance_interval(torch.tensor([1.0]), (0.0, 1.0))
    assert not flow.in_guidance_interval(torch.tensor([0.875]), (0.25, 0.75))
    assert flow.in_guidance_interval(torch.tensor([0.75]), (0.25, 0.75))
    assert not flow.in_guidance_interval(torch.tensor([0.25]), (0.25, 0.75))
    assert flow.in_guidance_interval(torch.tensor([[0.0, 0.5, 0.5]]), (0.25, 0.75))
