"""Training: a resumed run equals an uninterrupted one exactly (DiT and VAE), and export round-trips."""

from pathlib import Path

import pytest
import torch

from kinema.checkpoint import load_train_state
from kinema.data import ClipShape
from kinema.train import export_model, prepare_world, train
from kinema.train_vae import train_vae
from tests.conftest import make_debug_model


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory, text_encoder) -> tuple[Path, Path]:
    vae_dir = make_debug_model(tmp_path_factory.mktemp("vae"))
    out = tmp_path_factory.mktemp("shards")
    prepare_world(out, vae_dir, 12, ClipShape(9, 32, 32, 8.0), shard_size=8, batch=4, text_encoder=text_encoder)
    assert len(list(out.glob("shard_*.pt"))) == 2
    return out, vae_dir


def test_dit_resume_is_exact(shards: tuple[Path, Path], tmp_path: Path, text_encoder) -> None:
    data, vae_dir = shards
    kw = dict(preset="debug", batch=4, save_every=2, text_encoder=text_encoder)
    train(tmp_path / "a", data, vae_dir, steps=4, **kw)
    train(tmp_path / "b", data, vae_dir, steps=2, **kw)
    train(tmp_path / "b", data, vae_dir, steps=4, **kw)  # resumes at step 2
    a, b = load_train_state(tmp_path / "a"), load_train_state(tmp_path / "b")
    assert a["step"] == b["step"] == 4
    for key in ("model", "ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    # the run folder is a complete model: export it and generate from the copy
    export_model(tmp_path / "a", tmp_path / "shipped")
    from kinema import Pipeline

    pipe = Pipeline.from_pretrained(tmp_path / "shipped", text_encoder=text_encoder)
    assert pipe("a red circle", steps=2).frames.shape == (9, 32, 32, 3)  # defaults: the training clip


def test_vae_resume_is_exact(tmp_path: Path) -> None:
    kw = dict(preset="debug", batch=2, save_every=1, measure_n=8)
    train_vae(tmp_path / "a", steps=3, **kw)
    train_vae(tmp_path / "b", steps=2, **kw)
    result = train_vae(tmp_path / "b", steps=3, **kw)
    from safetensors.torch import load_file

    wa, wb = load_file(tmp_path / "a" / "vae.safetensors"), load_file(tmp_path / "b" / "vae.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert result["psnr_test"] > 0 and len(result["latent_std"]) == 8


def test_saved_weights_get_the_usual_file_mode(tmp_path) -> None:
    """Checkpoints are written through a private temp file, but land with the umask's mode (not 0600)."""
    import os

    from kinema.checkpoint import save_component
    from kinema.dit import DIT_PRESETS, DiT

    dit = DiT(DIT_PRESETS["debug"])
    save_component(tmp_path, "dit", dit, dit.cfg)
    umask = os.umask(0)
    os.umask(umask)
    for name in ("dit.safetensors", "dit.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_object_weighted_loss_uses_world_masks(shards: tuple[Path, Path], tmp_path: Path, text_encoder) -> None:
    data, vae_dir = shards
    kw = dict(preset="debug", batch=4, save_every=2, text_encoder=text_encoder, steps=2)
    with pytest.raises(ValueError, match="object masks"):
        train(tmp_path / "none", data, vae_dir, object_weight=4.0, **kw)
    from kinema.data import LatentShards, prepare_object_masks

    prepare_object_masks(data)
    shards_ = LatentShards(data)
    assert shards_.objects is not None and shards_.objects.shape == shards_.latents[:, 0].shape
    assert 0 < shards_.objects.float().mean() < 1  # objects cover part of the grid, not all of it
    plain = train(tmp_path / "plain", data, vae_dir, **kw)
    weighted = train(tmp_path / "weighted", data, vae_dir, object_weight=4.0, **kw)
    assert plain["losses"][1] != weighted["losses"][1]  # same batch and init, a different weighting
    (data / "objmask.pt").unlink()  # the module's other tests use the shards without masks
