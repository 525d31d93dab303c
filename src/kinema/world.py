"""The procedural world: scene graphs, physics, rendering, captions and machine-checkable specs.

kinema's default training data and the ground truth of its benchmark. A scene is defined in world units
(the view's short side is 1 unit at zoom 1, x to the right, y downwards), so prompts and physics do not
depend on resolution, and objects keep their size in frames of every shape: a 9:16 view is 1 unit wide and
16/9 tall, a 16:9 one 16/9 wide and 1 tall; `render(scene, width, height, fps)` rasterises it at any size
and frame rate.

    scene = sample_scene(seed=3, split="train")
    frames = render(scene, 64, 64, fps=12)      # (T, H, W, 3) uint8
    short_caption(scene), long_caption(scene), scene_spec(scene)

Run `kinema world --n 100 --out clips/` to write MP4 clips with their captions and specs.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

# ---------------------------------------------------------------------------------------------------
# Vocabulary of the world
# ---------------------------------------------------------------------------------------------------

HUES: dict[str, float] = {
    "red": 0.0,
    "yellow": 60.0,
    "green": 120.0,
    "cyan": 180.0,
    "blue": 240.0,
    "magenta": 300.0,
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: dict[str, float] = {"small": 0.085, "large": 0.13}  # radius in world units
DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up-left": (-0.7071, -0.7071),
    "up-right": (0.7071, -0.7071),
    "down-left": (-0.7071, 0.7071),
    "down-right": (0.7071, 0.7071),
}
MOTIONS: tuple[str, ...] = ("static", "move", "fall", "rotate")
CAMERA_MOVES: tuple[str, ...] = (
    "static",
    "pan-left",
    "pan-right",
    "pan-up",
    "pan-down",
    "zoom-in",
    "zoom-out",
)
SPEEDS: dict[str, float] = {"slowly": 0.16, "": 0.26, "quickly": 0.4}  # world units per second
# Speeds outside the trained range, only in the benchmark's "range-speed" set (never sampled for training)
RANGE_SPEEDS: dict[str, float] = {"very slowly": 0.08, "very quickly": 0.6}
ALL_SPEEDS: dict[str, float] = {**SPEEDS, **RANGE_SPEEDS}
# Compound camera moves, only in probe scenes (never sampled for train/test/holdout): the pan runs for the
# first half of the clip, then stops ("-stop") or returns to where it started ("-back").
COMPOUND_CAMERA_MOVES: tuple[str, ...] = tuple(f"pan-{d}-{k}" for k in ("stop", "back") for d in ("left", "right"))

GRAVITY = 2.5  # world units / s^2, y downwards
RESTITUTION = 0.72  # fraction of speed kept at a bounce
FLOOR_Y = 0.9  # top of the floor band in gravity scenes, in a view 1 unit tall (Scene.floor_y: 0.1 above the bottom)
SPIN = 2.0  # rad/s for rotation
CAMERA_PAN_SPEED = 0.18  # world units per second
CAMERA_ZOOM_RATE = 0.3  # log-zoom per second
OCCLUDER_HALF_WIDTH = 0.055
BLOCK = 0.125  # background texture block, world units

Split = Literal["train", "test", "holdout"]
SPLITS: dict[str, int] = {"train": 0, "test": 1, "holdout": 2}

# Compositional hold-outs: pairs never seen in training, only in the "holdout" split.
HOLDOUT_HUE_SHAPE: frozenset[tuple[str, str]] = frozenset({("green", "triangle"), ("magenta", "square")})
HOLDOUT_SHAPE_MOTION: frozenset[tuple[str, str]] = frozenset({("triangle", "fall")})
# The last template of every caption family is reserved for the holdout split.


# ---------------------------------------------------------------------------------------------------
# Scene graph
# ---------------------------------------------------------------------------------------------------


@dataclass
class Motion:
    kind: str = "static"  # one of MOTIONS
    direction: str = ""  # for "move": a key of DIRECTIONS
    speed: str = ""  # for "move": a key of SPEEDS
    clockwise: bool = True  # for "rotate"


@dataclass
class Obj:
    shape: str
    color: str
    size: str
    x: float  # start position, world units
    y: float
    motion: Motion = field(default_factory=Motion)
    angle: float = 0.0  # start angle, radians
    # An interaction (probe scenes only, see `interact`): from time t_after on the object follows `after`
    # from where it is, and shows the hue color_after if one is given.
    after: Motion | None = None
    t_after: float = 0.0
    color_after: str = ""

    @property
    def radius(self) -> float:
        return SIZES[self.size]

    @property
    def reach(self) -> float:
        """How far the shape extends below its centre at its start angle: where it touches the floor."""
        return bottom_extent(self.shape, self.radius, self.angle)


@dataclass
class Scene:
    objects: list[Obj]
    camera: str = "static"
    occluders: list[float] = field(default_factory=list)  # x centres of vertical bars, world units
    floor: bool = False
    aspect: float = 1.0  # width / height of the view
    duration: float = 2.0  # seconds the scene is described over
    seed: int = 0
    split: str = "train"
    template: int = 0  # which paraphrase family member the captions use

    @property
    def width(self) -> float:
        """Width of the view at zoom 1 in world units (the short side is 1)."""
        return max(self.aspect, 1.0)

    @property
    def height(self) -> float:
        """Height of the view at zoom 1 in world units (more than 1 only in portrait views)."""
        return max(1.0, 1.0 / self.aspect)

    @property
    def floor_y(self) -> float:
        """Top of the floor band: as far above the bottom of the view as in a square view."""
        return FLOOR_Y + (self.height - 1.0)


# ---------------------------------------------------------------------------------------------------
# Physics: positions as a function of time
# ---------------------------------------------------------------------------------------------------


def bottom_extent(shape: str, radius: float, angle: float) -> float:
    """Distance from a shape's centre down to its lowest point (image y grows downwards), matching `_sdf`."""
    if shape == "circle":
        return radius
    if shape == "square":
        h = radius * 0.82
        q = np.array([[-h, -h], [-h, h], [h, -h], [h, h]])
    elif shape == "triangle":
        r = radius * 1.2
        side = r * math.sqrt(3.0) / 2
        q = np.array([[-side, r / 4], [side, r / 4], [0.0, -5 * r / 4]])  # vertices in the shape's frame
    else:
        raise ValueError(f"unknown shape {shape!r}")
    # _sdf maps world offsets p to q = R(-angle) p, so p = R(angle) q; the lowest point has the largest y
    return float((math.sin(angle) * q[:, 0] + math.cos(angle) * q[:, 1]).max())


