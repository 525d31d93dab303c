from pathlib import Path

import numpy as np
import pytest

from kinema import Pipeline
from kinema.pipeline import KinemaError, frames_for
from kinema.video_io import read_video


def test_generate_writes_a_decodable_mp4(debug_pipe: Pipeline, tmp_path: Path) -> None:
    video = debug_pipe("a red circle falls and bounces", seconds=1.5, size=(64, 48), fps=8, steps=3, seed=1)
    assert video.frames.shape == (13, 48, 64, 3) and video.frames.dtype == np.uint8
    path = video.save(tmp_path / "out.mp4")
    frames, fps = read_video(path)
    assert frames.shape == (13, 48, 64, 3) and fps == pytest.approx(8)


def test_same_seed_same_video(debug_pipe: Pipeline) -> None:
    a = debug_pipe("a blue square moves to the left", steps=3, seed=7)
    b = debug_pipe("a blue square moves to the left", steps=3, seed=7)
    c = debug_pipe("a blue square moves to the left", steps=3, seed=8)
    assert np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)
    # the stochastic sampler draws its renewed noise from the seed too
    d, e = (debug_pipe("a blue square moves to the left", steps=3, seed=7, sampler="stochastic") for _ in range(2))
    assert np.array_equal(d.frames, e.frames) and not np.array_equal(d.frames, a.frames)


def test_save_load_reproduces_the_video(debug_model: Path, text_encoder, tmp_path: Path) -> None:
    from tests.conftest import make_debug_model

    pipe = Pipeline.from_pretrained(debug_model, text_encoder=text_encoder)
    copy = Pipeline.from_pretrained(make_debug_model(tmp_path, seed=0), text_encoder=text_encoder)
    kw = dict(steps=2, seed=3, sampler="heun")
    assert np.array_equal(pipe("a cyan triangle spins", **kw).frames, copy("a cyan triangle spins", **kw).frames)


def test_one_frame_is_an_image(debug_pipe: Pipeline, tmp_path: Path) -> None:
    video = debug_pipe("a yellow square", seconds=0.01, steps=2)
    assert video.frames.shape[0] == 1
    video.save(tmp_path / "still.png")
    assert read_video(tmp_path / "still.png")[0].shape == (1, 64, 64, 3)


def test_expansion_is_used_and_can_be_skipped(debug_pipe: Pipeline) -> None:
    expanded = debug_pipe("a red circle falls", steps=1)
    raw = debug_pipe("a red circle falls", steps=1, expand=False)
    assert expanded.expanded_prompt.startswith("A large red circle") and raw.expanded_prompt == "a red circle falls"


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(prompt="  "), "empty"),
        (dict(size=(60, 64)), "multiples of 16"),
        (dict(seconds=0), "seconds"),
        (dict(seconds=61), "seconds"),
        (dict(steps=0), "steps"),
        (dict(guidance=-1), "guidance"),
        (dict(sampler="ddim"), "sampler"),
    ],
)
def test_bad_requests(debug_pipe: Pipeline, kwargs: dict, match: str) -> None:
    prompt = kwargs.pop("prompt", "a red circle")
    with pytest.raises(KinemaError, match=match):
        debug_pipe(prompt, **kwargs)


def test_frames_for() -> None:
    assert frames_for(2.0, 12, 4) == 25 and frames_for(0.01, 12, 4) == 1 and frames_for(1.0, 8, 4) == 9


def test_compiled_dit_generates_what_eager_does(debug_model: Path, debug_pipe, text_encoder) -> None:
    """from_pretrained(compile=True) keeps a DiT (encode_text, cfg) whose forward runs through inductor, and
    its video matches the eager one up to bf16 rounding (fused kernels round in another order)."""
    from kinema.dit import DiT

    pipe = Pipeline.from_pretrained(debug_model, text_encoder=text_encoder, compile=True)
    assert isinstance(pipe.dit, DiT)
    kw = dict(steps=2, size=(48, 32), frames=5, seed=3, moderate=False)
    eager = debug_pipe("a red circle", **kw).frames.astype(np.int16)
    compiled = pipe("a red circle", **kw).frames.astype(np.int16)
    assert compiled.shape == eager.shape
    assert np.abs(compiled - eager).max() <= 2 and np.abs(compiled - eager).mean() < 0.5


def test_model_default_guidance(debug_model, tmp_path, text_encoder):
    """`kinema export --guidance G` records G in model.json, and generation without a guidance uses it."""
    import json

    from kinema.train import export_model

    export_model(debug_model, tmp_path / "g1", guidance=1.0)
    meta = json.loads((tmp_path / "g1" / "model.json").read_text())
    assert meta["guidance"] == 1.0 and meta["frames"] == json.loads((debug_model / "model.json").read_text())["frames"]
    assert Pipeline.from_pretrained(debug_model, text_encoder=text_encoder).guidance == 5.0
    pipe = Pipeline.from_pretrained(tmp_path / "g1", text_encoder=text_encoder)
    assert pipe.guidance == 1.0
    kw = dict(steps=2, seed=0, expand=False)
    own = pipe("a red circle falls", **kw)
    assert own.info["guidance"] == 1.0
    assert np.array_equal(own.frames, pipe("a red circle falls", guidance=1.0, **kw).frames)
    assert not np.array_equal(own.frames, pipe("a red circle falls", guidance=5.0, **kw).frames)


