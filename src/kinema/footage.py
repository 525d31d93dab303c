"""Training data from real footage: decode, resample, bucket, and cache VAE latents and text embeddings.

    kinema prepare --videos clips/ --vae shipped --out runs/footage --fps 12 --buckets small
    kinema train --data runs/footage --vae shipped --init shipped --lora 8 --out runs/ft --steps 500

Sources are a folder of videos with sidecar captions (`clip.mp4` + `clip.txt`) or a manifest (.csv, .jsonl
or .parquet) with columns `path`, `caption` and optional `start` and `end` in seconds; relative paths are
read from the manifest's folder.

Policy, in the order it is applied:
- decoding goes through PyAV, so any container and codec FFmpeg reads works; audio is ignored; frame times
  come from each frame's timestamp, so variable-frame-rate files are resampled correctly;
- time: a clip's frame k is the last source frame shown at start + k / fps (sample-and-hold, the way a
  player displays it); up to `max_clips` non-overlapping clips are taken, spread evenly over the file;
- space: each clip goes to the bucket whose aspect ratio is nearest in log space (among the buckets whose
  duration the clip can fill; ties go to the longer bucket), is scaled so it covers the bucket
  (preserving its aspect, area filter) and is centre-cropped to it. Nothing is letterboxed or stretched;
- a file that cannot be opened or decoded, is empty, truncated, too short, or has no caption is skipped,
  logged in `skipped.jsonl` with its reason, and counted; it never stops the run.

Output: `out/meta.json`, one folder per bucket with `shard_GGGG.pt` files (the same keys as the world's
latent shards, so training reads both the same way), and `out/done/group_GGGG.json`, written last for each
group of source files: a rerun skips the groups it finds done.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

if TYPE_CHECKING:  # PyAV loads where footage is decoded: world training on a machine without it never needs it
    import av

from kinema.checkpoint import atomic_write

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".gif", ".flv", ".wmv"}
MANIFEST_SUFFIXES = {".csv", ".jsonl", ".parquet"}
SIDECAR_SUFFIXES = {".txt", ".json", ".jsonl", ".csv", ".parquet", ".md"}


@dataclass(frozen=True)
class Bucket:
    """One training shape: every clip in a bucket has exactly width x height pixels and `frames` frames."""

    name: str
    width: int
    height: int
    frames: int

    @property
    def aspect(self) -> float:
        return self.width / self.height

    def tokens(self, stride: int = 16, temporal_ratio: int = 4) -> int:
        """DiT tokens of one clip: latent frames x (height / stride) x (width / stride)."""
        return (1 + (self.frames - 1) // temporal_ratio) * (self.height // stride) * (self.width // stride)

    def check(self, stride: int = 16, temporal_ratio: int = 4) -> None:
        if self.width % stride or self.height % stride or self.width <= 0 or self.height <= 0:
            raise ValueError(f"bucket {self.name}: {self.width}x{self.height} is not a positive multiple of {stride}")
        if self.frames < 1 or (self.frames - 1) % temporal_ratio:
            raise ValueError(f"bucket {self.name}: frames must be 1 + {temporal_ratio}k, got {self.frames}")


# Named bucket sets. Within a set every bucket stays under the set's token budget (BUDGETS), so a batch
# costs about the same whatever its aspect. Sizes are multiples of 16 (VAE 4x times patch 4).
BUCKET_SETS: dict[str, tuple[Bucket, ...]] = {
    "tiny": (  # tests: 9 frames, 32 px
        Bucket("sq32", 32, 32, 9),
        Bucket("wide48", 48, 32, 9),
        Bucket("tall48", 32, 48, 9),
    ),
    "small": (  # the shipped model's clip (2 s at 12 fps) and its landscape/portrait neighbours
        Bucket("sq64", 64, 64, 25),
        Bucket("land96", 96, 64, 25),
        Bucket("port96", 64, 96, 25),
        Bucket("wide112", 112, 64, 17),
        Bucket("tall112", 64, 112, 17),
    ),
    "small25": (  # "small" with 2 s (25 frames) at every shape, plus 4:3 (every shape the benchmark asks for)
        Bucket("sq64", 64, 64, 25),
        Bucket("land96", 96, 64, 25),
        Bucket("port96", 64, 96, 25),
        Bucket("wide112", 112, 64, 25),
        Bucket("tall112", 64, 112, 25),
        Bucket("std64", 64, 48, 25),
    ),
    "base": (  # GPU scale: 256 px area, 49 frames (4 s at 12 fps)
        Bucket("sq256", 256, 256, 49),
        Bucket("land320", 320, 192, 49),
        Bucket("port320", 192, 320, 49),
        Bucket("wide384", 384, 208, 41),
        Bucket("tall384", 208, 384, 41),
    ),
}
BUDGETS: dict[str, int] = {"tiny": 64, "small": 200, "small25": 200, "base": 4096}


def bucket_set(name: str, spatial_ratio: int = 4, temporal_ratio: int = 4) -> tuple[Bucket, ...]:
    """The named bucket set, checked against the VAE's ratios (sizes must give whole latents) and the set's
    budget in 16-pixel tokens (the DiT's token: VAE 4x times patch 4, or 8x times patch 2)."""
    if name not in BUCKET_SETS:
        raise ValueError(f"unknown bucket set {name!r}; choose from {', '.join(BUCKET_SETS)}")
    for b in BUCKET_SETS[name]:
        b.check(spatial_ratio, temporal_ratio)
        if b.tokens(16, temporal_ratio) > BUDGETS[name]:
            raise ValueError(f"bucket {b.name} has {b.tokens(16, temporal_ratio)} tokens > budget {BUDGETS[name]}")
    return BUCKET_SETS[name]


def nearest_bucket(width: int, height: int, buckets: tuple[Bucket, ...], seconds: float, fps: float) -> Bucket | None:
    """The bucket nearest in log aspect ratio among those whose duration fits; ties go to more frames."""
    fits = [b for b in buckets if (b.frames - 1) / fps <= seconds + 1e-9]
    if not fits or width <= 0 or height <= 0:
        return None
    a = math.log(width / height)
    return min(fits, key=lambda b: (round(abs(a - math.log(b.aspect)), 6), -b.frames))


def cover_size(width: int, height: int, bucket: Bucket) -> tuple[int, int]:
    """The smallest size with the source's aspect that covers the bucket (then centre-cropped to it)."""
    s = max(bucket.width / width, bucket.height / height)
    return max(bucket.width, round(width * s)), max(bucket.height, round(height * s))


def clip_starts(begin: float, end: float, length: float, fps: float, max_clips: int) -> list[float]:
    """Start times of up to max_clips non-overlapping clips of `length` seconds spread evenly in [begin, end]."""
    span = length + 1 / fps
    room = end - begin
    if room + 1e-9 < length or max_clips < 1:
        return []
    n = max(1, min(max_clips, int(room // span)))
    gap = max(0.0, room - n * length) / n
    return [begin + gap / 2 + i * (length + gap) for i in range(n)]


@dataclass(frozen=True)
class Source:
    path: Path
    caption: str
    start: float | None = None
    end: float | None = None


class SkipError(Exception):
    """A source file that is skipped: the message is the reason that gets counted."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def decode_clips(
    src: Source, buckets: tuple[Bucket, ...], fps: float, max_clips: int = 4
) -> tuple[Bucket, list[np.ndarray]]:
    """Decode a source into clips for one bucket: (bucket, [(frames, H, W, 3) uint8, ...]).
    Raises SkipError with a short reason for anything unusable."""
    import av

    if not src.path.is_file():
        raise SkipError("missing", str(src.path))
    if src.path.stat().st_size == 0:
        raise SkipError("empty file")
    try:
        with av.open(str(src.path)) as container:
            if not container.streams.video:
                raise SkipError("no video stream")
            stream = container.streams.video[0]
            w, h = stream.codec_context.width, stream.codec_context.height
            duration = _duration(container, stream)
            begin = max(0.0, src.start or 0.0)
            end = min(duration, src.end) if src.end is not None else duration
            stream.thread_type = "AUTO"  # frame-parallel decoding
            if not w or not h:
                raise SkipError("no frame size")
            if not math.isfinite(end):
                raise SkipError("unknown duration")
            bucket = nearest_bucket(w, h, buckets, end - begin, fps)
            if bucket is None:
                raise SkipError("too short", f"{end - begin:.2f} s")
            length = (bucket.frames - 1) / fps
            starts = clip_starts(begin, end, length, fps, max_clips)
            targets = [s + k / fps for s in starts for k in range(bucket.frames)]
            frames = _sample_and_hold(container, stream, targets, cover_size(w, h, bucket))
    except SkipError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, RuntimeError, IndexError) as e:
        raise SkipError("undecodable", str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    clips = []
    for i in range(len(starts)):
        part = frames[i * bucket.frames : (i + 1) * bucket.frames]
        if len(part) == bucket.frames and all(f is not None for f in part):
            clips.append(_centre_crop(np.stack(part), bucket))
    if not clips:
        raise SkipError("truncated", "no complete clip decoded")
    return bucket, clips


def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base) + float(stream.start_time or 0) * float(stream.time_base)
    if container.duration is not None:
        return container.duration / 1e6
    if stream.frames and stream.average_rate:
        return stream.frames / float(stream.average_rate)
    return math.inf


def _sample_and_hold(container, stream, targets: list[float], size: tuple[int, int]) -> list[np.ndarray | None]:
    """For each target time, the last frame whose timestamp is <= it (the first frame for earlier targets),
    scaled to size. Targets after the last decoded frame (plus one frame period) stay None."""
    out: list[np.ndarray | None] = [None] * len(targets)
    order = sorted(range(len(targets)), key=targets.__getitem__)
    j, prev, prev_t, cached = 0, None, None, None
    period = 1 / float(stream.average_rate or 24)
    for frame in container.decode(stream):
        t = frame.time if frame.time is not None else (prev_t + period if prev_t is not None else 0.0)
        while j < len(order) and targets[order[j]] < t:
            if prev is None:  # targets before the first frame take the first frame
                prev = frame
            if cached is None:
                cached = _rgb(prev, size)
            out[order[j]] = cached
            j += 1
        if j == len(order):
            return out
        prev, prev_t, cached = frame, t, None
    while prev is not None and j < len(order) and targets[order[j]] <= prev_t + period + 1e-6:
        cached = cached if cached is not None else _rgb(prev, size)
        out[order[j]] = cached
        j += 1
    return out


def _rgb(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    return frame.to_ndarray(format="rgb24", width=size[0], height=size[1], interpolation="AREA")


def _centre_crop(frames: np.ndarray, bucket: Bucket) -> np.ndarray:
    h, w = frames.shape[1:3]
    top, left = (h - bucket.height) // 2, (w - bucket.width) // 2
    return frames[:, top : top + bucket.height, left : left + bucket.width]


# ---- sources ----------------------------------------------------------------------------------------------


def list_sources(spec: Path) -> tuple[list[Source], Counter]:
    """Sources from a folder (video + sidecar .txt) or a manifest file, sorted, plus counts of files skipped
    before decoding (no caption, unsupported type)."""
    spec = Path(spec)
    skipped: Counter = Counter()
    if spec.is_file():
        return _read_manifest(spec, skipped), skipped
    if not spec.is_dir():
        raise FileNotFoundError(f"no video folder or manifest at {spec}")
    sources = []
    for p in sorted(q for q in spec.rglob("*") if q.is_file()):
        suffix = p.suffix.lower()
        if suffix in SIDECAR_SUFFIXES:
            continue
        if suffix not in VIDEO_SUFFIXES:
            skipped["unsupported"] += 1
            continue
        txt = p.with_suffix(".txt")
        caption = " ".join(txt.read_text(errors="replace").split()) if txt.is_file() else ""
        if not caption:
            skipped["no caption"] += 1
            continue
        sources.append(Source(p, caption))
    return sources, skipped


def _read_manifest(path: Path, skipped: Counter) -> list[Source]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    elif suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError("reading a .parquet manifest needs pyarrow (pip install pyarrow)") from None
        rows = pq.read_table(path).to_pylist()
    else:
        raise ValueError(f"manifest must be .csv, .jsonl or .parquet, got {path.name}")
    sources = []
    for i, row in enumerate(rows):
        p, caption = row.get("path") or row.get("video"), row.get("caption") or row.get("prompt") or ""
        if not p:
            raise ValueError(f"{path.name} row {i + 1} has no path")
        caption = " ".join(str(caption).split())
        if not caption:
            skipped["no caption"] += 1
            continue
        start, end = row.get("start"), row.get("end")
        full = Path(p) if Path(p).is_absolute() else path.parent / p
        sources.append(Source(full, caption, _seconds(start), _seconds(end)))
    return sources


def _seconds(value: object) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


def short_caption(caption: str) -> str:
    """The first sentence: trained with probability p_short, like the world's short captions."""
    return re.split(r"(?<=[.!?])\s", caption, maxsplit=1)[0]


# ---- prepare ----------------------------------------------------------------------------------------------


@torch.no_grad()
def prepare_footage(
    videos: Path,
    vae_dir: Path,
    out: Path,
    fps: float = 12.0,
    buckets: str = "small",
    max_clips: int = 4,
    files_per_shard: int = 64,
    batch: int = 8,
    text_encoder=None,
    quiet: bool = False,
) -> dict:
    """Encode every usable clip of `videos` into per-bucket latent shards under `out`. Returns the counts."""
    from kinema.text import TextEncoder
    from kinema.train import TEXT_LEN, load_vae

    if not (0 < fps <= 120):
        raise ValueError(f"fps must be in (0, 120], got {fps:g}")
    out = Path(out)
    vae = load_vae(vae_dir)
    bset = bucket_set(buckets, vae.cfg.spatial_ratio, vae.cfg.temporal_ratio)
    sources, pre_skipped = list_sources(videos)
    (out / "done").mkdir(parents=True, exist_ok=True)
    enc = text_encoder or TextEncoder.from_pretrained(max_length=TEXT_LEN)
    e, m = enc.encode([""], pad_to=TEXT_LEN)
    atomic_write(out / "null.pt", lambda p: torch.save({"text": e[0], "mask": m[0]}, p))
    groups = [sources[i : i + files_per_shard] for i in range(0, len(sources), files_per_shard)]
    bar = tqdm(total=len(sources), desc="prepare", dynamic_ncols=True, disable=quiet)
    for g, group in enumerate(groups):
        marker = out / "done" / f"group_{g:04d}.json"
        if marker.is_file():
            bar.update(len(group))
            continue
        per_bucket: dict[str, list[tuple[np.ndarray, str]]] = {}
        counts: Counter = Counter()
        skipped = []
        for src in group:
            try:
                bucket, clips = decode_clips(src, bset, fps, max_clips)
            except SkipError as err:
                counts[f"skipped: {err.reason}"] += 1
                skipped.append({"path": str(src.path), "reason": err.reason, "detail": err.detail})
                tqdm.write(f"skipped {src.path}: {err.reason}{f' ({err.detail})' if err.detail else ''}")
            else:
                counts["videos"] += 1
                counts["clips"] += len(clips)
                per_bucket.setdefault(bucket.name, []).extend((c, src.caption) for c in clips)
            bar.update(1)
        for name, items in per_bucket.items():
            shard = _encode_items(items, vae, enc, batch)
            path = out / name / f"shard_{g:04d}.pt"
            path.parent.mkdir(exist_ok=True)
            atomic_write(path, lambda p, s=shard: torch.save(s, p))
            counts[f"clips in {name}"] += len(items)
        record = {"counts": dict(counts), "skipped": skipped}
        atomic_write(marker, lambda p, r=record: Path(p).write_text(json.dumps(r, indent=1)))
    bar.close()
    total: Counter = Counter({f"skipped: {k}": v for k, v in pre_skipped.items()})
    all_skipped = []
    for marker in sorted((out / "done").glob("group_*.json")):
        record = json.loads(marker.read_text())
        total.update(record["counts"])
        all_skipped += record["skipped"]
    meta = {
        "kind": "footage",
        "fps": fps,
        "bucket_set": buckets,
        "buckets": {b.name: asdict(b) for b in bset if (out / b.name).is_dir()},
        "vae": str(vae_dir),
        "sources": str(videos),
        "counts": dict(sorted(total.items())),
    }
    atomic_write(out / "meta.json", lambda p: Path(p).write_text(json.dumps(meta, indent=2)))
    atomic_write(
        out / "skipped.jsonl", lambda p: Path(p).write_text("".join(json.dumps(s) + "\n" for s in all_skipped))
    )
    return meta["counts"]


def _encode_items(items: list[tuple[np.ndarray, str]], vae, enc, batch: int) -> dict:
    from kinema.data import to_tensor
    from kinema.train import encode_clips

    chunks = (items[i : i + batch] for i in range(0, len(items), batch))
    return encode_clips(
        (
            (torch.stack([to_tensor(c) for c, _ in ch]), [c for _, c in ch], [short_caption(c) for _, c in ch])
            for ch in chunks
        ),
        vae,
        enc,
    )
