"""Footage ingestion: buckets, sample-and-hold resampling of variable-frame-rate video, and `kinema prepare`
on a folder with broken files (skipped, counted, logged) that resumes without redoing finished shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from kinema.data import open_latents
from kinema.footage import (
    BUCKET_SETS,
    Bucket,
    SkipError,
    Source,
    _sample_and_hold,
    bucket_set,
    clip_starts,
    cover_size,
    decode_clips,
    list_sources,
    nearest_bucket,
    prepare_footage,
)
from tests.scale_media import make_footage, write_clip

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
if not MEDIA.is_dir():
    MEDIA = Path("/work/shared/media")


def test_buckets_are_named_typed_and_under_budget() -> None:
    for name in BUCKET_SETS:
        for b in bucket_set(name):
            assert isinstance(b, Bucket) and b.width % 16 == 0 and (b.frames - 1) % 4 == 0
    tiny = bucket_set("tiny")
    assert nearest_bucket(1280, 720, tiny, 10, 8).name == "wide48"  # 16:9 is nearest 3:2
    assert nearest_bucket(720, 1280, tiny, 10, 8).name == "tall48"
    assert nearest_bucket(500, 480, tiny, 10, 8).name == "sq32"
    assert nearest_bucket(64, 64, tiny, 0.5, 8) is None  # 9 frames at 8 fps need 1 s
    assert cover_size(1280, 720, Bucket("b", 48, 32, 9)) == (57, 32)  # covers 48x32, then centre-cropped
    assert clip_starts(0, 10, 1.0, 8, 4) == pytest.approx([0.0, 0.0 + 3.25, 6.5, 9.75], abs=1.5)
    assert len(clip_starts(0, 10, 1.0, 8, 4)) == 4 and clip_starts(0, 0.5, 1.0, 8, 4) == []
    with pytest.raises(ValueError, match="unknown bucket set"):
        bucket_set("huge")


def test_variable_frame_rate_is_sampled_and_held(tmp_path: Path) -> None:
    times = [0.0, 0.05, 0.3, 0.35, 0.9]
    levels = [30, 80, 130, 180, 230]
    write_clip(tmp_path / "vfr.mp4", 32, 32, times, levels)
    with av.open(str(tmp_path / "vfr.mp4")) as c:
        s = c.streams.video[0]
        got = _sample_and_hold(c, s, [0.0, 0.1, 0.3, 0.5, 0.89, 0.95], (32, 32))
    means = [round(float(np.median(f[20:, :, 0]))) for f in got]
    expected = [30, 80, 130, 180, 180, 230]  # the frame on screen at each time
    assert all(abs(a - b) <= 6 for a, b in zip(means, expected, strict=True)), means


@pytest.mark.parametrize("name", ["horse_720x480_8fps.mp4", "person_1280x720_24fps_audio.mp4"])
def test_decode_real_footage(name: str) -> None:
    """Real H.264 footage, one file with an audio track (ignored); 8 fps and 24 fps resampled to 8."""
    path = MEDIA / name
    if not path.is_file():
        pytest.skip(f"sample footage not found at {MEDIA}")
    bucket, clips = decode_clips(Source(path, "a clip"), bucket_set("tiny"), fps=8.0, max_clips=2)
    assert bucket.name == "wide48" and len(clips) == 2 and clips[0].shape == (9, 32, 48, 3)
    assert clips[0].std() > 5  # real pictures, not flat frames


def test_broken_sources_raise_skip_with_reason(tmp_path: Path) -> None:
    expected = make_footage(tmp_path)
    sources, pre = list_sources(tmp_path)
    assert pre == {"no caption": 1, "unsupported": 1}
    reasons = {}
    for src in sources:
        try:
            decode_clips(src, bucket_set("tiny"), 8.0)
        except SkipError as e:
            reasons[src.path.name] = e.reason
    assert reasons == {
        "empty.mp4": "empty file",
        "notvideo.mp4": "undecodable",
        "truncated.mp4": "undecodable",
        "short.mp4": "too short",
    }
    assert sum(expected.values()) == len(reasons) + 2


def test_prepare_cli_round_trip_skips_broken_files_and_resumes(tmp_path: Path, debug_model: Path, text_encoder) -> None:
    expected = make_footage(tmp_path / "videos")
    out = tmp_path / "prepared"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "kinema", "prepare", "--videos", str(tmp_path / "videos"), "--vae"]
    cmd += [str(debug_model), "--out", str(out), "--fps", "8", "--buckets", "tiny", "--files-per-shard", "4", "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "skipped 6 files" in r.stdout, r.stdout
    meta = json.loads((out / "meta.json").read_text())
    counts = meta["counts"]
    assert {k: v for k, v in counts.items() if k.startswith("skipped")} == expected
    assert counts["videos"] == 4 and counts["clips"] == 4  # 2.1 s files hold one 1 s clip plus its gap
    assert len((out / "skipped.jsonl").read_text().splitlines()) == 4  # decoded and rejected, with reasons
    assert set(meta["buckets"]) == {"sq32", "wide48", "tall48"}
    sets, null = open_latents(out)
    assert null is not None and null[0].shape == (128, 384)
    shapes = {s.name: tuple(s.shards.latents.shape[1:]) for s in sets}
    assert shapes == {"sq32": (8, 3, 4, 4), "wide48": (8, 3, 4, 6), "tall48": (8, 3, 6, 4)}
    # a rerun finds every group done and rewrites no shard
    shards = sorted(out.glob("*/shard_*.pt"))
    stamps = [p.stat().st_mtime_ns for p in shards]
    again = prepare_footage(
        tmp_path / "videos",
        debug_model,
        out,
        fps=8,
        buckets="tiny",
        files_per_shard=4,
        text_encoder=text_encoder,
        quiet=True,
    )
    assert again == counts and [p.stat().st_mtime_ns for p in shards] == stamps


def test_manifests_csv_jsonl_and_parquet(tmp_path: Path) -> None:
    make_footage(tmp_path / "videos")
    rows = [
        {"path": "videos/wide.mp4", "caption": "a wide clip", "start": "0.5", "end": "1.8"},
        {"path": str(tmp_path / "videos" / "tall.mp4"), "caption": "a tall clip", "start": "", "end": ""},
        {"path": "videos/square.mp4", "caption": " "},  # no caption: skipped and counted
        {"path": "videos/gone.mp4", "caption": "a missing file"},
    ]
    (tmp_path / "m.csv").write_text(
        "path,caption,start,end\n"
        + "".join(f"{r['path']},{r['caption']},{r.get('start', '')},{r.get('end', '')}\n" for r in rows)
    )
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name in ("m.csv", "m.jsonl"):
        sources, skipped = list_sources(tmp_path / name)
        assert skipped == {"no caption": 1}, name
        assert [(s.path.name, s.caption, s.start, s.end) for s in sources] == [
            ("wide.mp4", "a wide clip", 0.5, 1.8),
            ("tall.mp4", "a tall clip", None, None),
            ("gone.mp4", "a missing file", None, None),
        ]
        assert sources[0].path == tmp_path / "videos" / "wide.mp4"  # relative to the manifest
        bucket, clips = decode_clips(sources[0], bucket_set("tiny"), 8.0)  # 1.3 s of the 2.1 s file: one clip
        assert bucket.name == "wide48" and len(clips) == 1
        with pytest.raises(SkipError, match="missing"):
            decode_clips(sources[2], bucket_set("tiny"), 8.0)
    (tmp_path / "m.parquet").write_bytes(b"PAR1")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="needs pyarrow"):
            list_sources(tmp_path / "m.parquet")
    (tmp_path / "m.txt").write_text("videos/wide.mp4")
    with pytest.raises(ValueError, match=r"must be \.csv, \.jsonl or \.parquet"):
        list_sources(tmp_path / "m.txt")