def test_guidance_interval(debug_model, tmp_path, text_encoder):
    """`kinema export --guidance-interval` records the interval; generation uses it unless given one; guiding
    no step is sampling without guidance, and (0, 1] is every step."""
    import json

    from kinema.train import export_model

    export_model(debug_model, tmp_path / "iv", guidance_interval="0.3:0.9")
    assert json.loads((tmp_path / "iv" / "model.json").read_text())["guidance_interval"] == [0.3, 0.9]
    pipe = Pipeline.from_pretrained(tmp_path / "iv", text_encoder=text_encoder)
    assert pipe.guidance_interval == (0.3, 0.9)
    assert Pipeline.from_pretrained(debug_model, text_encoder=text_encoder).guidance_interval == (0.0, 1.0)
    kw = dict(steps=3, seed=0, expand=False)
    own = pipe("a red circle falls", **kw)
    assert own.info["guidance_interval"] == [0.3, 0.9]
    assert np.array_equal(own.frames, pipe("a red circle falls", guidance_interval=(0.3, 0.9), **kw).frames)
    every = pipe("a red circle falls", guidance_interval=(0.0, 1.0), **kw).frames
    assert not np.array_equal(own.frames, every)
    none = pipe("a red circle falls", guidance_interval=(0.0, 1e-3), **kw).frames
    plain = pipe("a red circle falls", guidance=1.0, **kw).frames
    assert np.abs(none.astype(int) - plain).max() <= 2  # the same model calls (bf16 rows batched apart)
    assert not np.array_equal(none, every)
    with pytest.raises(KinemaError, match=r"guidance interval must be two times LO:HI .*got \(0.9, 0.3\)"):
        pipe("a red circle falls", guidance_interval=(0.9, 0.3), **kw)


def test_autoguide_runs_the_weak_model(debug_pipe, tmp_path):
    """text_model_fn(autoguide=(weak DiT, w)) returns cond + (w - 1) (cond - weak) at every step; the
    strong model as its own weak model changes nothing."""
    import torch

    from kinema.pipeline import text_model_fn
    from tests.conftest import make_debug_model

    weak = Pipeline.from_pretrained(make_debug_model(tmp_path / "weak", seed=1), text_encoder=debug_pipe.text_encoder)
    x, t = torch.randn(1, debug_pipe.dit.cfg.in_channels, 3, 8, 8), torch.tensor([0.6])
    plain = text_model_fn(debug_pipe, "a red circle falls", "", 1.0)(x, t)
    same = text_model_fn(debug_pipe, "a red circle falls", "", 1.0, autoguide=(debug_pipe.dit, 3.0))(x, t)
    assert torch.equal(same, plain)
    vw = text_model_fn(weak, "a red circle falls", "", 1.0)(x, t)
    auto = text_model_fn(debug_pipe, "a red circle falls", "", 1.0, autoguide=(weak.dit, 2.0))(x, t)
    assert not torch.allclose(vw, plain)
    assert torch.allclose(auto, 2 * plain - vw, atol=1e-5)


def test_guidance_eta(debug_model, tmp_path, text_encoder):
    """`kinema export --guidance-eta` records the projected guidance's eta; generation uses it unless given
    one, 1 is plain CFG (the default of a model that names none), and a bad eta is an error."""
    import json
    import shutil

    from kinema.checkpoint import CheckpointError
    from kinema.train import export_model

    export_model(debug_model, tmp_path / "apg", guidance=5.0, guidance_eta=0.0)
    assert json.loads((tmp_path / "apg" / "model.json").read_text())["guidance_eta"] == 0.0
    pipe = Pipeline.from_pretrained(tmp_path / "apg", text_encoder=text_encoder)
    assert pipe.guidance_eta == 0.0
    assert Pipeline.from_pretrained(debug_model, text_encoder=text_encoder).guidance_eta == 1.0
    kw = dict(steps=3, seed=0, expand=False)
    own = pipe("a red circle falls", **kw)
    assert own.info["guidance_eta"] == 0.0
    assert np.array_equal(own.frames, pipe("a red circle falls", guidance_eta=0.0, **kw).frames)
    assert not np.array_equal(own.frames, pipe("a red circle falls", guidance_eta=1.0, **kw).frames)
    with pytest.raises(KinemaError, match=r"guidance eta must be in \[0, 1\], got 2"):
        pipe("a red circle falls", guidance_eta=2, **kw)
    shutil.copytree(debug_model, tmp_path / "bad")
    meta = json.loads((tmp_path / "bad" / "model.json").read_text())
    (tmp_path / "bad" / "model.json").write_text(json.dumps(meta | {"guidance_eta": "zero"}))
    with pytest.raises(CheckpointError, match=r"guidance eta must be in \[0, 1\], got 'zero'"):
        Pipeline.from_pretrained(tmp_path / "bad", text_encoder=text_encoder)


def test_model_guidance_interval_that_is_not_an_interval_is_a_checkpoint_error(debug_model, tmp_path, text_encoder):
    import json
    import shutil

    from kinema.checkpoint import CheckpointError

    shutil.copytree(debug_model, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta | {"guidance_interval": [0.5]}))
    with pytest.raises(CheckpointError, match=r"guidance interval must be two times LO:HI .*got \[0.5\]"):
        Pipeline.from_pretrained(tmp_path / "m", text_encoder=text_encoder)


def test_model_guidance_that_is_not_a_scale_is_a_checkpoint_error(debug_model, tmp_path, text_encoder):
    import json
    import shutil

    from kinema.checkpoint import CheckpointError

    shutil.copytree(debug_model, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta | {"guidance": "strong"}))
    with pytest.raises(CheckpointError, match=r"guidance must be in \[0, 50\], got 'strong'"):
        Pipeline.from_pretrained(tmp_path / "m", text_encoder=text_encoder)
