"""Training at scale on CPU: two gloo ranks under torchrun (FSDP2) follow one process, resume is exact on
bucketed footage, a save interrupted between write and rename or a full disk keeps the last good
checkpoint, a NaN loss is skipped, and a LoRA fine-tune runs end to end into `kinema generate --lora`."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import kinema.checkpoint as ck
import kinema.train as T
from kinema.checkpoint import CheckpointError, latest_checkpoint, load_train_state
from kinema.footage import prepare_footage
from tests.scale_media import make_footage

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory, debug_model: Path, text_encoder) -> Path:
    root = tmp_path_factory.mktemp("footage")
    make_footage(root / "videos")
    prepare_footage(
        root / "videos", debug_model, root / "data", fps=8, buckets="tiny", text_encoder=text_encoder, quiet=True
    )
    return root / "data"


def test_two_ranks_match_one(footage: Path, debug_model: Path, tmp_path: Path) -> None:
    kw = dict(preset="debug", steps=3, batch=4, save_every=3, lr=1e-3, warmup=1)
    one = T.train(tmp_path / "one", footage, debug_model, **kw)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "kinema"]
    cmd += ["train", "--data", str(footage), "--vae", str(debug_model), "--out", str(tmp_path / "two")]
    cmd += ["--preset", "debug", "--max-steps", "3", "--batch", "4", "--save-every", "3", "--lr", "1e-3"]
    cmd += ["--warmup", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    two = {row["step"]: row["loss"] for row in map(json.loads, (tmp_path / "two" / "log.jsonl").open())}
    assert sorted(two) == [1, 2, 3]
    for s in two:
        assert two[s] == pytest.approx(one["losses"][s], rel=2e-2), (s, two, one["losses"])
    a, b = load_file(tmp_path / "one" / "dit.safetensors"), load_file(tmp_path / "two" / "dit.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=2e-3) for k in a)
    assert json.loads((tmp_path / "two" / "ckpt" / "step_00000003" / "train.json").read_text())["ranks"] == 2


def test_interrupted_save_full_disk_and_exact_resume(
    footage: Path, debug_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kw = dict(preset="debug", batch=2, save_every=2, lr=1e-3, warmup=1)
    T.train(tmp_path / "a", footage, debug_model, steps=4, **kw)
    # killed between writing step 4 and renaming it: step 2 stays the loadable latest
    real_commit = ck.commit_checkpoint

    def killed(ckpt, tmp, final, keep):
        if final.name.endswith("4"):
            raise KeyboardInterrupt
        real_commit(ckpt, tmp, final, keep)

    monkeypatch.setattr(ck, "commit_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        T.train(tmp_path / "b", footage, debug_model, steps=4, **kw)
    assert latest_checkpoint(tmp_path / "b").name == "step_00000002"
    assert load_train_state(tmp_path / "b")["step"] == 2
    # a full disk: one clear error, the last good checkpoint kept
    import torch.distributed.checkpoint as dcp

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dcp, "save", full)
    with pytest.raises(CheckpointError, match=r"disk full .* step_00000002, is kept"):
        T.train(tmp_path / "b", footage, debug_model, steps=4, **kw)
    assert latest_checkpoint(tmp_path / "b").name == "step_00000002"
    monkeypatch.undo()
    # resuming from step 2 ends exactly where the uninterrupted run did
    T.train(tmp_path / "b", footage, debug_model, steps=4, **kw)
    a, b = load_train_state(tmp_path / "a"), load_train_state(tmp_path / "b")
    assert a["step"] == b["step"] == 4
    for key in ("model", "ema"):
        assert all(torch.equal(v, b[key][k]) for k, v in a[key].items()), key
    assert sorted(p.name for p in (tmp_path / "b" / "ckpt").iterdir()) == ["latest", "step_00000002", "step_00000004"]


def test_nan_loss_is_skipped_and_counted(
    footage: Path, debug_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = T.flow_loss

    def sometimes_nan(*a, **k):
        calls.append(1)
        loss = real(*a, **k)
        return loss * float("nan") if len(calls) == 2 else loss

    monkeypatch.setattr(T, "flow_loss", sometimes_nan)
    result = T.train(tmp_path / "run", footage, debug_model, preset="debug", steps=3, batch=2, save_every=3)
    assert result["skipped"] == 1 and result["step"] == 3 and sorted(result["losses"]) == [1, 3]


def test_lora_finetune_then_generate(footage: Path, debug_model: Path, tmp_path: Path, text_encoder) -> None:
    run = tmp_path / "ft"
    T.train(run, footage, debug_model, init=debug_model, lora=4, steps=2, batch=2, save_every=2, lr=1e-2, warmup=1)
    adapter = load_file(run / "lora.safetensors")
    assert adapter and all(".lora_" in k for k in adapter)
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if k.endswith("lora_b"))  # it trained
    from kinema.pipeline import Pipeline

    merged = Pipeline.from_pretrained(run, text_encoder=text_encoder).dit.state_dict()
    applied = Pipeline.from_pretrained(lora=run, text_encoder=text_encoder).dit.state_dict()
    assert all(torch.allclose(merged[k], applied[k], atol=1e-6) for k in merged)
    out = tmp_path / "ft.mp4"
    cmd = [sys.executable, "-m", "kinema", "generate", "a square moves", "--lora", str(run), "-o", str(out)]
    r = subprocess.run([*cmd, "--steps", "2", "-q"], capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0
