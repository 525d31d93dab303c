import pytest
import torch

from kinema.vae import VAE_PRESETS, VideoVAE, check_video_shape, vae_loss


@pytest.fixture(scope="module")
def vae() -> VideoVAE:
    torch.manual_seed(0)
    return VideoVAE(VAE_PRESETS["debug"]).eval()


@pytest.mark.parametrize("frames,h,w", [(1, 64, 64), (5, 64, 64), (9, 48, 80), (13, 32, 16)])
def test_shapes(vae: VideoVAE, frames: int, h: int, w: int) -> None:
    x = torch.rand(2, 3, frames, h, w) * 2 - 1
    z = vae.encode(x)
    assert z.shape == (2, vae.cfg.latent_channels, 1 + (frames - 1) // 4, h // 8, w // 8)
    assert vae.decode(z).shape == x.shape


def test_causal_first_frame_is_an_image(vae: VideoVAE) -> None:
    x = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    z_video = vae.encode(x)
    z_image = vae.encode(x[:, :, :1])
    torch.testing.assert_close(z_video[:, :, :1], z_image, atol=1e-5, rtol=1e-5)


def test_streaming_equals_full_pass(vae: VideoVAE) -> None:
    x = torch.rand(1, 3, 17, 32, 48) * 2 - 1
    z = vae.encode(x)
    torch.testing.assert_close(vae.encode(x, chunk=1), z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vae.encode(x, chunk=3), z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vae.decode(z, chunk=2), vae.decode(z), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("frames,h,w", [(4, 64, 64), (5, 60, 64), (0, 64, 64)])
def test_bad_shapes_are_rejected(vae: VideoVAE, frames: int, h: int, w: int) -> None:
    with pytest.raises(ValueError):
        check_video_shape(vae.cfg, frames, h, w)


def test_one_step_lowers_the_loss() -> None:
    torch.manual_seed(0)
    vae = VideoVAE(VAE_PRESETS["debug"])
    x = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    torch.manual_seed(1)
    before, _ = vae_loss(vae, x, kl_weight=0.0)
    before.backward()
    opt.step()
    opt.zero_grad()
    torch.manual_seed(1)
    after, _ = vae_loss(vae, x, kl_weight=0.0)
    assert after.item() < before.item()
