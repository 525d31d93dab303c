"""The model shipped inside the package loads and generates: what `kinema generate` uses with no --model."""

import json

import numpy as np

from kinema import Pipeline
from kinema.pipeline import SHIPPED_MODEL


def test_shipped_model_is_small_and_complete() -> None:
    files = {p.name: p.stat().st_size for p in SHIPPED_MODEL.iterdir()}
    for name in ("model.json", "vae.json", "vae.safetensors", "dit.json", "dit.safetensors"):
        assert name in files, f"{name} missing from the shipped model"
    assert sum(files.values()) < 60 * 2**20  # tens of MB at most
    meta = json.loads((SHIPPED_MODEL / "model.json").read_text())
    assert (meta["width"], meta["height"], meta["frames"]) == (64, 64, 25)


def test_shipped_model_generates(text_encoder) -> None:
    pipe = Pipeline.from_pretrained(text_encoder=text_encoder)
    assert pipe.stride == 8  # the VAE (4x in space) times the 1x2x2 patch
    video = pipe("a red circle falls and bounces", steps=2, seed=0)
    assert video.frames.shape == (25, 64, 64, 3)
    # two sampling steps already give a picture on the world's grey background, not noise
    assert 60 < video.frames.mean() < 200 and video.frames.std() < 80
    assert not np.array_equal(video.frames[0], video.frames[-1])