def fall_trajectory(y0: float, reach: float, t: np.ndarray, floor_y: float = FLOOR_Y) -> tuple[np.ndarray, list[float]]:
    """Height of a body dropped from rest at y0 that bounces on the floor (event-driven, exact).

    reach is how far the body extends below its centre (`bottom_extent`), so it rests touching the floor
    (whose top is at floor_y: Scene.floor_y). Returns y(t) and the bounce times. Speed after each bounce is
    RESTITUTION times the speed before.
    """
    floor = floor_y - reach
    y = np.empty_like(t)
    bounces: list[float] = []
    t_start, y_start, v_start = 0.0, y0, 0.0
    done = np.zeros(t.shape, dtype=bool)
    for _ in range(64):
        # solve y_start + v t + g t^2 / 2 = floor for the first t > 0
        disc = v_start * v_start + 2 * GRAVITY * (floor - y_start)
        dt = (-v_start + math.sqrt(max(disc, 0.0))) / GRAVITY
        t_hit = t_start + dt
        seg = (~done) & (t < t_hit)
        tau = t[seg] - t_start
        y[seg] = y_start + v_start * tau + 0.5 * GRAVITY * tau * tau
        done |= seg
        v_hit = v_start + GRAVITY * dt
        v_start = -RESTITUTION * v_hit
        t_start, y_start = t_hit, floor
        if abs(v_start) < 0.05:
            break
        bounces.append(t_hit)
        if done.all():
            break
    y[~done] = floor
    return y, bounces


