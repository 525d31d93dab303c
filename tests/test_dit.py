import pytest
import torch

from kinema.checkpoint import load_weights, save_component
from kinema.dit import DIT_PRESETS, DiT, DiTConfig, repatch
from kinema.flow import add_noise, flow_loss, guidance


def make(seed: int = 0) -> DiT:
    torch.manual_seed(seed)
    model = DiT(DIT_PRESETS["debug"])
    with torch.no_grad():  # leave adaLN-Zero's identity start so outputs depend on every input
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    return model.eval()


def text(b: int = 2, length: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[-1, 4:] = False
    return torch.randn(b, length, 384), mask


@pytest.mark.parametrize("t,h,w", [(1, 8, 8), (3, 8, 8), (5, 6, 10), (2, 4, 12)])
def test_shapes(t: int, h: int, w: int) -> None:
    model = make()
    x = torch.randn(2, 8, t, h, w)
    emb, mask = text()
    assert model(x, torch.rand(2), emb, mask).shape == x.shape
    assert model(x, torch.rand(2, t), emb, mask).shape == x.shape  # per-frame timesteps


def test_padding_tokens_are_ignored() -> None:
    model = make()
    x, t = torch.randn(1, 8, 2, 4, 4), torch.full((1,), 0.3)
    emb, mask = torch.randn(1, 6, 384), torch.tensor([[True] * 4 + [False] * 2])
    garbage = emb.clone()
    garbage[:, 4:] = 100.0
    # cross-attention and the pooled text both use the mask: padded positions change nothing
    torch.testing.assert_close(model(x, t, emb, mask), model(x, t, garbage, mask), atol=1e-5, rtol=1e-5)
    changed = emb.clone()
    changed[:, 1] += 1.0
    assert not torch.allclose(model(x, t, emb, mask), model(x, t, changed, mask), atol=1e-5)


def test_save_load_reproduces_outputs(tmp_path) -> None:
    model = make(3)
    save_component(tmp_path, "dit", model, model.cfg)
    other = make(4)
    load_weights(tmp_path, "dit", other)
    x, t = torch.randn(1, 8, 2, 4, 4), torch.rand(1)
    emb, mask = text(1)
    assert torch.equal(model(x, t, emb, mask), other(x, t, emb, mask))


def test_cfg_batched_equals_separate_calls() -> None:
    model = make()
    x, t = torch.randn(1, 8, 3, 4, 4), torch.full((1,), 0.7)
    emb, mask = text(2)
    batched = model(x.repeat(2, 1, 1, 1, 1), t.repeat(2), emb, mask)
    cond = model(x, t, emb[:1], mask[:1])
    uncond = model(x, t, emb[1:], mask[1:])
    torch.testing.assert_close(batched[:1], cond, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(batched[1:], uncond, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        guidance(batched[:1], batched[1:], 4.0), uncond + 4.0 * (cond - uncond), atol=1e-4, rtol=1e-4
    )


def test_one_optimizer_step_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = DiT(DIT_PRESETS["debug"]).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x0, noise = torch.randn(4, 8, 2, 4, 4), torch.randn(4, 8, 2, 4, 4)
    t = torch.rand(4)
    emb, mask = text(4)

    def loss() -> torch.Tensor:
        return flow_loss(model(add_noise(x0, noise, t), t, emb, mask), x0, noise)

    before = loss()
    before.backward()
    opt.step()
    with torch.no_grad():
        assert loss().item() < before.item()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="divisible"):
        DiTConfig(width=30, heads=4)
    with pytest.raises(ValueError, match="multiple of 8"):
        DiTConfig(width=48, heads=4)


def test_latent_not_divisible_by_patch() -> None:
    model = make()
    emb, mask = text(1)
    with pytest.raises(ValueError, match="patch"):
        model(torch.randn(1, 8, 2, 5, 4), torch.rand(1), emb, mask)


def test_repatch_is_the_old_model_at_the_finer_grid() -> None:
    """repatch(model) == avg_pool(model(upsample(x))): the old model on each latent cell repeated 2x2."""
    torch.manual_seed(0)
    old = DiT(DiTConfig(in_channels=8, width=32, depth=2, heads=2, patch=(1, 4, 4)))
    with torch.no_grad():
        for p in old.parameters():
            p.normal_(0, 0.1)
    new = repatch(old, (1, 2, 2))
    assert new.cfg.patch == (1, 2, 2) and old.cfg.patch == (1, 4, 4)
    x, t = torch.randn(2, 8, 3, 8, 12), torch.rand(2, 3)
    emb, mask = text()
    with torch.no_grad():
        up = x.repeat_interleave(2, 3).repeat_interleave(2, 4)
        want = torch.nn.functional.avg_pool3d(old(up, t, emb, mask), (1, 2, 2))
        got = new(x, t, emb, mask)
    assert got.shape == x.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    for bad in [(1, 3, 3), (2, 2, 2), (1, 0, 2)]:
        with pytest.raises(ValueError, match="must divide"):
            repatch(old, bad)
