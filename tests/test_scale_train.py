"""Training at scale on CPU: two gloo ranks under torchrun (FSDP2) follow one process, resume is exact on
bucketed footage, a save interrupted between write and rename or a full disk keeps the last good
checkpoint, a NaN loss is skipped, and a LoRA fine-tune runs end to end into `kinema generate --lora`."""

from __future__ import annotations

import copy
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


def test_checkpointing_is_applied_from_outside_and_changes_nothing() -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper

    from kinema.dit import DIT_PRESETS, DiT
    from kinema.parallel import Dist, parallelize, param_name

    torch.manual_seed(0)
    plain = DiT(DIT_PRESETS["debug"])
    with torch.no_grad():  # leave adaLN-Zero's identity start, so every block matters
        for p in plain.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    wrapped = parallelize(copy.deepcopy(plain), Dist(), checkpointing=True)
    assert type(wrapped) is DiT and all(isinstance(b, CheckpointWrapper) for b in wrapped.blocks)
    assert list(wrapped.state_dict()) == list(plain.state_dict())  # checkpoints interchange
    assert [param_name(n) for n, _ in wrapped.named_parameters()] == [n for n, _ in plain.named_parameters()]
    x, t = torch.randn(2, 8, 3, 4, 6), torch.rand(2)
    text, mask = torch.randn(2, 5, 384), torch.ones(2, 5, dtype=torch.bool)
    losses = []
    for m in (plain, wrapped):
        loss = m(x, t, text, mask).square().mean()
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    for (n, a), b in zip(plain.named_parameters(), wrapped.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7), n


def legacy_state(state: dict) -> dict:
    """A DCP training state in the single-file layout earlier versions wrote (optimiser keyed by index)."""
    from kinema.dit import DIT_PRESETS, DiT

    names = [n for n, _ in DiT(DIT_PRESETS["debug"]).named_parameters()]  # the optimiser's order
    osd = state["optimizer"]
    optimizer = {
        "state": {names.index(k): v for k, v in osd["state"].items()},
        "param_groups": [{**g, "params": [names.index(k) for k in g["params"]]} for g in osd["param_groups"]],
    }
    return {"model": state["model"], "ema": state["ema"], "optimizer": optimizer, "rng": state["rng"], "step": 2}


def losses_of(run: Path) -> dict[int, float]:
    rows = map(json.loads, (run / "log.jsonl").open())
    return {row["step"]: row["loss"] for row in rows if "loss" in row}


def test_two_ranks_match_one_with_checkpointing_legacy_resume_and_kill(
    footage: Path, debug_model: Path, tmp_path: Path
) -> None:
    kw = dict(preset="debug", steps=3, batch=4, save_every=1, keep=3, lr=1e-3, warmup=1)
    one = T.train(tmp_path / "one", footage, debug_model, **kw)["losses"]
    step2 = load_train_state(tmp_path / "one", tmp_path / "one" / "ckpt" / "step_00000002")
    assert step2["step"] == 2
    (tmp_path / "legacy").mkdir()
    torch.save(legacy_state(step2), tmp_path / "legacy" / "train_state.pt")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += [str(Path(__file__).with_name("scale_ranks.py")), str(footage), str(debug_model), str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=900)
    assert (tmp_path / "before_kill").is_file(), r.stderr[-3000:]
    assert r.returncode != 0 and "SIGKILL" in r.stderr, r.stderr[-3000:]  # the last run's rank 1 was killed
    # two ranks (FSDP2), with and without activation checkpointing, follow one process step for step
    ref = load_file(tmp_path / "one" / "dit.safetensors")
    for name in ("plain", "checkpointing"):
        two = losses_of(tmp_path / name)
        assert sorted(two) == [1, 2, 3], name
        for s in two:
            assert two[s] == pytest.approx(one[s], rel=1e-5), (name, s, two, one)
        w = load_file(tmp_path / name / "dit.safetensors")
        assert all(torch.allclose(ref[k], w[k], atol=1e-3) for k in ref), name  # Adam's steps are ~lr
        assert json.loads((tmp_path / name / "ckpt" / "step_00000003" / "train.json").read_text())["ranks"] == 2
    # a legacy train_state.pt resumes under two ranks (converted on load) and ends where one process did
    legacy = losses_of(tmp_path / "legacy")
    assert sorted(legacy) == [3] and legacy[3] == pytest.approx(one[3], rel=1e-5)
    w = load_file(tmp_path / "legacy" / "dit.safetensors")
    assert all(torch.allclose(ref[k], w[k], atol=1e-3) for k in ref)
    # killed mid-save (rank 0 may clean up step_2.tmp before torchrun ends it, or leave it): step 1 stays the
    # loadable latest, and one process resumes the two-rank checkpoint
    killed = tmp_path / "killed"
    assert latest_checkpoint(killed).name == "step_00000001"
    assert load_train_state(killed)["step"] == 1
    resumed = T.train(killed, footage, debug_model, **{**kw, "steps": 2})
    assert sorted(resumed["losses"]) == [2]
    assert sorted(p.name for p in (killed / "ckpt").iterdir()) == ["latest", "step_00000001", "step_00000002"]


