"""C2PA signing and `kinema verify`: signed files read Trusted, tampered Invalid, unsigned none; generation
never leaves an unsigned or unmarked file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kinema import provenance as P
from kinema import world as W
from kinema.cli import app
from kinema.video_io import write_video


@pytest.fixture(autouse=True)
def _home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINEMA_HOME", str(tmp_path_factory.getbasetemp() / "kinema_home"))
    monkeypatch.delenv("KINEMA_C2PA_CERT", raising=False)
    monkeypatch.delenv("KINEMA_C2PA_KEY", raising=False)


def _clip(path: Path) -> Path:
    return write_video(W.render(W.sample_scene(1, "test"), 64, 64, 12), path, 12)


def test_sign_and_read(tmp_path: Path) -> None:
    f = _clip(tmp_path / "a.mp4")
    assert P.read_state(f)["state"] == "none"
    P.sign_file(f, P.manifest("m", "0.1.0", 7, "a prompt", "0011223344", "gid"))
    r = P.read_state(f)
    assert r["state"] == "Trusted" and r["failures"] == []
    assert r["assertion"]["seed"] == 7 and r["assertion"]["watermark"] == "0011223344"
    import c2pa

    with open(f, "rb") as fh, c2pa.Reader("video/mp4", fh) as reader:
        store = reader.json()
    assert '"c2pa.created"' in store and "digitalsourcetype/trainedAlgorithmicMedia" in store
    assert "a prompt" not in f.read_bytes().decode("latin-1")
    assert (P.c2pa_home() / "signer.key").stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob(".*"))  # no temp file left


def test_tampered_file_reads_invalid(tmp_path: Path) -> None:
    f = _clip(tmp_path / "a.mp4")
    P.sign_file(f, P.manifest("m", "0.1.0", 0, "p", None, "gid"))
    data = bytearray(f.read_bytes())
    data[-100] ^= 0xFF  # inside the media data (mdat is last)
    f.write_bytes(bytes(data))
    r = P.read_state(f)
    assert r["state"] == "Invalid" and any("mismatch" in c for c in r["failures"])


def test_verify_bad_files(tmp_path: Path) -> None:
    runner = CliRunner()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    for f in (junk, tmp_path / "missing.mp4"):
        res = runner.invoke(app, ["verify", str(f)])
        assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["verify", str(_clip(tmp_path / "plain.mp4")), "--json"])
    out = json.loads(res.output)
    assert out["c2pa"]["state"] == "none" and out["watermark"]["detected"] is False


def test_generation_writes_signed_and_marked(debug_pipe, tmp_path: Path) -> None:
    video = debug_pipe("a red circle falls", steps=2, seed=0)
    f = video.save(tmp_path / "g.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.mp4"]
    res = CliRunner().invoke(app, ["verify", str(f), "--json"])
    out = json.loads(res.output)
    assert set(out) == {"c2pa", "watermark", "detector", "verdict"}
    assert out["c2pa"]["state"] == "Trusted"
    assert out["watermark"]["detected"] and out["watermark"]["payload"] == video.watermark
    assert 0 <= out["detector"]["score"] <= 1
    g = video.save(tmp_path / "g.gif")  # GIF: watermark only
    from kinema.video_io import read_video
    from kinema.watermark import detect

    assert detect(read_video(g)[0], video.watermark).detected
    assert np.array_equal(video.frames, video.frames)  # the Video keeps its unmarked frames


def test_world_renders_are_signed_as_algorithmic_media(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["world", "--out", str(tmp_path), "--n", "1", "--split", "test", "--start", "5"])
    assert res.exit_code == 0, res.output
    f = tmp_path / "clip_00005.mp4"
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == [f.name] and not list(tmp_path.glob(".*"))
    r = P.read_state(f)
    assert r["state"] == "Trusted" and r["assertion"] is None
    assert r["world"]["seed"] == 5 and r["world"]["split"] == "test"
    import c2pa

    with open(f, "rb") as fh, c2pa.Reader("video/mp4", fh) as reader:
        assert "digitalsourcetype/algorithmicMedia" in reader.json()
    out = json.loads(runner.invoke(app, ["verify", str(f), "--json"]).output)
    assert out["watermark"]["detected"] is False and "procedural world" in out["verdict"]
    with pytest.raises(P.ProvenanceError, match="digital source type"):
        P.sign_file(f, P.manifest("m", "0", 0, "p", None, "g"), "madeUp")


def test_failed_signing_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Signing is the last step: if it fails, neither the target nor the hidden unsigned file remains."""
    import kinema.pipeline as PL

    def broken(path: Path, definition: dict) -> Path:
        raise P.ProvenanceError("signing failed (test)")

    monkeypatch.setattr(P, "sign_file", broken)  # Video.save imports it from kinema.provenance when it saves
    frames = W.render(W.sample_scene(2, "test"), 64, 64, 12)
    for name, video in (
        ("v.mp4", PL.Video(frames, 12.0, "p", "p", 0)),
        ("v.png", PL.Video(frames[:1], 12.0, "p", "p", 0)),
    ):
        with pytest.raises(P.ProvenanceError, match="signing failed"):
            video.save(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_credentials_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KINEMA_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert P.c2pa_home() == tmp_path / "xdg" / "kinema" / "c2pa"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert P.c2pa_home() == Path.home() / ".config" / "kinema" / "c2pa"
    monkeypatch.setenv("KINEMA_C2PA_CERT", str(tmp_path / "chain.pem"))  # a key without a cert, or the reverse
    with pytest.raises(P.ProvenanceError, match="both"):
        P.credentials()


def test_detector_refit_on_plain_and_watermarked_copies(tmp_path: Path) -> None:
    """`detect train --watermark`: every generated clip also enters watermarked; held-out AUROC is reported
    overall and for each kind of copy, beside the baseline's on the same clips; the weights it writes load."""
    from kinema import detect

    folders = [tmp_path / "a", tmp_path / "b"]
    for k, folder in enumerate(folders):  # stand-ins for two models' clips: blurred, over-saturated renders
        folder.mkdir()
        for i in range(5):
            v = W.render(W.sample_scene(500 + 10 * k + i, "test"), 64, 64, 12).astype(np.float32)
            v = np.clip((v - 115) * 1.6 + 115, 0, 255)
            v = (v + np.roll(v, 1, 1) + np.roll(v, 1, 2)) / 3
            np.savez_compressed(folder / f"gen_{i:04d}.npz", frames=v.astype(np.uint8))
    r = detect.train(folders, tmp_path / "w.json", watermark=True)
    assert r["n_generated"] == 20 and r["watermarked_copies"] and r["data"] == [str(f) for f in folders]
    for key in ("heldout_auroc", "heldout_auroc_plain", "heldout_auroc_marked"):
        assert 0.0 <= r[key] <= 1.0 and 0.0 <= r["baseline_" + key] <= 1.0
    w = json.loads((tmp_path / "w.json").read_text())
    x = np.stack([detect.features(np.load(folders[0] / "gen_0000.npz")["frames"])])
    assert np.isfinite(detect._scores(x, w)).all()
    with pytest.raises(FileNotFoundError, match="no gen_"):
        detect.train([tmp_path / "empty"], tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