def _follow(obj: Obj, m: Motion, t: np.ndarray, floor_y: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.full_like(t, obj.x)
    y = np.full_like(t, obj.y)
    ang = np.full_like(t, obj.angle)
    if m.kind == "move":
        dx, dy = DIRECTIONS[m.direction]
        v = ALL_SPEEDS[m.speed]
        x = obj.x + dx * v * t
        y = obj.y + dy * v * t
    elif m.kind == "fall":
        y, _ = fall_trajectory(obj.y, obj.reach, t, floor_y)
    elif m.kind == "rotate":
        ang = obj.angle + (SPIN if m.clockwise else -SPIN) * t
    return x, y, ang


def trajectory(obj: Obj, t: np.ndarray, floor_y: float = FLOOR_Y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World-space centre (x, y) and angle of an object at times t (seconds); falls land on floor_y."""
    x, y, ang = _follow(obj, obj.motion, t, floor_y)
    if obj.after is not None:  # from t_after on, the new motion starts where the old one got to
        tc = np.array([obj.t_after])
        xc, yc, ac = (float(v[0]) for v in _follow(obj, obj.motion, tc, floor_y))
        there = dataclasses.replace(obj, x=xc, y=yc, angle=ac, after=None)
        x2, y2, a2 = _follow(there, obj.after, np.maximum(t - obj.t_after, 0.0), floor_y)
        late = t >= obj.t_after
        x, y, ang = np.where(late, x2, x), np.where(late, y2, y), np.where(late, a2, ang)
    return x, y, ang


def half_width(obj: Obj) -> float:
    """Half the horizontal extent of an unrotated object (circle or square), for contact times."""
    if obj.shape == "triangle" or (obj.shape == "square" and obj.angle):
        raise ValueError("contact times are defined for circles and unrotated squares")
    return obj.radius * (0.82 if obj.shape == "square" else 1.0)


def interact(scene: Scene, kind: str, a: int, b: int, color: str = "") -> float:
    """Make objects a and b of a scene interact when they touch; returns the contact time (seconds).

    a moves left or right towards b along one row. "collide": equal masses, so at contact they exchange
    velocities (a pushes a resting b, which moves on while a stops; two movers bounce apart). "touch": a
    stops against a resting b, and b turns `color` at that moment (cause, then effect).
    """
    oa, ob = scene.objects[a], scene.objects[b]
    if oa.motion.kind != "move" or oa.motion.direction not in ("left", "right"):
        raise ValueError("the first object must move left or right")
    va = DIRECTIONS[oa.motion.direction][0] * ALL_SPEEDS[oa.motion.speed]
    vb = DIRECTIONS[ob.motion.direction][0] * ALL_SPEEDS[ob.motion.speed] if ob.motion.kind == "move" else 0.0
    gap = abs(ob.x - oa.x) - half_width(oa) - half_width(ob)
    closing = va - vb if ob.x > oa.x else vb - va
    if gap <= 0 or closing <= 0:
        raise ValueError("the objects must start apart and approach each other")
    t = gap / closing
    oa.t_after = ob.t_after = t
    if kind == "collide":
        oa.after, ob.after = ob.motion, oa.motion
    elif kind == "touch":
        oa.after, ob.after, ob.color_after = Motion("static"), Motion("static"), color
    else:
        raise ValueError(f"unknown interaction {kind!r}")
    return t


def camera_path(scene: Scene, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera centre (x, y) in world units and zoom at times t. "Pans left" moves the camera left,
    so content moves right in the frame."""
    cx = np.full_like(t, scene.width / 2)
    cy = np.full_like(t, scene.height / 2)
    zoom = np.ones_like(t)
    cam = scene.camera
    if cam in COMPOUND_CAMERA_MOVES:
        half = scene.duration / 2
        travel = np.minimum(t, half) if cam.endswith("-stop") else half - np.abs(t - half)
        dx, dy = DIRECTIONS[cam.split("-")[1]]
        cx = cx + dx * CAMERA_PAN_SPEED * travel
        cy = cy + dy * CAMERA_PAN_SPEED * travel
    elif cam.startswith("pan-"):
        dx, dy = DIRECTIONS[cam[4:]]
        cx = cx + dx * CAMERA_PAN_SPEED * t
        cy = cy + dy * CAMERA_PAN_SPEED * t
    elif cam == "zoom-in":
        zoom = np.exp(CAMERA_ZOOM_RATE * t)
    elif cam == "zoom-out":
        zoom = np.exp(-CAMERA_ZOOM_RATE * t)
    return cx, cy, zoom


# ---------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------


def hue_rgb(hue_deg: float, sat: float = 0.85, val: float = 0.95) -> np.ndarray:
    """HSV -> RGB in [0, 1] for one colour."""
    h = (hue_deg % 360.0) / 60.0
    c = val * sat
    xk = c * (1 - abs(h % 2 - 1))
    rgb = [(c, xk, 0), (xk, c, 0), (0, c, xk), (0, xk, c), (xk, 0, c), (c, 0, xk)][int(h) % 6]
    return np.array(rgb, dtype=np.float32) + (val - c)


def _block_texture(wx: np.ndarray, wy: np.ndarray) -> np.ndarray:
    """Low-saturation grey blocks fixed in world coordinates (a hash of the block index)."""
    bx = np.floor(wx / BLOCK).astype(np.int64)
    by = np.floor(wy / BLOCK).astype(np.int64)
    h = (bx * 73856093) ^ (by * 19349663)
    h = (h ^ (h >> 13)) * 1274126177
    v = ((h >> 7) & 255).astype(np.float32) / 255.0
    grey = 0.38 + 0.16 * v
    tint = 0.02 * (((h >> 17) & 3).astype(np.float32) - 1.5) / 1.5
    return np.stack([grey + tint, grey, grey - tint], axis=-1)


def _sdf(shape: str, px: np.ndarray, py: np.ndarray, radius: float, angle: np.ndarray) -> np.ndarray:
    """Signed distance (world units) from points to a shape centred at the origin."""
    if shape == "circle":
        return np.sqrt(px * px + py * py) - radius
    c, s = np.cos(angle), np.sin(angle)
    qx = c * px + s * py
    qy = -s * px + c * py
    if shape == "square":
        h = radius * 0.82
        return np.maximum(np.abs(qx), np.abs(qy)) - h
    if shape == "triangle":
        # equilateral triangle pointing up, circumradius ~1.2 r (Inigo Quilez's exact SDF)
        r = radius * 1.2
        k = math.sqrt(3.0)
        side = r * k / 2
        qy = -qy - r / 4  # image y is down: flip so the apex points up on screen, centre the mass
        qx = np.abs(qx) - side
        qy = qy + side / k
        flip = qx + k * qy > 0
        nx = np.where(flip, (qx - k * qy) / 2, qx)
        ny = np.where(flip, (-k * qx - qy) / 2, qy)
        nx = nx - np.clip(nx, -2 * side, 0)
        return -np.sqrt(nx * nx + ny * ny) * np.sign(ny)
    raise ValueError(f"unknown shape {shape!r}")


def render(
    scene: Scene, width: int = 64, height: int = 64, fps: float = 12.0, frames: int | None = None, t0: float = 0.0
) -> np.ndarray:
    """Rasterise a scene to (T, H, W, 3) uint8. Anti-aliased by analytic pixel coverage.

    frames defaults to round(duration * fps) + 1; frame i shows time t0 + i / fps.
    """
    n = round(scene.duration * fps) + 1 if frames is None else frames
    t = t0 + np.arange(n, dtype=np.float64) / fps
    cx, cy, zoom = camera_path(scene, t)
    view_h = scene.height / zoom  # (T,)
    # pixel centres in normalised view coordinates, then world coordinates per frame
    u = (np.arange(width) + 0.5) / width - 0.5
    v = (np.arange(height) + 0.5) / height - 0.5
    vw = view_h * (width / height)
    wx = cx[:, None, None] + u[None, None, :] * vw[:, None, None]  # (T, 1, W)
    wy = cy[:, None, None] + v[None, :, None] * view_h[:, None, None]  # (T, H, 1)
    wx, wy = np.broadcast_arrays(wx, wy)
    px_size = (view_h / height)[:, None, None]  # world units per pixel
    img = _block_texture(wx, wy)
    if scene.floor:
        floor = np.clip((wy - scene.floor_y) / px_size + 0.5, 0, 1)[..., None]
        img = img * (1 - floor) + np.float32(0.24) * floor
    for obj in scene.objects:
        ox, oy, ang = trajectory(obj, t, scene.floor_y)
        d = _sdf(obj.shape, wx - ox[:, None, None], wy - oy[:, None, None], obj.radius, ang[:, None, None])
        cover = np.clip(0.5 - d / px_size, 0, 1)[..., None]
        rgb = np.broadcast_to(hue_rgb(HUES[obj.color]), (len(t), 3))
        if obj.color_after:
            rgb = np.where((t >= obj.t_after)[:, None], hue_rgb(HUES[obj.color_after]), rgb)
        img = img * (1 - cover) + rgb[:, None, None, :].astype(np.float32) * cover
    for ox in scene.occluders:
        d = np.abs(wx - ox) - OCCLUDER_HALF_WIDTH
        cover = np.clip(0.5 - d / px_size, 0, 1)[..., None]
        img = img * (1 - cover) + np.array([0.1, 0.1, 0.12], dtype=np.float32) * cover
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# Sampling scenes
# ---------------------------------------------------------------------------------------------------


def _held_out(scene: Scene) -> bool:
    for o in scene.objects:
        if (o.color, o.shape) in HOLDOUT_HUE_SHAPE or (o.shape, o.motion.kind) in HOLDOUT_SHAPE_MOTION:
            return True
    return False


def _sample_motion(rng: np.random.Generator, shape: str, allow_fall: bool) -> Motion:
    kinds = ["static", "move", "move", "fall", "rotate"] if allow_fall else ["static", "move", "move", "rotate"]
    kind = str(rng.choice(kinds))
    if kind == "rotate" and shape == "circle":  # a spinning circle looks static
        kind = "move"
    if kind == "move":
        return Motion("move", direction=str(rng.choice(list(DIRECTIONS))), speed=str(rng.choice(list(SPEEDS))))
    if kind == "rotate":
        return Motion("rotate", clockwise=bool(rng.integers(2)))
    return Motion(kind)


def _place(rng: np.random.Generator, obj: Obj, scene: Scene) -> None:
    """Choose a start position that keeps a moving object in view for most of the clip."""
    r = obj.radius
    lo_x, hi_x = r + 0.05, scene.width - r - 0.05
    lo_y, hi_y = r + 0.05, scene.height - r - 0.05
    m = obj.motion
    if m.kind == "move":
        dx, dy = DIRECTIONS[m.direction]
        travel = ALL_SPEEDS[m.speed] * scene.duration
        # start behind the centre so the path crosses the middle of the view
        obj.x = float(np.clip(scene.width / 2 - dx * travel / 2 + rng.uniform(-0.15, 0.15), lo_x, hi_x))
        obj.y = float(np.clip(scene.height / 2 - dy * travel / 2 + rng.uniform(-0.15, 0.15), lo_y, hi_y))
    elif m.kind == "fall":  # as far above the floor as in a square view, so falls bounce at the same times
        obj.x = float(rng.uniform(lo_x, hi_x))
        obj.y = float(rng.uniform(0.12 + r, 0.4)) + (scene.height - 1.0)
    else:
        obj.x = float(rng.uniform(lo_x, hi_x))
        obj.y = float(rng.uniform(lo_y, scene.floor_y - obj.reach if scene.floor else hi_y))


def sample_scene(seed: int, split: str = "train", aspect: float = 1.0, duration: float = 2.0) -> Scene:
    """A random scene, deterministic in (seed, split). Train and test share a distribution with disjoint
    seeds; holdout scenes contain at least one compositional pair that train never sees."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {sorted(SPLITS)}")
    rng = np.random.default_rng([seed, SPLITS[split], 7919])
    for _ in range(1000):
        n = int(rng.choice([1, 1, 1, 2, 2, 3]))
        pairs = [(c, s) for c in HUES for s in SHAPES]
        idx = rng.permutation(len(pairs))[:n]
        gravity = rng.random() < 0.3
        scene = Scene(objects=[], aspect=aspect, duration=duration, seed=seed, split=split, floor=gravity)
        for i in idx:
            color, shape = pairs[i]
            size = str(rng.choice(list(SIZES)))
            motion = _sample_motion(rng, shape, allow_fall=gravity)
            scene.objects.append(Obj(shape, color, size, 0.0, 0.0, motion, angle=float(rng.uniform(0, 0.5))))
        for obj in scene.objects:
            _place(rng, obj, scene)
        # keep objects apart at the start, so relations and identities are clear
        ok = all(
            math.hypot(a.x - b.x, a.y - b.y) > a.radius + b.radius + 0.06
            for i, a in enumerate(scene.objects)
            for b in scene.objects[i + 1 :]
        )
        if not ok:
            continue
        if not gravity and rng.random() < 0.3:
            scene.camera = str(rng.choice(CAMERA_MOVES[1:]))
        if rng.random() < 0.2:
            scene.occluders = [float(rng.uniform(0.3, scene.width - 0.3))]  # 0.3 from the sides
        scene.template = int(rng.integers(N_TEMPLATES - 1)) if split != "holdout" else N_TEMPLATES - 1
        if (split == "holdout") == _held_out(scene):
            return scene
    raise RuntimeError("could not sample a scene")  # pragma: no cover - 1000 tries never all fail


PROBES: tuple[str, ...] = ("occluder", "offscreen", "crowd", "camera", "collide", "touch")


def probe_scene(kind: str, seed: int) -> Scene:
    """A scene built to probe one known weakness (deterministic in (kind, seed); never a training scene).

    "occluder": one or two objects move sideways behind a dark bar at the centre and come out the other side.
    "offscreen": a static object near the left edge; the camera pans right until it leaves the view and
    then back (4 s), so the object leaves the frame and returns. "crowd": three objects whose paths cross
    near the centre. "camera": a compound move, a pan that stops halfway or returns. "collide": a mover hits
    a resting object of equal mass (it stops, the other moves on) or two movers meet head on and bounce
    apart. "touch": a mover stops against a resting object, which changes colour at the touch.
    """
    if kind not in PROBES:
        raise ValueError(f"unknown probe {kind!r}; choose from {', '.join(PROBES)}")
    rng = np.random.default_rng([seed, 101 + PROBES.index(kind), 7919])
    pairs = [(c, s) for c in HUES for s in SHAPES]
    picks = [pairs[i] for i in rng.permutation(len(pairs))]
    template = int(rng.integers(N_TEMPLATES - 1))
    scene = Scene(objects=[], seed=seed, split=f"probe-{kind}", template=template)
    if kind == "occluder":
        scene.occluders = [0.5]
        rows = [0.3, 0.7] if rng.random() < 0.5 else [float(rng.uniform(0.3, 0.7))]
        for (color, shape), y in zip(picks, rows, strict=False):
            d = str(rng.choice(["left", "right"]))
            speed = str(rng.choice(["", "quickly"]))
            start = 0.5 - DIRECTIONS[d][0] * SPEEDS[speed] * 0.9  # behind the bar at t = 0.9 s
            scene.objects.append(Obj(shape, color, "small", start, y, Motion("move", d, speed)))
    elif kind == "offscreen":
        scene.duration = 4.0
        scene.camera = "pan-right-back"
        color, shape = picks[0]
        scene.objects.append(Obj(shape, color, "small", float(rng.uniform(0.11, 0.16)), float(rng.uniform(0.3, 0.7))))
    elif kind == "crowd":
        base = float(rng.uniform(0, 2 * math.pi))
        for k, (color, shape) in enumerate(picks[:3]):
            a = base + 2 * math.pi * k / 3
            d = min(DIRECTIONS, key=lambda n, a=a: DIRECTIONS[n][0] * math.cos(a) + DIRECTIONS[n][1] * math.sin(a))
            dx, dy = DIRECTIONS[d]
            off = 0.06 * (k - 1)  # paths cross near, not exactly at, the centre
            x, y = 0.5 - dx * 0.26 - dy * off, 0.5 - dy * 0.26 + dx * off
            scene.objects.append(Obj(shape, color, "small", x, y, Motion("move", d, ""), angle=0.2))
    elif kind == "camera":
        scene.camera = str(rng.choice(COMPOUND_CAMERA_MOVES))
        for (color, shape), x in zip(picks[:2], (0.3, 0.7), strict=False):
            scene.objects.append(Obj(shape, color, "small", x, float(rng.uniform(0.3, 0.7))))
    else:  # collide or touch: circles and squares, whose contact times are exact
        ca, sa = next(p for p in picks if p[1] != "triangle")
        cb, sb = next(p for p in picks if p[1] != "triangle" and p[0] != ca)  # two hues: two tracks
        d = str(rng.choice(["left", "right"]))
        sign, y = DIRECTIONS[d][0], float(rng.uniform(0.35, 0.65))
        head_on = kind == "collide" and rng.random() < 0.5
        scene.objects.append(Obj(sa, ca, "small", 0.5 - sign * 0.3, y, Motion("move", d, "")))
        back = Motion("move", "left" if d == "right" else "right", "") if head_on else Motion("static")
        scene.objects.append(Obj(sb, cb, "small", 0.5 + sign * (0.3 if head_on else 0.06), y, back))
        spare = [c for c in HUES if c not in (ca, cb)]
        interact(scene, kind, 0, 1, color=str(rng.choice(spare)) if kind == "touch" else "")
    return scene


# ---------------------------------------------------------------------------------------------------
# Captions: a grammar over the scene graph, at two levels
# ---------------------------------------------------------------------------------------------------

N_TEMPLATES = 4  # paraphrase families; the last is reserved for the holdout split

_MOVE_SHORT = ["moves {d}", "slides {d}", "goes {d}", "drifts {d}"]
_FALL_SHORT = ["falls and bounces", "drops and bounces", "falls to the floor and bounces", "bounces on the floor"]
_ROT_SHORT = ["spins {cw}", "rotates {cw}", "turns {cw}", "twirls {cw}"]
_STATIC_SHORT = ["", "stays still", "sits still", "does not move"]
_CAM_SHORT = {
    "pan-left": "camera pans left",
    "pan-right": "camera pans right",
    "pan-up": "camera pans up",
    "pan-down": "camera pans down",
    "zoom-in": "camera zooms in",
    "zoom-out": "camera zooms out",
    "pan-left-stop": "camera pans left, then stops",
    "pan-right-stop": "camera pans right, then stops",
    "pan-left-back": "camera pans left and back",
    "pan-right-back": "camera pans right and back",
}


def _dir_words(d: str) -> str:
    simple = {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}
    return simple.get(d) or "diagonally " + d.replace("-", " and ")


def _region(obj: Obj, scene: Scene) -> str:
    col = ["left", "center", "right"][min(2, int(3 * obj.x / scene.width))]
    row = ["top", "middle", "bottom"][min(2, int(3 * obj.y / scene.height))]
    if row == "middle" and col == "center":
        return "the center"
    if row == "middle":
        return f"the {col} side"
    return f"the {row} {col}" if col != "center" else f"the {row}"


def _noun(o: Obj, with_size: bool) -> str:
    return f"{o.size} {o.color} {o.shape}" if with_size else f"{o.color} {o.shape}"


def _motion_short(o: Obj, k: int) -> str:
    m = o.motion
    if m.kind == "move":
        speed = f" {m.speed}" if m.speed else ""
        return _MOVE_SHORT[k].format(d=_dir_words(m.direction)) + speed
    if m.kind == "fall":
        return _FALL_SHORT[k]
    if m.kind == "rotate":
        return _ROT_SHORT[k].format(cw="clockwise" if m.clockwise else "counterclockwise")
    return _STATIC_SHORT[k]


def _relation(a: Obj, b: Obj) -> str:
    dx, dy = b.x - a.x, b.y - a.y
    if abs(dx) >= abs(dy):
        return "left of" if dx > 0 else "right of"
    return "above" if dy > 0 else "below"


def _interaction(scene: Scene) -> str:
    """ "push", "head-on", "touch" or "" (no interaction): see `interact`."""
    if len(scene.objects) != 2 or scene.objects[1].after is None:
        return ""
    b = scene.objects[1]
    return "touch" if b.color_after else "head-on" if b.motion.kind == "move" else "push"


def _interaction_short(scene: Scene) -> str:
    a, b = scene.objects
    d = _dir_words(a.motion.direction)
    kind = _interaction(scene)
    if kind == "push":
        return f"a {_noun(a, False)} moves {d} and hits a {_noun(b, False)}, which then moves {d}"
    if kind == "head-on":
        return f"a {_noun(a, False)} and a {_noun(b, False)} move towards each other, collide and bounce apart"
    return f"a {_noun(a, False)} moves {d} and touches a {_noun(b, False)}, which turns {b.color_after}"


def _interaction_long(scene: Scene) -> str:
    a, b = scene.objects
    d = _dir_words(a.motion.direction)
    kind = _interaction(scene)
    start = f"A {_noun(a, True)} starts at {_region(a, scene)} and moves {d}"
    if kind == "push":
        text = (
            f"{start}. It hits a {_noun(b, True)} resting at {_region(b, scene)} and stops dead, and "
            f"the {b.color} {b.shape} moves on {d} at the same speed, as when equal masses collide."
        )
    elif kind == "head-on":
        text = (
            f"{start}, and a {_noun(b, True)} at {_region(b, scene)} moves towards it at the same "
            "speed. They collide and bounce apart, each going back the way it came."
        )
    else:
        text = (
            f"{start} until it touches a {_noun(b, True)} resting at {_region(b, scene)}, then stops. "
            f"At the moment they touch, the {b.color} {b.shape} turns {b.color_after}."
        )
    return f"{text} {_CAM_LONG[scene.camera]} The background is a grey blocky texture."


def short_caption(scene: Scene) -> str:
    """A prompt as a user would type it."""
    if _interaction(scene):
        return _interaction_short(scene)
    k = scene.template
    parts = []
    for i, o in enumerate(scene.objects):
        phrase = f"a {_noun(o, False)}"
        motion = _motion_short(o, k)
        if motion:
            phrase += f" {motion}"
        if i > 0:
            prev = scene.objects[i - 1]
            phrase += f", {_relation(o, prev)} the {prev.color} {prev.shape}" if k % 2 == 0 else ""
        parts.append(phrase)
    text = " and ".join(parts) if len(parts) < 3 else ", ".join(parts[:-1]) + " and " + parts[-1]
    if scene.camera != "static":
        text += f", {_CAM_SHORT[scene.camera]}"
    if scene.occluders:
        text += ", behind a dark bar" if k % 2 else ", with a dark pillar"
    return text


_OPEN = [
    "A {noun} starts at {where}",
    "There is a {noun} at {where}",
    "At {where} there is a {noun}",
    "We see a {noun} near {where}",
]
_MOVE_LONG = [
    "and moves {d}{s} in a straight line",
    "that slides {d}{s} at a steady pace",
    "which travels {d}{s} without stopping",
    "and glides {d}{s} across the frame",
]
_FALL_LONG = [
    "and falls under gravity, bouncing on the floor with each bounce lower than the last",
    "that drops to the floor and bounces, losing height with every bounce",
    "which falls down, hits the floor and bounces back up a little less each time",
    "and tumbles down to the floor, bouncing several times before it settles",
]
_ROT_LONG = [
    "and spins {cw} in place",
    "that rotates {cw} without moving",
    "which turns {cw} on the spot",
    "and twirls {cw} where it stands",
]
_STATIC_LONG = [
    "and stays still",
    "that does not move",
    "which rests in place for the whole clip",
    "and remains motionless",
]
_CAM_LONG = {
    "static": "The camera is static.",
    "pan-left": "The camera pans slowly to the left, so the scene slides to the right.",
    "pan-right": "The camera pans slowly to the right, so the scene slides to the left.",
    "pan-up": "The camera pans slowly upwards, so the scene slides down.",
    "pan-down": "The camera pans slowly downwards, so the scene slides up.",
    "zoom-in": "The camera zooms in slowly towards the center.",
    "zoom-out": "The camera zooms out slowly from the center.",
    "pan-left-stop": "The camera pans slowly to the left, then stops halfway through.",
    "pan-right-stop": "The camera pans slowly to the right, then stops halfway through.",
    "pan-left-back": "The camera pans slowly to the left, then back to where it started.",
    "pan-right-back": "The camera pans slowly to the right, then back to where it started.",
}


def long_caption(scene: Scene) -> str:
    """The detailed caption the model is trained on (the recaptioning idea)."""
    if _interaction(scene):
        return _interaction_long(scene)
    k = scene.template
    sentences = []
    for i, o in enumerate(scene.objects):
        s = _OPEN[k].format(noun=_noun(o, True), where=_region(o, scene)) + " "
        m = o.motion
        if m.kind == "move":
            s += _MOVE_LONG[k].format(d=_dir_words(m.direction), s=f" {m.speed}" if m.speed else "")
        elif m.kind == "fall":
            s += _FALL_LONG[k]
        elif m.kind == "rotate":
            s += _ROT_LONG[k].format(cw="clockwise" if m.clockwise else "counterclockwise")
        else:
            s += _STATIC_LONG[k]
        if i > 0:
            prev = scene.objects[i - 1]
            s += f"; it is {_relation(o, prev)} the {prev.color} {prev.shape}"
        sentences.append(s + ".")
    if scene.occluders:
        sentences.append("A dark vertical bar stands in front of the scene, and objects pass behind it.")
    if scene.floor:
        sentences.append("A dark floor runs along the bottom.")
    sentences.append(_CAM_LONG[scene.camera])
    sentences.append("The background is a grey blocky texture.")
    return " ".join(sentences)


# ---------------------------------------------------------------------------------------------------
# Specs: machine-checkable facts
# ---------------------------------------------------------------------------------------------------


def scene_spec(scene: Scene) -> dict:
    """The scene as JSON-able data: the scene graph, its facts to check, and ground-truth events."""
    facts: list[dict] = []
    events: list[dict] = []
    t = np.linspace(0, scene.duration, 200)
    kind = _interaction(scene)
    if kind:  # a pair that interacts: identities, and the interaction instead of one motion each
        tc = round(scene.objects[1].t_after, 4)
        facts += [{"check": "present", "object": i, "color": o.color, "shape": o.shape}
                  for i, o in enumerate(scene.objects)]  # fmt: skip
        events.append({"event": "contact", "a": 0, "b": 1, "t": tc})
        if kind == "touch":
            facts.append({"check": "cause", "object": 1, "by": 0, "color": scene.objects[1].color_after})
            events.append({"event": "color_change", "object": 1, "color": scene.objects[1].color_after, "t": tc})
        else:
            facts.append({"check": "collision", "a": 0, "b": 1})
    for i, o in enumerate([] if kind else scene.objects):
        facts.append({"check": "present", "object": i, "color": o.color, "shape": o.shape})
        m = o.motion
        if m.kind == "move":
            facts.append({"check": "direction", "object": i, "direction": m.direction})
        elif m.kind == "fall":
            facts.append({"check": "gravity", "object": i})
            _, bounces = fall_trajectory(o.y, o.reach, t, scene.floor_y)
            events += [{"event": "bounce", "object": i, "t": round(b, 4)} for b in bounces]
        elif m.kind == "rotate":
            facts.append({"check": "rotation", "object": i, "clockwise": m.clockwise})
        else:
            facts.append({"check": "static", "object": i})
        if i > 0:
            facts.append({"check": "relation", "a": i, "b": i - 1, "relation": _relation(o, scene.objects[i - 1])})
    if scene.camera != "static":
        facts.append({"check": "camera", "move": scene.camera})
    return {
        "version": 1,
        "scene": dataclasses.asdict(scene),
        "short": short_caption(scene),
        "long": long_caption(scene),
        "facts": facts,
        "events": events,
    }


def scene_from_dict(d: dict) -> Scene:
    """Inverse of dataclasses.asdict(scene)."""
    d = dict(d)
    d["objects"] = [
        Obj(**{**o, "motion": Motion(**o["motion"]), "after": Motion(**o["after"]) if o.get("after") else None})
        for o in d["objects"]
    ]
    return Scene(**d)


# ---------------------------------------------------------------------------------------------------
# Parsing prompts back into scenes (used by the prompt expander and by the benchmark on foreign videos)
# ---------------------------------------------------------------------------------------------------

_DIR_PATTERNS = [
    (r"\b(up|upward|upwards)[ -]?(and )?(to the )?left\b|\bup-left\b|\bupper left\b", "up-left"),
    (r"\b(up|upward|upwards)[ -]?(and )?(to the )?right\b|\bup-right\b|\bupper right\b", "up-right"),
    (r"\b(down|downward|downwards)[ -]?(and )?(to the )?left\b|\bdown-left\b|\blower left\b", "down-left"),
    (r"\b(down|downward|downwards)[ -]?(and )?(to the )?right\b|\bdown-right\b|\blower right\b", "down-right"),
    (r"\b(to the |towards the |toward the )?left(wards?)?\b", "left"),
    (r"\b(to the |towards the |toward the )?right(wards?)?\b", "right"),
    (r"\b(up|upwards?|rises|rising)\b", "up"),
    (r"\b(down|downwards?|sinks|sinking)\b", "down"),
]
_SHAPE_WORDS = {
    "circle": "circle",
    "ball": "circle",
    "disc": "circle",
    "square": "square",
    "box": "square",
    "triangle": "triangle",
}


def parse_prompt(
    prompt: str, aspect: float = 1.0, duration: float = 2.0, sizes: dict[tuple[str, str], str] | None = None
) -> Scene | None:
    """Read a prompt written in the world's vocabulary back into a scene with canonical positions.

    Returns None when no coloured shape is named. A noun named twice is one object (the second mention is
    a reference, as in "a red circle left of a blue square, the blue square spins"). Unnamed attributes get
    defaults (size "large" unless a size word is used, motion "static"); objects are laid out left to right
    in the order first named, then moved to satisfy "left of / right of / above / below". sizes maps
    (colour, shape) to the size an object named without a size word gets (multi-shot identity).
    """
    text = prompt.lower()
    noun_re = re.compile(
        r"\b(?:(small|large|big|little|tiny)\s+)?(" + "|".join(HUES) + r")\s+(" + "|".join(_SHAPE_WORDS) + r")s?\b"
    )
    matches = list(noun_re.finditer(text))
    if not matches:
        return None
    scene = Scene(objects=[], aspect=aspect, duration=duration)
    for move, phrase in _CAM_SHORT.items():
        if "camera" in text and phrase.split(" ", 1)[1] in text:
            scene.camera = move
    ids: dict[tuple[str, str], int] = {}
    refs: list[int] = []  # object index of each match
    for m in matches:
        key = (m.group(2), _SHAPE_WORDS[m.group(3)])
        if key not in ids:
            if m.group(1):
                size = "small" if m.group(1) in ("small", "little", "tiny") else "large"
            else:
                size = (sizes or {}).get(key, "large")
            ids[key] = len(scene.objects)
            scene.objects.append(Obj(key[1], key[0], size, 0.0, 0.0))
        refs.append(ids[key])
    relations: list[tuple[int, str, int]] = []
    for j, m in enumerate(matches):
        clause = text[m.end() : matches[j + 1].start() if j + 1 < len(matches) else len(text)]
        rel = re.search(r"\b(left of|right of|above|below|to the left of|to the right of)\b", clause)
        if rel and j + 1 < len(matches) and refs[j + 1] != refs[j]:
            relations.append((refs[j], rel.group(1).replace("to the ", ""), refs[j + 1]))
        motion_text = re.split(r"camera|,|;| while |\b(?:left of|right of|above|below)\b", clause)[0]
        motion = _parse_motion(motion_text)
        if motion is not None and scene.objects[refs[j]].motion.kind == "static":
            scene.objects[refs[j]].motion = motion
            scene.floor = scene.floor or motion.kind == "fall"
    _layout(scene, relations)
    if re.search(r"\b(bar|pillar|occluder|post)\b", text):
        scene.occluders = [scene.width / 2]
    return scene


def _parse_motion(text: str) -> Motion | None:
    if re.search(r"\b(does not|doesn't|do not|never) move|\b(still|motionless|static|at rest)\b", text):
        return Motion("static")
    if re.search(r"\b(fall|falls|falling|drop|drops|bounce|bounces|bouncing|tumbles)\b", text):
        return Motion("fall")
    if re.search(r"\b(spin|spins|spinning|rotat\w*|turns|twirl\w*)\b", text):
        return Motion("rotate", clockwise="counter" not in text and "anti" not in text)
    if re.search(r"\b(move|moves|moving|slide|slides|goes|drift\w*|travel\w*|glide\w*|rises|sinks)\b", text):
        direction = next((d for pat, d in _DIR_PATTERNS if re.search(pat, text)), "right")
        speed = "slowly" if "slow" in text else "quickly" if ("quick" in text or "fast" in text) else ""
        if speed and re.search(r"\bvery (slow|quick|fast)", text):
            speed = f"very {speed}"
        return Motion("move", direction=direction, speed=speed)
    return None


def _layout(scene: Scene, relations: list[tuple[int, str, int]]) -> None:
    """Canonical start positions: spread along x in the order named, then honour the relations."""
    n = len(scene.objects)
    order = list(range(n))  # order[slot] = object
    up = (scene.height - 1.0) / 2  # a portrait view's extra height, half above and half below
    ys = [0.5 + up] * n
    for a, rel, b in relations:
        sa, sb = order.index(a), order.index(b)
        if (rel == "left of" and sa > sb) or (rel == "right of" and sa < sb):
            order[sa], order[sb] = order[sb], order[sa]
        elif rel == "above":
            ys[a], ys[b] = 0.3 + up, 0.7 + up
        elif rel == "below":
            ys[a], ys[b] = 0.7 + up, 0.3 + up
    for slot, i in enumerate(order):
        o = scene.objects[i]
        o.x, o.y = scene.width * (slot + 0.5) / n, ys[i]
        m = o.motion
        if m.kind == "move":
            dx, dy = DIRECTIONS[m.direction]
            travel = ALL_SPEEDS[m.speed] * scene.duration
            if n == 1:
                o.x = scene.width / 2 - dx * travel / 2
            o.y = o.y - dy * travel / 2
        elif m.kind == "fall":
            o.y = 0.25 + 2 * up  # as far above the floor as in a square view
        lo = o.radius + 0.05
        o.x = float(np.clip(o.x, lo, scene.width - lo))
        o.y = float(np.clip(o.y, lo, (scene.floor_y if scene.floor else scene.height) - lo))