def test_interrupted_save_full_disk_and_exact_resume(
    footage: Path, debug_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kw = dict(preset="debug", batch=2, save_every=2, lr=1e-3, warmup=1)
    uninterrupted = T.train(tmp_path / "a", footage, debug_model, steps=4, **kw)["losses"]
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
    # a full disk, in the sharded checkpoint or in the model files: one clear error, the last good ones kept
    import torch.distributed.checkpoint as dcp

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.undo()
    weights = (tmp_path / "b" / "dit.safetensors").stat().st_ino
    for module, name in ((ck, "save_file"), (dcp, "save")):
        monkeypatch.setattr(module, name, full)
        with pytest.raises(CheckpointError, match=r"disk full .* step_00000002, is kept"):
            T.train(tmp_path / "b", footage, debug_model, steps=4, **kw)
        monkeypatch.undo()
        assert latest_checkpoint(tmp_path / "b").name == "step_00000002"
        assert not list((tmp_path / "b" / "ckpt").glob("*.tmp")) and not list((tmp_path / "b").glob(".*.tmp"))
        if name == "save_file":  # the model file was not replaced
            assert (tmp_path / "b" / "dit.safetensors").stat().st_ino == weights
    # resuming from step 2 gives the uninterrupted run's losses and ends exactly where it did
    resumed = T.train(tmp_path / "b", footage, debug_model, steps=4, **kw)["losses"]
    assert resumed == {s: uninterrupted[s] for s in (3, 4)}
    a, b = load_train_state(tmp_path / "a"), load_train_state(tmp_path / "b")
    assert a["step"] == b["step"] == 4
    for key in ("model", "ema"):
        assert all(torch.equal(v, b[key][k]) for k, v in a[key].items()), key
    for name, moments in a["optimizer"]["state"].items():
        assert all(
            torch.equal(torch.as_tensor(v), torch.as_tensor(b["optimizer"]["state"][name][k]))
            for k, v in moments.items()
        )
    assert sorted(p.name for p in (tmp_path / "b" / "ckpt").iterdir()) == ["latest", "step_00000002", "step_00000004"]


def test_nan_and_inf_losses_are_skipped_counted_and_logged(
    footage: Path, debug_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    calls = []
    real = T.flow_loss

    def sometimes_bad(*a, **k):
        calls.append(1)
        loss = real(*a, **k)
        return loss * {2: float("nan"), 3: float("inf")}.get(len(calls), 1.0)

    monkeypatch.setattr(T, "flow_loss", sometimes_bad)
    run = tmp_path / "run"
    result = T.train(run, footage, debug_model, preset="debug", steps=3, batch=2, save_every=3)
    assert result["skipped"] == 2 and result["step"] == 3 and sorted(result["losses"]) == [1]
    rows = [json.loads(line) for line in (run / "log.jsonl").open()]
    assert [(r["step"], r.get("skipped"), r.get("skipped_total")) for r in rows] == [
        (1, None, None),
        (2, "non-finite loss", 1),
        (3, "non-finite loss", 2),
    ]
    assert "step 3: non-finite loss, skipped (2 so far)" in capsys.readouterr().out
    assert latest_checkpoint(run).name == "step_00000003"  # the last step was skipped, the save was not


def test_tensorboard_scalars_mfu_and_sample_videos(
    footage: Path, debug_model: Path, tmp_path: Path, text_encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setattr(T, "SAMPLE_STEPS", 2)

    run = tmp_path / "run"
    kw = dict(preset="debug", batch=2, save_every=1, sample_every=2, peak_tflops=1.0, text_encoder=text_encoder)
    T.train(run, footage, debug_model, steps=2, **kw)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_00000002.mp4"]
    events = EventAccumulator(str(run / "tb")).Reload()
    scalars = ("loss", "grad_norm", "tokens_per_s", "gflops_per_s", "mfu")
    assert {f"train/{k}" for k in scalars} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/mfu")] == [1, 2]
    assert 0 < events.Scalars("train/mfu")[0].value < 1  # of 1 TFLOP/s: a CPU's share
    assert [e.step for e in events.Images("samples")] == [2]


def test_finetunes_then_generate_with_model_and_lora(
    footage: Path, debug_model: Path, tmp_path: Path, text_encoder
) -> None:
    from typer.testing import CliRunner

    from kinema.cli import app
    from kinema.pipeline import Pipeline

    kw = dict(init=debug_model, steps=2, batch=2, save_every=2, lr=1e-2, warmup=1, text_encoder=text_encoder)
    T.train(tmp_path / "ft", footage, debug_model, lora=4, **kw)
    T.train(tmp_path / "full", footage, debug_model, **kw)
    adapter = load_file(tmp_path / "ft" / "lora.safetensors")
    assert adapter and all(".lora_" in k for k in adapter)
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if k.endswith("lora_b"))  # it trained
    merged = Pipeline.from_pretrained(tmp_path / "ft", text_encoder=text_encoder).dit.state_dict()
    applied = Pipeline.from_pretrained(lora=tmp_path / "ft", text_encoder=text_encoder).dit.state_dict()
    assert all(torch.allclose(merged[k], applied[k], atol=1e-6) for k in merged)
    base, full = load_file(debug_model / "dit.safetensors"), load_file(tmp_path / "full" / "dit.safetensors")
    assert base.keys() == full.keys() and any(not torch.equal(base[k], full[k]) for k in base)  # all weights train
    for flag, run in (("--lora", "ft"), ("--model", "full")):
        out = tmp_path / f"{run}.mp4"
        args = ["generate", "a square moves", flag, str(tmp_path / run), "-o", str(out), "--steps", "2", "-q"]
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        assert out.stat().st_size > 0


def test_train_without_data_uses_the_procedural_world(debug_model: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kinema.cli import app

    run = tmp_path / "world"
    args = ["train", "--out", str(run), "--vae", str(debug_model), "--preset", "debug", "--world-clips", "4"]
    r = CliRunner().invoke(app, [*args, "--max-steps", "1", "--batch", "2", "--warmup", "1", "--object-weight", "1"])
    assert r.exit_code == 0, r.output
    assert (run / "world" / "objmask.pt").is_file()  # --object-weight needs where the objects are
    assert json.loads((run / "world" / "meta.json").read_text())["n"] == 4
    assert torch.load(run / "world" / "shard_0000.pt")["latents"].shape[0] == 4
    assert json.loads((run / "args.json").read_text())["data"] == str(run / "world")
    assert latest_checkpoint(run).name == "step_00000001" and (run / "dit.safetensors").is_file()
