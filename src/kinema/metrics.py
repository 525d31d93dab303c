"""Detectors and scores for the procedural world (numpy + scipy only, no learned weights).

Given a video as a (T, H, W, 3) uint8 array and the spec of the scene it should show
(`world.scene_spec(scene)`), `score` returns one number in [0, 1] per fact of the spec plus aggregates:

    frames = world.render(scene, 64, 64, fps=12)
    scores = score(frames, world.scene_spec(scene), fps=12)   # {"present:0": 1.0, ..., "joint": 1.0}
    summarize([scores, ...])

The pieces are usable on their own: `segment` (HSV segmentation of one frame into coloured blobs),
`classify_shape` / `fit_shape` (analysis by synthesis: re-render circle, square and triangle with
world._sdf, keep the best IoU; `fit_occluded_shape` for partly hidden blobs), `track` (per-colour tracks
over a video), `camera_motion` / `camera_zoom` (masked block matching on the background).
Checks test properties any valid video must have (signed direction, a fall with a bounce, signed
left/right, the sense of a spin and of a pan), never pixels against one particular render. Pixel
thresholds are set for 64x64 frames and scale with the frame's short side, the world's unit (world.py), so
objects and motions measure the same at every aspect. See docs/WORLD_BENCH.md, "Detectors".
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from kinema import world

# ---------------------------------------------------------------------------------------------------
# Thresholds (colour thresholds in [0, 1] units; pixel thresholds are for 64x64 frames and scale with the short side)
# ---------------------------------------------------------------------------------------------------

SAT_MIN = 0.45  # HSV saturation of an object pixel
VAL_MIN = 0.45  # HSV value of an object pixel
CHROMA_MIN = 0.3  # max - min: keeps grey background + sensor noise out (objects have ~0.8)
DARK_MAX = 0.17  # channel mean (3x3 smoothed) of an occluder pixel; the floor band is 0.24
MIN_AREA = 8  # pixels at 64x64; smaller blobs are dropped
SEARCH = 3  # block matching range, pixels
DIRECTION_MAX_ERR_DEG = 35.0
MIN_TRAVEL = 3.0  # px at H = 64: a mover must travel at least this far
STATIC_MAX = 2.0  # px at H = 64: a static object must stay within this radius
PAN_MIN = 3.0  # px at H = 64 of accumulated background shift for a pan
ZOOM_MIN = 0.1  # accumulated log-zoom for a zoom
SPIN_MIN = 0.5  # rad/s for a rotation
MIN_SHAPE_IOU = 0.7  # a blob whose best template fits worse than this casts no shape vote
SHAPE_TIE = 0.05  # mean IoU: hidden fits of shapes this close to the best cannot be told apart
MAX_BLOBS = 6  # per colour and frame, the largest kept (the world has at most 3 objects)
MIN_TRACK_FRAC = 0.1  # tracks present in fewer frames than this are specks: no shape fits, never matched

COLORS: tuple[str, ...] = tuple(world.HUES)
_HUE_RAD = np.deg2rad(np.array([world.HUES[c] for c in COLORS]))
_HUE_VEC = np.stack([np.cos(_HUE_RAD), np.sin(_HUE_RAD)])  # (2, n_colors)
_SYMMETRY = {"square": math.pi / 2, "triangle": 2 * math.pi / 3}  # rotational period of each shape
_FAMILIES: tuple[str, ...] = ("present", "direction", "gravity", "static", "rotation", "relation", "camera")
# checks the benchmark adds to specs (kinema.evaluate): smoothness, object permanence, order-blind relations
EXTRA_FAMILIES: tuple[str, ...] = (
    "moves", "smooth", "instances", "permanence", "return", "relation_blind", "collision", "cause", "acausal",
    "size",
)  # fmt: skip
# reported, but not facts of the spec (not part of "joint"): order-blind relations; "acausal" is 1 when an
# effect (a colour change) comes before its cause (the contact), the rate the seeds' bitten cookie shows
INFORMATIVE = frozenset({"relation_blind", "acausal"})
CONTACT_GAP = 1.1  # centroids closer than this many summed blob radii: the objects touch
EFFECT_LAG = 2  # frames: an effect must follow its contact within this many frames, and not come before it
ROUGHNESS_MAX = 0.6  # roughness minus coherence of a moving centroid (see _check_smooth)
MOVING_MIN = 0.3  # px per frame at H = 64: slower tracks are not tested for smoothness
REAPPEAR_MAX = 0.12  # fraction of the short side: re-emergence off its extrapolated (or former) place
# drawn area over the asked size's area: within this factor either way passes. The square root of the
# large/small area ratio, so an area passes only when it is nearer (in log) the asked size than the other
SIZE_TOL = world.SIZES["large"] / world.SIZES["small"]
_MOTION_FAMILIES = frozenset({"direction", "gravity", "static", "rotation"})
_CONN = np.zeros((3, 3, 3), dtype=bool)
_CONN[1] = True  # 8-connectivity within a frame, none across time


# ---------------------------------------------------------------------------------------------------
# Segmentation
# ---------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Blob:
    """One connected region of a single palette colour in one frame.

    centroid is (x, y) in pixels (pixel j has its centre at j); bbox is (x0, y0, x1, y1) with exclusive
    ends; mask is the boolean region inside the bbox. A blob that touches the frame edge, an occluder or
    another colour may be cut off, so it is not `fully_visible`; a `shared` blob (set by tracking) holds two
    objects of one colour that run into each other.
    """

    color: str
    area: int
    centroid: tuple[float, float]
    bbox: tuple[int, int, int, int]
    mask: np.ndarray
    touches_edge: bool = False
    near_occluder: bool = False
    near_other: bool = False
    shared: bool = False

    @property
    def fully_visible(self) -> bool:
        """True when nothing can be hiding part of the blob."""
        return not (self.touches_edge or self.near_occluder or self.near_other)

    @property
    def slices(self) -> tuple[slice, slice]:
        """(rows, columns) of the bbox, to index a frame."""
        x0, y0, x1, y1 = self.bbox
        return slice(y0, y1), slice(x0, x1)


@dataclass
class _Segmentation:
    blobs: list[list[Blob]]  # per frame
    foreground: np.ndarray  # (T, H, W) bool: kept blobs and occluders
    gray: np.ndarray  # (T, H, W) float32 luminance, 3x3 box-smoothed
    occluded: np.ndarray  # (T, H, W) bool: at or next to an occluder
    hue: np.ndarray  # (T, H, W) int8: colour index of kept blobs, -1 elsewhere


def _min_area(height: int, width: int) -> int:
    return max(3, round(MIN_AREA * min(height, width) ** 2 / 4096))


def _segment_video(frames: np.ndarray) -> _Segmentation:
    """Segment every frame of a (T, H, W, 3) uint8 video at once (vectorised over time)."""
    n, h, w, _ = frames.shape
    red, green, blue = frames[..., 0], frames[..., 1], frames[..., 2]
    mx = np.maximum(np.maximum(red, green), blue)
    chroma = mx - np.minimum(np.minimum(red, green), blue)
    obj = (chroma > round(CHROMA_MIN * 255)) & (mx > round(VAL_MIN * 255))
    obj &= chroma.astype(np.uint16) * 100 > mx.astype(np.uint16) * round(SAT_MIN * 100)
    gray = red.astype(np.float32)
    gray += green
    gray += blue
    gray *= np.float32(1 / 765)
    smooth = ndimage.uniform_filter(gray, size=(1, 3, 3), mode="nearest")
    occ = smooth < DARK_MAX
    occ_near = ndimage.maximum_filter(occ, size=(1, 7, 7), mode="constant")

    # nearest palette hue by the opponent-colour angle (equal to the HSV hue at multiples of 60 degrees)
    ti, yi, xi = np.nonzero(obj)
    px = frames[ti, yi, xi].astype(np.float32)
    hx = px[:, 0] - 0.5 * (px[:, 1] + px[:, 2])
    hy = np.float32(math.sqrt(3) / 2) * (px[:, 1] - px[:, 2])
    hue = np.argmax(hx[:, None] * _HUE_VEC[0] + hy[:, None] * _HUE_VEC[1], axis=1)
    hue_map = np.full((n, h, w), -1, dtype=np.int8)
    hue_map[ti, yi, xi] = hue

    labels = np.zeros((n, h, w), dtype=np.int32)
    label_color: list[int] = [-1]
    offset = 0
    hues = np.unique(hue)
    for k in hues:
        mk = hue_map == k
        lab, nk = ndimage.label(mk, structure=_CONN)
        labels[mk] = lab[mk] + offset
        label_color += [int(k)] * nk
        offset += nk
    n_lab = offset + 1
    area = np.bincount(labels.ravel(), minlength=n_lab)
    keep = area >= _min_area(h, w)
    keep[0] = False
    labels[~keep[labels]] = 0
    near_occ = np.zeros(n_lab, dtype=bool)
    near_occ[np.unique(labels[occ_near])] = True
    near_oth = np.zeros(n_lab, dtype=bool)
    kept_hue = np.where(labels > 0, np.asarray(label_color, dtype=np.int8)[labels], np.int8(-1))
    if len(hues) > 1:
        for k in hues:
            mk = kept_hue == k
            others = (kept_hue >= 0) & ~mk
            if mk.any() and others.any():
                near = ndimage.maximum_filter(others, size=(1, 5, 5), mode="constant") & mk
                near_oth[np.unique(labels[near])] = True
    near_occ[0] = near_oth[0] = False
    # centroids by weighted counts
    flat = labels.ravel()
    yy = np.broadcast_to(np.arange(h, dtype=np.float64)[None, :, None], labels.shape).ravel()
    xx = np.broadcast_to(np.arange(w, dtype=np.float64)[None, None, :], labels.shape).ravel()
    sx = np.bincount(flat, weights=xx, minlength=n_lab)
    sy = np.bincount(flat, weights=yy, minlength=n_lab)
    blobs: list[list[Blob]] = [[] for _ in range(n)]
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None or not keep[i]:
            continue
        t, rs, cs = sl
        y0, y1, x0, x1 = rs.start, rs.stop, cs.start, cs.stop
        a = int(area[i])
        blobs[t.start].append(
            Blob(
                color=COLORS[label_color[i]],
                area=a,
                centroid=(float(sx[i] / a), float(sy[i] / a)),
                bbox=(x0, y0, x1, y1),
                mask=labels[t.start, y0:y1, x0:x1] == i,
                touches_edge=x0 == 0 or y0 == 0 or x1 == w or y1 == h,
                near_occluder=bool(near_occ[i]),
                near_other=bool(near_oth[i]),
            )
        )
    return _Segmentation(blobs=blobs, foreground=(labels > 0) | occ, gray=smooth, occluded=occ_near, hue=kept_hue)


def segment(frame: np.ndarray) -> list[Blob]:
    """Blobs of one (H, W, 3) uint8 frame: saturated bright pixels, nearest palette hue, components."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
    return _segment_video(frame[None]).blobs[0]


# ---------------------------------------------------------------------------------------------------
# Shape by analysis by synthesis
# ---------------------------------------------------------------------------------------------------


@dataclass
class ShapeFit:
    """Best re-rendered shape for a blob: its IoU, every shape's IoU and the fitted orientations."""

    shape: str
    iou: float
    ious: dict[str, float]
    angles: dict[str, float]  # radians, world._sdf's convention (positive = clockwise on screen)


_ANGLE_STEPS = np.array([-0.12, 0.0, 0.12])  # radians around the moment estimate


def fit_shape(blob: Blob) -> ShapeFit:
    """Re-render circle, square and triangle at the blob's centroid, area and orientation; keep the best IoU.

    The radius of each candidate comes from the blob's area (world's conventions: square half-size
    0.82 r, triangle circumradius 1.2 r); orientations from the angular moments of the mask (4-fold for
    the square, 3-fold for the triangle), each scanned a little either side.
    """
    mask = blob.mask
    x0, y0, _, _ = blob.bbox
    cx, cy = blob.centroid
    pad = 2
    m = np.pad(mask, pad)
    ys = np.arange(y0 - pad, y0 - pad + m.shape[0], dtype=np.float64) - cy
    xs = np.arange(x0 - pad, x0 - pad + m.shape[1], dtype=np.float64) - cx
    gx, gy = np.meshgrid(xs, ys)
    z = gx[m] + 1j * gy[m]
    z2 = z * z
    a4 = (np.angle(np.sum(z2 * z2)) - math.pi) / 4
    a3 = (np.angle(np.sum(z2 * z)) - math.pi / 2) / 3
    area = float(mask.sum())
    sq_ang = (a4 + _ANGLE_STEPS)[:, None, None]
    tr_ang = (a3 + _ANGLE_STEPS)[:, None, None]
    r_circle = math.sqrt(area / math.pi)
    r_square = math.sqrt(area) / 1.64
    r_tri = math.sqrt(area / (0.75 * math.sqrt(3) * 1.44))
    big_r = 1.2 * r_tri
    # the world's triangle has its centroid R/4 "above" the SDF origin (in the rotated frame)
    ox = np.sin(tr_ang) * big_r / 4
    oy = -np.cos(tr_ang) * big_r / 4
    d_circle = world._sdf("circle", gx, gy, r_circle, np.zeros(()))[None]
    d_square = world._sdf("square", gx[None], gy[None], r_square, sq_ang)
    d_tri = world._sdf("triangle", gx[None] + ox, gy[None] + oy, r_tri, tr_ang)
    tmpl = np.concatenate([d_circle, d_square, d_tri]) < 0
    inter = (tmpl & m).sum(axis=(1, 2))
    union = tmpl.sum(axis=(1, 2)) + area - inter
    iou = inter / np.maximum(union, 1)
    best_sq = 1 + int(np.argmax(iou[1:4]))
    best_tr = 4 + int(np.argmax(iou[4:7]))
    ious = {"circle": float(iou[0]), "square": float(iou[best_sq]), "triangle": float(iou[best_tr])}
    angles = {
        "square": float(_refine_angle(a4, iou[1:4])),
        "triangle": float(_refine_angle(a3, iou[4:7])),
    }
    shape = max(ious, key=ious.__getitem__)
    return ShapeFit(shape=shape, iou=ious[shape], ious=ious, angles=angles)


def _refine_angle(a0: float, iou3: np.ndarray) -> float:
    """Parabola through the IoUs at a0 - step, a0, a0 + step; falls back to the best of the three."""
    lo, mid, hi = (float(v) for v in iou3)
    step = float(_ANGLE_STEPS[2])
    den = lo - 2 * mid + hi
    if mid >= lo and mid >= hi and den < 0:
        return a0 + step * float(np.clip(0.5 * (lo - hi) / den, -1, 1))
    return a0 + step * (int(np.argmax(iou3)) - 1)


def classify_shape(blob: Blob) -> str:
    """Return "circle", "square" or "triangle": the re-rendered shape with the best IoU against the blob."""
    return fit_shape(blob).shape


def _unknown(seg: _Segmentation, t: int, color: str) -> np.ndarray:
    """(H, W) pixels of frame t whose content is hidden from an object of this colour: occluders and other
    colours' blobs, each with a small margin."""
    others = (seg.hue[t] >= 0) & (seg.hue[t] != COLORS.index(color))
    return seg.occluded[t] | ndimage.binary_dilation(others, iterations=2)


# hidden-part hypotheses: (shift of the centre towards the hidden side, in visible radii; radius factor).
# The more is hidden, the further the centre and the larger the object, so only pairs near that diagonal;
# and no shift at all, where the hidden part is the middle of the object (seen on both sides of a bar).
_HIDDEN = np.array(
    [(0.0, 1.0), (0.3, 1.0), (0.0, 1.25), (0.3, 1.25), (0.6, 1.25), (0.0, 1.5), (0.3, 1.5), (0.6, 1.5),
     (0.9, 1.5), (0.0, 1.8), (0.6, 1.8), (0.9, 1.8)]
)  # fmt: skip


def fit_occluded_shape(blob: Blob, unknown: np.ndarray) -> ShapeFit:
    """Analysis by synthesis for a partly hidden blob: pixels in `unknown` (H, W) (occluders, other objects;
    the outside of the frame is unknown too) count neither for nor against a template; the template's
    centre is searched towards the hidden side and its radius upwards, all orientations are scanned."""
    h, w = unknown.shape
    x0, y0, x1, y1 = blob.bbox
    cx, cy = blob.centroid
    vis_r = 0.5 * max(x1 - x0, y1 - y0)
    area = float(blob.mask.sum())
    radii = {
        "circle": math.sqrt(area / math.pi),
        "square": math.sqrt(area) / 1.64,
        "triangle": math.sqrt(area / (0.75 * math.sqrt(3) * 1.44)),
    }
    # the hidden part is at most the unknown pixels around the blob: that bounds the radius factor
    sy0, sy1 = max(0, math.floor(cy - 2 * vis_r - 2)), min(h, math.ceil(cy + 2 * vis_r + 3))
    sx0, sx1 = max(0, math.floor(cx - 2 * vis_r - 2)), min(w, math.ceil(cx + 2 * vis_r + 3))
    n_unknown = int(unknown[sy0:sy1, sx0:sx1].sum()) + (2 * (2 * vis_r + 2)) ** 2 - (sy1 - sy0) * (sx1 - sx0)
    hyp = _HIDDEN[_HIDDEN[:, 1] <= math.sqrt((area + max(n_unknown, 0)) / area) + 0.1]
    # the crop reaches as far as any hypothesis: the centroid moved, plus the largest circumradius
    big = max(radii["circle"], 0.82 * math.sqrt(2) * radii["square"], 1.5 * radii["triangle"])
    reach = hyp[:, 0].max() * vis_r + hyp[:, 1].max() * big + 1.5
    ys = np.arange(min(y0, math.floor(cy - reach)), max(y1, math.ceil(cy + reach) + 1))
    xs = np.arange(min(x0, math.floor(cx - reach)), max(x1, math.ceil(cx + reach) + 1))
    inside = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]
    unk = np.ones((len(ys), len(xs)), dtype=bool)
    unk[inside] = unknown[np.clip(ys, 0, h - 1)][:, np.clip(xs, 0, w - 1)][inside]
    m = np.zeros_like(unk)
    m[y0 - ys[0] : y1 - ys[0], x0 - xs[0] : x1 - xs[0]] = blob.mask
    gx, gy = np.meshgrid(xs - cx, ys - cy)
    # direction of the hidden side: from the blob to the unknown pixels near it
    near = unk & (np.hypot(gx, gy) < 2 * vis_r + 2)
    u = np.array([gx[near].mean(), gy[near].mean()]) if near.any() else np.zeros(2)
    u = u / max(float(np.hypot(*u)), 1e-9) if np.hypot(*u) > 0.5 else np.zeros(2)
    care = ~unk | m  # only visible pixels can speak for or against a template
    if area >= 200:  # large blobs: every other pixel in each direction is plenty, and 4x cheaper
        care[1::2] = False
        care[:, 1::2] = False
    px, py, mm = gx[care], gy[care], m[care]

    def iou_of(shape: str, sh: np.ndarray, rf: np.ndarray, ang: np.ndarray) -> np.ndarray:
        """IoU on the cared-for pixels of templates (k,) with centre shifts sh, radius factors rf, angles ang."""
        sh, r, ang = sh[:, None], radii[shape] * rf[:, None], ang[:, None]
        ox, oy = sh * vis_r * u[0], sh * vis_r * u[1]  # template centroid relative to the blob's
        if shape == "triangle":
            ox, oy = ox - np.sin(ang) * 1.2 * r / 4, oy + np.cos(ang) * 1.2 * r / 4
        tmpl = world._sdf(shape, px[None] - ox, py[None] - oy, r, ang) < 0
        inter = (tmpl & mm).sum(axis=1)
        return inter / np.maximum((tmpl | mm).sum(axis=1), 1)

    ious: dict[str, float] = {}
    angles: dict[str, float] = {}
    for shape in world.SHAPES:
        n_ang = {"circle": 1, "square": 6, "triangle": 8}[shape]
        period = _SYMMETRY.get(shape, 2 * math.pi)
        step = period / n_ang
        ang = np.repeat(np.arange(n_ang) * step, len(hyp))
        sh, rf = np.tile(hyp[:, 0], n_ang), np.tile(hyp[:, 1], n_ang)
        iou = iou_of(shape, sh, rf, ang)
        best = int(np.argmax(iou))
        # refine around the best hypothesis: the grid's steps (0.3 visible radii, 0.25-0.3 in radius, 15
        # degrees) cost a true template up to ~0.1 IoU, as much as separates the shapes of a half-hidden blob
        # (twice, the second time at half the step)
        b_sh, b_rf, b_ang, b_iou = sh[best], rf[best], ang[best], float(iou[best])
        for scale in (1.0, 0.5):
            d_sh, d_rf, d_ang = (g.ravel() for g in np.meshgrid([-0.15, 0.0, 0.15], [-0.06, 0.0, 0.06], [-1, 0, 1]))
            sh2 = np.maximum(b_sh + scale * d_sh, 0.0)
            rf2 = b_rf * (1 + scale * d_rf)
            ang2 = b_ang + scale * d_ang * (step / 3 if n_ang > 1 else 0.0)
            iou2 = iou_of(shape, sh2, rf2, ang2)
            k = int(np.argmax(iou2))
            if iou2[k] > b_iou:
                b_sh, b_rf, b_ang, b_iou = sh2[k], rf2[k], ang2[k], float(iou2[k])
        ious[shape] = b_iou
        angles[shape] = float(b_ang)
    shape = max(ious, key=ious.__getitem__)
    return ShapeFit(shape=shape, iou=ious[shape], ious=ious, angles=angles)


# ---------------------------------------------------------------------------------------------------
# Tracking
# ---------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Track:
    """One object followed over a video (identity = colour; a repeated colour gets keys "red#1", ...).

    Arrays have one row per frame: `present` and `area` always; `position` (x, y) where present
    (it can be biased by occlusion); `centroid` only where the blob is fully visible, i.e. not cut by the
    frame edge or an occluder, and either clear of other colours or on top of them (its template fits with
    IoU >= 0.9) (NaN otherwise); `shapes` a vote per such frame ("" otherwise; a track that is never fully
    visible votes with its least hidden blobs, fitted with the hidden pixels as unknown); `angle` the
    fitted orientation of the majority shape where fully visible (NaN otherwise); `bottom` the lowest row
    of the blob (NaN where absent). Tracks present in fewer than MIN_TRACK_FRAC of the frames are specks:
    they get no shape fits (and no centroids). `alike`: for a track never fully visible whose visible
    pixels fit several shapes equally well (within SHAPE_TIE), those shapes (and no votes): any of them
    passes `is_shape`.
    """

    color: str
    blobs: list[Blob | None]
    present: np.ndarray
    area: np.ndarray
    position: np.ndarray
    centroid: np.ndarray
    bottom: np.ndarray
    shapes: list[str]
    fits: list[ShapeFit | None] = field(repr=False)
    alike: tuple[str, ...] = ()
    angle: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        shape = self.shape
        self.angle = np.array([f.angles[shape] if f is not None and shape in f.angles else np.nan for f in self.fits])

    def votes(self) -> dict[str, int]:
        """Shape votes over the fully visible frames."""
        out = dict.fromkeys(world.SHAPES, 0)
        for s in self.shapes:
            if s:
                out[s] = out.get(s, 0) + 1
        return out

    @property
    def shape(self) -> str:
        """Majority shape over the fully visible frames ("" when never fully visible)."""
        v = self.votes()
        best = max(v, key=v.__getitem__)
        return best if v[best] > 0 else ""

    def is_shape(self, shape: str) -> bool:
        """The majority shape is this one, or, with no votes, the visible pixels cannot rule it out."""
        return self.shape == shape or (not self.shape and shape in self.alike)

    @property
    def n_present(self) -> int:
        """Frames in which the track is present."""
        return int(self.present.sum())


def _join(g: list[Blob], **flags: bool) -> Blob:
    """One blob from pieces of one object (same colour): masks and areas summed, flags or-ed."""
    x0, y0 = min(p.bbox[0] for p in g), min(p.bbox[1] for p in g)
    x1, y1 = max(p.bbox[2] for p in g), max(p.bbox[3] for p in g)
    mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for p in g:
        mask[p.bbox[1] - y0 : p.bbox[3] - y0, p.bbox[0] - x0 : p.bbox[2] - x0] |= p.mask
    area = sum(p.area for p in g)
    cx = sum(p.centroid[0] * p.area for p in g) / area
    cy = sum(p.centroid[1] * p.area for p in g) / area
    return Blob(
        color=g[0].color,
        area=area,
        centroid=(cx, cy),
        bbox=(x0, y0, x1, y1),
        mask=mask,
        touches_edge=any(p.touches_edge for p in g),
        near_occluder=flags.get("near_occluder", any(p.near_occluder for p in g)),
        near_other=flags.get("near_other", any(p.near_other for p in g)),
    )


def _bridged(a: Blob, b: Blob, hidden: np.ndarray, max_gap: float) -> bool:
    """The nearest pixels of two blobs are at most max_gap apart and the straight line between them runs
    over hidden pixels only (H, W bool: another colour on top, an occluder) or the blobs themselves."""
    ya, xa = np.nonzero(a.mask)
    yb, xb = np.nonzero(b.mask)
    ya, xa, yb, xb = ya + a.bbox[1], xa + a.bbox[0], yb + b.bbox[1], xb + b.bbox[0]
    d = np.hypot(xa[:, None] - xb[None], ya[:, None] - yb[None])
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    if d[i, j] > max_gap:
        return False
    s = np.linspace(0, 1, math.ceil(d[i, j]) * 2 + 1)[1:-1]
    ys = np.rint(ya[i] + s * (yb[j] - ya[i])).astype(int)
    xs = np.rint(xa[i] + s * (xb[j] - xa[i])).astype(int)
    return bool(hidden[ys, xs].all())


def _merge(blobs: list[Blob], occluded: np.ndarray, covered: np.ndarray | None = None) -> list[Blob]:
    """Join pieces of one object cut in two: by an occluder (same colour, both next to the occluder, side
    by side with overlapping rows and mostly occluder between them), or by an object of another colour on
    top (`covered`, H x W: other colours' pixels; both pieces next to it, at most 0.12 of the short side apart,
    only that object or an occluder between their nearest pixels)."""
    parts = [b for b in blobs if b.near_occluder]
    out = [b for b in blobs if not b.near_occluder]
    if len(parts) >= 2:
        parts.sort(key=lambda b: b.bbox[0])
        groups: list[list[Blob]] = [[parts[0]]]
        for b in parts[1:]:
            for g in groups:  # any group, not only the last: another object may lie between two pieces in x
                gx1 = max(p.bbox[2] for p in g)
                gy0, gy1 = min(p.bbox[1] for p in g), max(p.bbox[3] for p in g)
                oy0, oy1 = max(gy0, b.bbox[1]), min(gy1, b.bbox[3])
                gap = occluded[oy0:oy1, gx1 : b.bbox[0]]
                if oy1 - oy0 > 0.5 * min(gy1 - gy0, b.bbox[3] - b.bbox[1]) and gap.size > 0 and gap.mean() > 0.5:
                    g.append(b)
                    break
            else:
                groups.append([b])
        out += [g[0] if len(g) == 1 else _join(g, near_occluder=True) for g in groups]
    else:
        out += parts
    if covered is None or sum(b.near_other for b in out) < 2:
        return out
    hidden = occluded | ndimage.binary_dilation(covered, iterations=1)
    max_gap = 0.12 * min(occluded.shape)
    joined = True
    while joined:  # join pairs until none is left (a piece may be cut in three)
        joined = False
        cut = [b for b in out if b.near_other]
        for k, a in enumerate(cut):
            b = next((b for b in cut[k + 1 :] if _touching(a.bbox, b.bbox, math.ceil(max_gap))
                      and _bridged(a, b, hidden, max_gap)), None)  # fmt: skip
            if b is not None:
                out = [p for p in out if p is not a and p is not b] + [_join([a, b], near_other=True)]
                joined = True
                break
    return out


@dataclass
class _Linked:
    blobs: dict[int, Blob]
    pos: tuple[float, float]
    vel: tuple[float, float] = (0.0, 0.0)
    t: int = 0
    area: float = 0.0
    clean: bool = True  # the last observation was not a merge
    partner: int = -1  # while merged: the track it shares a blob with
    shared: tuple[int, int, int, int] = (0, 0, 0, 0)  # bbox of the last blob it shared


def _touching(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int = 2) -> bool:
    """Two bboxes (x0, y0, x1, y1) overlap once grown by margin pixels."""
    return a[0] - margin < b[2] and b[0] - margin < a[2] and a[1] - margin < b[3] and b[1] - margin < a[3]


def _link(per_frame: list[list[Blob]], max_jump: float) -> list[dict[int, Blob]]:
    """Associate one colour's blobs over time (Hungarian on distance to a constant-velocity prediction).

    When two tracks run into one blob (same-colour objects crossing, or one falling past the other), both
    keep it as present but not fully visible (`shared`) for as long as the blob stays whole, whatever
    their predictions do meanwhile (a fall can bounce inside it); the first new blob that comes out of it
    goes to the track that was hidden in it.
    """
    tracks: list[_Linked] = []
    for t, blobs in enumerate(per_frame):
        if not blobs:
            continue
        preds = [(tr.pos[0] + tr.vel[0] * (t - tr.t), tr.pos[1] + tr.vel[1] * (t - tr.t)) for tr in tracks]
        match: dict[int, int] = {}  # track -> blob
        if tracks:
            cost = np.array([[math.dist(p, b.centroid) for b in blobs] for p in preds])
            # a pair further apart than max_jump costs what leaving both unmatched does: such pairs are
            # dropped below, so they must not buy a cheaper total (it swaps objects coming out of a merge)
            rows, cols = linear_sum_assignment(np.minimum(cost, max_jump))
            match = {int(i): int(j) for i, j in zip(rows, cols, strict=True) if cost[i, j] <= max_jump}
        owner = {j: i for i, j in match.items()}
        free = [j for j in range(len(blobs)) if j not in owner]
        merged: dict[int, int] = {}
        for i, tr in enumerate(tracks):
            if i in match or t - tr.t > 3:
                continue
            if tr.partner >= 0:
                # coming out of the blob it shared: the nearest new blob next to that blob
                out = [j for j in free if _touching(blobs[j].bbox, tr.shared)]
                if out:
                    j = min(out, key=lambda j: math.dist(preds[i], blobs[j].centroid))
                    match[i] = j
                    free.remove(j)
                    continue
                if tr.partner in match and t - tr.t == 1:  # still inside its partner's blob
                    merged[i] = match[tr.partner]
                    continue
            for j, b in enumerate(blobs):
                x0, y0, x1, y1 = b.bbox
                px, py = preds[i]
                if x0 - 2 <= px <= x1 + 1 and y0 - 2 <= py <= y1 + 1 and j in owner:
                    merged[i] = j
                    tr.partner, tracks[owner[j]].partner = owner[j], i
        merged_blobs = set(merged.values())
        for i, j in list(match.items()) + list(merged.items()):
            tr, b = tracks[i], blobs[j]
            if j in merged_blobs:
                tr.blobs[t] = dataclasses.replace(b, near_other=True, shared=True)
                tr.pos, tr.t, tr.clean, tr.shared = preds[i], t, False, b.bbox
                continue
            if tr.clean and t > tr.t:
                tr.vel = ((b.centroid[0] - tr.pos[0]) / (t - tr.t), (b.centroid[1] - tr.pos[1]) / (t - tr.t))
            tr.blobs[t] = b
            tr.pos, tr.t, tr.area, tr.clean, tr.partner = b.centroid, t, b.area, True, -1
        used = set(match.values()) | merged_blobs
        for j, b in enumerate(blobs):
            if j not in used:
                tracks.append(_Linked(blobs={t: b}, pos=b.centroid, t=t, area=b.area))
    return [tr.blobs for tr in tracks]


def _compact(b: Blob, occluded: np.ndarray) -> bool:
    """Could be (part of) one of the world's objects at about zoom 1: at most 0.3 of the frame across (a
    large triangle is 0.31), and filling a fair part of its bbox with its own or occluded pixels (H x W; two
    pieces joined across a bar have the bar between them). Keeps the costly fits of hidden blobs few and
    small."""
    x0, y0, x1, y1 = b.bbox
    filled = b.area + int(occluded[y0:y1, x0:x1].sum()) if b.near_occluder else b.area
    return max(x1 - x0, y1 - y0) <= 0.3 * min(occluded.shape) and filled >= 0.3 * (x1 - x0) * (y1 - y0)


def _fit_hidden(seg: _Segmentation, t: int, b: Blob) -> ShapeFit:
    """Shape of a blob that may be partly hidden: as it is when a template fits it well (only touching the
    occluder or another object), else by the search over hidden parts."""
    fit = fit_shape(b)
    return fit if fit.iou >= 0.9 else fit_occluded_shape(b, _unknown(seg, t, b.color))


def _spread_pick(cands: list[tuple[int, Blob]], k: int) -> list[tuple[int, Blob]]:
    """The largest blob of each of k stretches of time, skipping repeats of an identical view."""
    picked: list[tuple[int, Blob]] = []
    seen: set[tuple[int, int, int]] = set()
    for part in np.array_split(np.arange(len(cands)), k):
        if len(part) == 0:
            continue
        t, b = max((cands[i] for i in part), key=lambda tb: tb[1].area)
        key = (b.area, b.bbox[2] - b.bbox[0], b.bbox[3] - b.bbox[1])
        if key not in seen:
            seen.add(key)
            picked.append((t, b))
    return picked


def _as_large(b: Blob, seq: list[Blob | None], clear: np.ndarray, t: int) -> bool:
    """At least 0.85 of the area of the track's blob in the nearest frame (in `clear`) where it is clear of
    everything; True when there is no such frame."""
    if len(clear) == 0:
        return True
    ref = seq[int(clear[np.argmin(np.abs(clear - t))])]
    return ref is None or b.area >= 0.85 * ref.area


def _tracks(seg: _Segmentation, colors: Sequence[str] = COLORS) -> dict[str, Track]:
    blobs = seg.blobs
    n, height, width = seg.hue.shape
    min_frames = max(1, math.ceil(MIN_TRACK_FRAC * n))
    out: dict[str, Track] = {}
    for color in COLORS:
        if color not in colors:
            continue
        code = COLORS.index(color)
        per_frame = [
            _merge([b for b in fb if b.color == color], seg.occluded[t], (seg.hue[t] >= 0) & (seg.hue[t] != code))
            for t, fb in enumerate(blobs)
        ]
        per_frame = [sorted(p, key=lambda b: -b.area)[:MAX_BLOBS] for p in per_frame]
        if not any(per_frame):
            continue
        if max(len(p) for p in per_frame) == 1:
            linked = [{t: p[0] for t, p in enumerate(per_frame) if p}]
        else:
            linked = _link(per_frame, max_jump=0.3 * min(height, width))
            linked.sort(key=lambda d: -sum(b.area for b in d.values()))
        for k, d in enumerate(linked):
            seq = [d.get(t) for t in range(n)]
            seen = len(d) >= min_frames  # shorter tracks (specks, noise) get no shape fits
            # a blob next to another colour is still whole if it is on top: it fits its template well, and
            # it is about as large as in the nearest frame where it is clear of everything (a sliver left
            # by an object passing over it can fit a small template just as well)
            fits = [
                fit_shape(b) if seen and b is not None and not (b.touches_edge or b.near_occluder) else None
                for b in seq
            ]
            clear = np.flatnonzero([b is not None and b.fully_visible for b in seq])
            fits = [
                f
                if f is not None
                and b is not None
                and (b.fully_visible or (f.iou >= 0.9 and _as_large(b, seq, clear, t)))
                else None
                for t, (f, b) in enumerate(zip(fits, seq, strict=True))
            ]
            visible = np.array([f is not None for f in fits])
            shapes = [f.shape if f is not None and f.iou >= MIN_SHAPE_IOU else "" for f in fits]
            alike: tuple[str, ...] = ()
            if k < 2 and len(d) >= 0.5 * n and not visible.any():
                # never fully visible but there most of the time (e.g. behind an occluder): vote with the
                # least cut blobs (not at the frame edge if possible)
                cands = [(t, b) for t, b in enumerate(seq) if b is not None and _compact(b, seg.occluded[t])]
                cands = [(t, b) for t, b in cands if not b.touches_edge] or cands
                picked = _spread_pick(cands, 3)
                fitted = [_fit_hidden(seg, t, b) for t, b in picked]
                if fitted:  # one decision from the summed IoUs, a vote in each frame used
                    total = {s: sum(f.ious[s] for f in fitted) for s in world.SHAPES}
                    best = max(total, key=total.__getitem__)
                    alike = tuple(s for s in world.SHAPES if total[s] >= total[best] - SHAPE_TIE * len(fitted))
                    if total[best] < MIN_SHAPE_IOU * len(fitted):
                        alike = ()
                    elif len(alike) == 1:
                        for t, _ in picked:
                            shapes[t] = best
            nan2 = np.full(2, np.nan)
            out[color if k == 0 else f"{color}#{k}"] = Track(
                color=color,
                blobs=seq,
                present=np.array([b is not None for b in seq]),
                area=np.array([b.area if b is not None else 0.0 for b in seq], dtype=np.float64),
                position=np.array([b.centroid if b is not None else nan2 for b in seq], dtype=np.float64),
                centroid=np.array(
                    [b.centroid if b is not None and v else nan2 for b, v in zip(seq, visible, strict=True)],
                    dtype=np.float64,
                ),
                bottom=np.array([b.bbox[3] - 1 if b is not None else np.nan for b in seq], dtype=np.float64),
                shapes=shapes,
                fits=fits,
                alike=alike if len(alike) > 1 else (),
            )
    return out


def track(frames: np.ndarray) -> dict[str, Track]:
    """Per-colour tracks of a (T, H, W, 3) uint8 video: presence, area, shape votes, centroids."""
    frames = _check_frames(frames)
    return _tracks(_segment_video(frames))


def object_areas(frames: np.ndarray) -> list[float]:
    """Per tracked object of a (T, H, W, 3) uint8 video, its median area in pixels over the frames it is
    present in: the drawn size, to set beside the ground truth's."""
    return [float(np.median(t.area[t.present])) for t in track(frames).values() if t.present.any()]


# ---------------------------------------------------------------------------------------------------
# Camera motion
# ---------------------------------------------------------------------------------------------------


@dataclass
class CameraMotion:
    """Per frame pair: content shift (dx, dy) in pixels (positive x = content moves right, i.e. the camera
    pans left) and zoom factor about the frame centre (> 1 = content grows, i.e. the camera zooms in)."""

    shift: np.ndarray  # (T-1, 2)
    scale: np.ndarray  # (T-1,)


def _parabola(em: np.ndarray, e0: np.ndarray, ep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel offset of a minimum from three samples, and the curvature (0 where not a minimum)."""
    den = em - 2 * e0 + ep
    ok = den > 1e-12
    off = np.where(ok, 0.5 * (em - ep) / np.where(ok, den, 1), 0.0)
    return np.clip(off, -0.5, 0.5), np.where(ok, den, 0.0)


def _refine(err: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> tuple[np.ndarray, ...]:
    """Parabola refinement around integer minima (iy, ix) of err (..., ny, nx): offsets and curvatures."""
    ny, nx = err.shape[-2:]
    flat = err.reshape(*err.shape[:-2], ny * nx)
    iyc, ixc = np.clip(iy, 1, ny - 2), np.clip(ix, 1, nx - 2)

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return np.take_along_axis(flat, (yy * nx + xx)[..., None], axis=-1)[..., 0]

    e0 = at(iy, ix)
    offx, curx = _parabola(at(iy, ixc - 1), e0, at(iy, ixc + 1))
    offy, cury = _parabola(at(iyc - 1, ix), e0, at(iyc + 1, ix))
    edge_x = (ix == 0) | (ix == nx - 1)
    edge_y = (iy == 0) | (iy == ny - 1)
    return (
        np.where(edge_x, 0.0, offx),
        np.where(edge_y, 0.0, offy),
        np.where(edge_x, 0.0, curx),
        np.where(edge_y, 0.0, cury),
    )


def _camera(smooth: np.ndarray, foreground: np.ndarray) -> CameraMotion:
    """Masked block matching between consecutive (3x3-smoothed) frames.

    For every integer shift within +-SEARCH px, the squared difference over the background is summed per
    block (nb x nb blocks, each weighted by a tapered window); the whole-frame sum gives the shift (argmin,
    then a parabola fit), the blocks (+-2 px around it, parabola) give a robust least-squares fit of
    shift + zoom. Each pixel pair is weighted by the mean of the window at both ends, so that the error
    curve of an unchanged background is exactly symmetric and sub-pixel fits are not biased by it.
    """
    n, h, w = smooth.shape
    if n < 2 or h < 4 * SEARCH + 8 or w < 4 * SEARCH + 8:
        return CameraMotion(np.zeros((max(n - 1, 0), 2)), np.ones(max(n - 1, 0)))
    r = SEARCH
    m = r + 1
    nb = 4 if min(h, w) - 2 * m >= 40 else 3
    bh, bw = (h - 2 * m) // nb, (w - 2 * m) // nb
    ch, cw = bh * nb, bw * nb
    bad = ndimage.maximum_filter(foreground, size=(1, 2 * m + 1, 2 * m + 1), mode="constant")
    win = np.zeros((h, w), dtype=np.float32)
    win[m : m + ch, m : m + cw] = np.tile(np.outer(np.hanning(bh + 2)[1:-1], np.hanning(bw + 2)[1:-1]), (nb, nb))
    wgt = (~bad[:-1] & ~bad[1:]) * win  # (n-1, h, w)
    a = smooth[:-1, m : m + ch, m : m + cw]
    wa = wgt[:, m : m + ch, m : m + cw]
    ns = 2 * r + 1
    blocks = np.empty((n - 1, nb, nb, ns, ns))
    for iy in range(ns):
        for ix in range(ns):
            sl = (slice(None), slice(m + iy - r, m + iy - r + ch), slice(m + ix - r, m + ix - r + cw))
            d = smooth[1:][sl] - a
            d *= d
            d *= wa + wgt[sl]
            blocks[..., iy, ix] = d.reshape(n - 1, nb, bh, nb * bw).sum(2).reshape(n - 1, nb, nb, bw).sum(3)
    glob = blocks.sum(axis=(1, 2))
    k = np.argmin(glob.reshape(n - 1, -1), axis=1)
    giy, gix = np.divmod(k, ns)
    offx, offy, _, _ = _refine(glob, giy, gix)
    shift = np.stack([gix - r + offx, giy - r + offy], axis=-1).astype(np.float64)

    # per block, the minimum within +-2 px of the global integer shift
    lw = 2
    yy, xx = np.meshgrid(np.arange(ns), np.arange(ns), indexing="ij")
    near = (np.abs(yy[None] - giy[:, None, None]) <= lw) & (np.abs(xx[None] - gix[:, None, None]) <= lw)
    masked = np.where(near[:, None, None], blocks, np.inf)
    kk = np.argmin(masked.reshape(n - 1, nb, nb, ns * ns), axis=-1)
    biy, bix = np.divmod(kk, ns)
    box, boy, curx, cury = _refine(np.where(np.isfinite(masked), masked, 1e30), biy, bix)
    bdx, bdy = bix - r + box, biy - r + boy
    amount = wa.reshape(n - 1, nb, bh, nb, bw).sum(axis=(2, 4)) / win[m : m + bh, m : m + bw].sum()
    use = (amount > 0.3) & (curx < 1e20) & (cury < 1e20)
    # where each block's weight sits, relative to the frame centre (the centre of the zoom)
    wa5 = wa.reshape(n - 1, nb, bh, nb, bw)
    tot = np.maximum(wa5.sum(axis=(2, 4)), 1e-12)
    ys = np.arange(m, m + ch, dtype=np.float64).reshape(nb, bh) - (h - 1) / 2
    xs = np.arange(m, m + cw, dtype=np.float64).reshape(nb, bw) - (w - 1) / 2
    ryy = np.einsum("tbpcq,bp->tbc", wa5, ys) / tot
    rxx = np.einsum("tbpcq,cq->tbc", wa5, xs) / tot
    sol, ok = _fit_similarity(bdx, bdy, np.where(use, curx, 0.0), np.where(use, cury, 0.0), rxx, ryy)
    shift = np.where(ok[:, None], sol[:, :2], shift)
    scale = np.where(ok, 1.0 + sol[:, 2], 1.0)
    return CameraMotion(shift=shift, scale=scale)


def _fit_similarity(
    dx: np.ndarray, dy: np.ndarray, wx: np.ndarray, wy: np.ndarray, rx: np.ndarray, ry: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, weighted least squares of d = t + k r over the blocks (t: shift, k: zoom - 1; all inputs
    (pairs, ...) per block), with one pass of outlier rejection. Returns (pairs, 3) solutions and whether
    each is well constrained."""
    n = dx.shape[0]
    dx, dy, wx, wy, rx, ry = (v.reshape(n, -1) for v in (dx, dy, wx, wy, rx, ry))
    nbk = rx.shape[1]
    ones, zeros = np.ones((n, nbk)), np.zeros((n, nbk))
    design = np.concatenate([np.stack([ones, zeros, rx], -1), np.stack([zeros, ones, ry], -1)], axis=1)
    target = np.concatenate([dx, dy], axis=1)  # (n, 2B)
    wgt = np.concatenate([wx, wy], axis=1)
    sol = np.zeros((n, 3))
    ok = np.zeros(n, dtype=bool)
    for _ in range(2):
        ata = np.einsum("nbi,nb,nbj->nij", design, wgt, design)
        atb = np.einsum("nbi,nb->ni", design, wgt * target)
        norm = np.trace(ata, axis1=1, axis2=2)[:, None, None] + 1e-12
        good = ((wgt[:, :nbk] > 0).sum(1) >= 3) & ((wgt[:, nbk:] > 0).sum(1) >= 3)
        good &= np.abs(np.linalg.det(ata / norm)) > 1e-9
        ata = np.where(good[:, None, None], ata, np.eye(3))
        sol = np.where(good[:, None], np.linalg.solve(ata, atb[..., None])[..., 0], 0.0)
        ok = good
        res = np.abs(np.einsum("nbi,ni->nb", design, sol) - target)
        wgt = np.where(res > 0.6, 0.0, wgt)
    return sol, ok


def camera_motion(frames: np.ndarray) -> np.ndarray:
    """(T-1, 2) content shift (dx, dy) in pixels between consecutive frames, from the background only.

    Positive x means the content moves right (the camera pans left). Objects and occluders are masked out;
    integer search over +-3 px, then a parabola fit for the sub-pixel part.
    """
    frames = _check_frames(frames)
    seg = _segment_video(frames)
    return _camera(seg.gray, seg.foreground).shift


def camera_zoom(frames: np.ndarray) -> np.ndarray:
    """(T-1,) zoom factor between consecutive frames (> 1: content grows, the camera zooms in)."""
    frames = _check_frames(frames)
    seg = _segment_video(frames)
    return _camera(seg.gray, seg.foreground).scale


# ---------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------


def _check_frames(frames: np.ndarray) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {arr.dtype}")
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) frames, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] < 8 or arr.shape[2] < 8:
        raise ValueError(f"empty or tiny video, shape {arr.shape}")
    return arr


def _px(unit: int) -> float:
    """Pixel thresholds are set for 64x64 frames; they scale with the short side (`unit` px, the world's
    unit), but not below 3/4 (the centroid jitter of small blobs does not shrink with them)."""
    return max(unit / 64, 0.75)


def _to_first_frame(points: np.ndarray, cam: CameraMotion, height: int, width: int) -> np.ndarray:
    """Map per-frame pixel positions (T, 2) into frame 0's coordinates by undoing the camera motion."""
    n = points.shape[0]
    c = np.array([(width - 1) / 2, (height - 1) / 2])
    s = np.ones(n)
    d = np.zeros((n, 2))
    for t in range(1, n):
        s[t] = cam.scale[t - 1] * s[t - 1]
        d[t] = cam.scale[t - 1] * d[t - 1] + cam.shift[t - 1]
    return c + (points - c - d) / s[:, None]


def _series(tr: Track, min_frac: float = 0.4, min_valid: int = 3) -> np.ndarray:
    """Centroids of the fully visible frames, or, where those are too few (less than min_frac of the frames
    the track is present in), the centroids of every blob not cut by the frame edge (occluders and other
    objects may bias them a little), or, where enough of them are clear of other objects, of only those
    (an object passing over a static one half behind a bar moves its visible centroid by several pixels)."""
    pts = tr.centroid
    need = max(min_valid, min_frac * tr.n_present)
    if np.isfinite(pts[:, 0]).sum() >= need:
        return pts
    ok = np.array([b is not None and not b.touches_edge for b in tr.blobs])
    alone = ok & np.array([b is not None and not b.near_other for b in tr.blobs])
    if alone.sum() >= need:
        ok = alone
    if ok.sum() < 2:
        return tr.position
    return np.where(ok[:, None], tr.position, np.nan)


def _angle_deg(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = float(np.hypot(*u)), float(np.hypot(*v))
    if nu == 0 or nv == 0:
        return 180.0
    return math.degrees(math.acos(float(np.clip(np.dot(u, v) / (nu * nv), -1, 1))))


def _check_direction(pts: np.ndarray, direction: str, px: float) -> bool:
    """The least-squares line through the (camera-compensated) centroids travels at least MIN_TRAVEL px,
    within DIRECTION_MAX_ERR_DEG of the named direction."""
    ok = np.isfinite(pts[:, 0])
    if ok.sum() < 2 or direction not in world.DIRECTIONS:
        return False
    t = np.nonzero(ok)[0].astype(np.float64)
    p = pts[ok]
    vel = np.polyfit(t, p, 1)[0]  # (2,) px per frame
    disp = vel * (t[-1] - t[0])
    if float(np.hypot(*disp)) < MIN_TRAVEL * px:
        return False
    return _angle_deg(disp, np.array(world.DIRECTIONS[direction])) < DIRECTION_MAX_ERR_DEG


def _check_static(raw: np.ndarray, pts: np.ndarray, px: float) -> bool:
    """Stays within STATIC_MAX px of its median position once the camera motion is undone; the tolerance
    grows by 10% of the largest correction applied (camera estimates accumulate some error)."""
    ok = np.isfinite(pts[:, 0])
    if not ok.any():
        return False
    p = pts[ok]
    spread = np.hypot(*(p - np.median(p, axis=0)).T)
    correction = float(np.hypot(*(raw[ok] - p).T).max())
    return bool(spread.max() < STATIC_MAX * px + 0.1 * correction)


def _check_gravity(tr: Track, fps: float, height: int, unit: int) -> bool:
    """A fall from rest: y first increases, accelerates downwards, reaches the floor, then bounces back up
    less high than it fell (height: the frame's in px; unit: its short side, one world unit)."""
    # heights: fully visible frames, else blobs cut only by a (vertical) occluder, which keeps y unbiased
    cut_by_bar = np.array([b is not None and not b.touches_edge and not b.near_other for b in tr.blobs])
    y = np.where(np.isfinite(tr.centroid[:, 1]), tr.centroid[:, 1], np.where(cut_by_bar, tr.position[:, 1], np.nan))
    if np.isfinite(y).sum() < 0.6 * tr.n_present:  # mostly cut by other objects: take what is visible
        not_edge = np.array([b is not None and not b.touches_edge and not b.shared for b in tr.blobs])
        y = np.where(not_edge, tr.position[:, 1], np.nan)
    clean = y
    # where an object touches another (a fall beside a resting object), its blob is whole but not "fully
    # visible": take its position for finding the bounce, and only the clean heights for fitting g. A blob
    # shared with an object of the same colour is not its own: its position says nothing of the fall
    beside = np.array([b is not None and not b.touches_edge and not b.shared for b in tr.blobs])
    y = np.where(np.isfinite(y), y, np.where(beside, tr.position[:, 1], np.nan))
    idx = np.nonzero(np.isfinite(y))[0]
    if len(idx) < 5:
        return False
    px = _px(unit)
    margin = 2.0 * px
    y0 = y[idx[0]]
    moved = idx[np.abs(y[idx] - y0) > margin]
    if len(moved) == 0 or y[moved[0]] < y0:
        return False  # never moves, or starts by going up
    # first bounce: the lowest point before y comes back up by more than the margin
    tb = None
    for i in idx[idx >= moved[0]]:
        if tb is None or y[i] >= y[tb]:
            tb = i
        elif y[i] < y[tb] - margin:
            break
    else:
        return False
    assert tb is not None
    low = height - (1.0 - world.FLOOR_Y + 0.1) * unit  # 0.1 unit above the floor band's top
    if tr.bottom[tb] < low:
        # the bounce may be hidden in a blob shared with an object of the same colour just before: it counts
        # if that blob reaches the floor (the fall beside a resting object of its colour)
        gap = range(int(idx[idx < tb][-1]) + 1 if (idx < tb).any() else 0, int(tb))
        if not any(tr.blobs[i] is not None and tr.blobs[i].shared and tr.bottom[i] >= low for i in gap):
            return False
    after = idx[idx > tb]
    rise = y[tb] - np.min(y[after])
    drop = y[tb] - y0
    if not rise < 0.9 * drop:
        return False  # gains energy: not a bounce (e.g. time reversed)
    pre = idx[(idx < tb) & np.isfinite(clean[idx])]
    y = clean
    gaps = np.nonzero(np.diff(pre) > 2)[0]
    pre = pre[: gaps[0] + 1] if len(gaps) else pre  # the first run of frames, no hidden bounce inside
    if len(pre) >= 5:
        ts = pre / fps
        g = 2 * np.polyfit(ts, y[pre], 2)[0]
        expected = world.GRAVITY * unit
        if not 0.3 * expected < g < 3.0 * expected:
            return False
    return True


def _check_rotation(tr: Track, clockwise: bool | None, fps: float) -> bool:
    """A square or triangle whose fitted orientation turns at SPIN_MIN rad/s or more, in the named sense
    (positive angles are clockwise on screen, as in world._sdf). Median of the frame-to-frame steps,
    wrapped to the shape's symmetry period."""
    shape = tr.shape
    if shape not in _SYMMETRY and not any(s in _SYMMETRY for s in tr.alike):
        return False
    period = _SYMMETRY.get(shape, math.pi / 2)
    ang = tr.angle
    ok = np.isfinite(ang)
    steps = ok[1:] & ok[:-1]
    if steps.sum() >= 3:
        d = np.diff(ang)[steps]
        d = (d + period / 2) % period - period / 2
        rate = float(np.median(d)) * fps
        if abs(rate) < SPIN_MIN:
            return False
        return clockwise is None or (rate > 0) == clockwise
    # hardly ever fully visible (behind an occluder): accept any change of the visible outline
    seq = [b for b in tr.blobs if b is not None]
    if len(seq) < 2:
        return False
    ious = [_mask_iou(seq[0], b) for b in seq[1:]]
    return min(ious) < 0.85


def _mask_iou(a: Blob, b: Blob) -> float:
    """IoU of two blob masks aligned at their centroids (rounded to whole pixels)."""
    sx = round(b.centroid[0] - a.centroid[0])
    sy = round(b.centroid[1] - a.centroid[1])
    ax0, ay0, ax1, ay1 = a.bbox
    bx0, by0, bx1, by1 = b.bbox[0] - sx, b.bbox[1] - sy, b.bbox[2] - sx, b.bbox[3] - sy
    x0, y0, x1, y1 = min(ax0, bx0), min(ay0, by0), max(ax1, bx1), max(ay1, by1)
    ma = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    mb = np.zeros_like(ma)
    ma[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = a.mask
    mb[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0] = b.mask
    inter = int((ma & mb).sum())
    return inter / max(int((ma | mb).sum()), 1)


def _check_relation(ta: Track, tb: Track, relation: str) -> bool:
    """Signed relation at the start: the first frame where both are fully visible, if that is early in the
    clip, else the first frame where both are present."""
    n = len(ta.blobs)
    both_vis = np.isfinite(ta.centroid[:, 0]) & np.isfinite(tb.centroid[:, 0])
    both = ta.present & tb.present
    if both_vis.any() and int(np.argmax(both_vis)) <= max(int(np.argmax(both)) if both.any() else 0, n // 4):
        i = int(np.argmax(both_vis))
        (xa, ya), (xb, yb) = ta.centroid[i], tb.centroid[i]
    elif both.any():
        i = int(np.argmax(both))
        (xa, ya), (xb, yb) = ta.position[i], tb.position[i]
    else:
        return False
    return {"left of": xa < xb, "right of": xa > xb, "above": ya < yb, "below": ya > yb}.get(relation, False)


@functools.cache
def _area_per_r2(shape: str) -> float:
    """A shape's area over its radius squared (world._sdf at angle 0, on a fine grid): pi for a circle."""
    g = (np.arange(801) - 400) / 200  # 2.5 radii either way, 200 samples per radius
    gx, gy = np.meshgrid(g, g)
    return float((world._sdf(shape, gx, gy, 1.0, np.zeros(())) < 0).sum()) / 200**2


def size_ratio(tr: Track, shape: str, size: str, camera: str, fps: float, unit: int) -> float:
    """How large a tracked object is drawn against the size asked: its median area over the frames where it
    is fully visible, over the area of that shape at that size (world.SIZES; the short side of `unit` px
    is one world unit, scaled by the asked camera zoom at each frame). NaN if it is never fully visible."""
    frames = [t for t, b in enumerate(tr.blobs) if b is not None and b.fully_visible and not b.shared]
    if not frames:
        return math.nan
    t = np.asarray(frames, dtype=np.float64) / fps
    rate = {"zoom-in": 1.0, "zoom-out": -1.0}.get(camera, 0.0) * world.CAMERA_ZOOM_RATE
    asked = _area_per_r2(shape) * (world.SIZES[size] * unit * np.exp(rate * t)) ** 2
    return float(np.median(tr.area[frames] / asked))


def _check_size(tr: Track, shape: str, size: str, camera: str, fps: float, unit: int) -> bool:
    """Drawn at the asked size: size_ratio within SIZE_TOL either way (a never fully visible object fails)."""
    return 1 / SIZE_TOL <= size_ratio(tr, shape, size, camera, fps, unit) <= SIZE_TOL


def _check_camera(cam: CameraMotion, move: str, unit: int) -> bool:
    """Pans: the summed background shift moves against the camera (at least PAN_MIN px, direction within
    DIRECTION_MAX_ERR_DEG); zooms: the summed log-zoom has the right sign and is at least ZOOM_MIN."""
    px = _px(unit)
    total = cam.shift.sum(axis=0)
    log_zoom = float(np.log(cam.scale).sum())
    if move in world.COMPOUND_CAMERA_MOVES:
        return _check_compound_pan(cam, move, unit)
    if move.startswith("pan-") and move[4:] in world.DIRECTIONS:
        expected = -np.array(world.DIRECTIONS[move[4:]])  # the content moves against the camera
        if float(np.hypot(*total)) < PAN_MIN * px:
            return False
        return _angle_deg(total, expected) < DIRECTION_MAX_ERR_DEG
    if move == "zoom-in":
        return log_zoom > ZOOM_MIN
    if move == "zoom-out":
        return log_zoom < -ZOOM_MIN
    if move == "static":
        return float(np.hypot(*total)) < PAN_MIN * px and abs(log_zoom) < ZOOM_MIN
    return False


def _check_compound_pan(cam: CameraMotion, move: str, unit: int) -> bool:
    """A pan for the first half of the clip, then still ("-stop") or the opposite pan ("-back"): each half
    is checked like a simple move."""
    _, d, kind = move.split("-")
    half = len(cam.shift) // 2
    first = CameraMotion(cam.shift[:half], cam.scale[:half])
    second = CameraMotion(cam.shift[half:], cam.scale[half:])
    back = {"left": "right", "right": "left", "up": "down", "down": "up"}[d]
    ok_first = _check_camera(first, f"pan-{d}", unit)
    return ok_first and _check_camera(second, "static" if kind == "stop" else f"pan-{back}", unit)


def _check_moves(tr: Track, pts: np.ndarray, fps: float, px: float) -> bool:
    """Dynamics, unsigned: the object moves at all (its camera-compensated centroid spans MIN_TRAVEL px, or
    it spins either way). With "static", this keeps a frozen video from passing temporal consistency."""
    ok = np.isfinite(pts[:, 0])
    if ok.sum() >= 2 and float(np.hypot(*(pts[ok].max(axis=0) - pts[ok].min(axis=0)))) >= MIN_TRAVEL * px:
        return True
    return _check_rotation(tr, None, fps)


def _check_smooth(tracks: Sequence[Track], px: float) -> bool:
    """Every moving track moves smoothly. From its measured centroids (gaps of up to 3 frames bridged),
    velocities v; roughness = median |change of v| / median |v|, coherence = median speed over 3-6 frame
    spans / median |v|; roughness - coherence must stay below ROUGHNESS_MAX. Smooth motion gives about -1
    to 0.3 (centroid quantisation, noise), shuffled frames about 1 or more. Tracks slower than MOVING_MIN
    px per frame or with fewer than 5 velocity changes are not tested."""
    for tr in tracks:
        pts = _series(tr, 0.0)
        idx = np.flatnonzero(np.isfinite(pts[:, 0]))
        if len(idx) < 4:
            continue
        gap = np.diff(idx)
        near = gap <= 3
        vel = (pts[idx[1:]] - pts[idx[:-1]]) / gap[:, None]  # (k, 2) px per frame
        pairs = near[1:] & near[:-1]
        step = float(np.median(np.hypot(*vel[near].T))) if near.any() else 0.0
        if pairs.sum() < 5 or step < MOVING_MIN * px:
            continue
        rough = float(np.median(np.hypot(*(vel[1:] - vel[:-1])[pairs].T))) / step
        lag = idx[None, :] - idx[:, None]
        i, j = np.nonzero((lag >= 3) & (lag <= 6))
        speeds = np.hypot(*(pts[idx[j]] - pts[idx[i]]).T) / lag[i, j]
        coherence = float(np.median(speeds)) / step if len(speeds) else 0.0
        if rough - coherence > ROUGHNESS_MAX:
            return False
    return True


def _check_instances(
    tracks: dict[str, Track], objects: list[tuple[int, str, str]], n: int, exempt: set[str] | frozenset = frozenset()
) -> bool:
    """Instance preservation: per colour of the spec, no more tracks (present in at least MIN_TRACK_FRAC of
    the frames and fully visible at least once: slivers of a partly hidden object do not count) than objects
    of that colour, and no track that starts or ends in the middle of the clip
    while fully in view (appearing or vanishing not explained by an occluder or the frame edge). Colours in
    exempt (an object's colour before and after a change its prompt asks for) may start or end mid-clip."""
    min_frames = max(1, math.ceil(MIN_TRACK_FRAC * n))
    colors = [c for _, c, _ in objects]
    for color in set(colors) - set(exempt):
        real = [
            t
            for t in tracks.values()
            if t.color == color
            and t.n_present >= min_frames
            and any(b is not None and b.fully_visible for b in t.blobs)
        ]
        if len(real) > colors.count(color):
            return False
        for tr in real:
            idx = np.flatnonzero(tr.present)
            first, last = tr.blobs[idx[0]], tr.blobs[idx[-1]]
            if (idx[0] > 0 and first is not None and first.fully_visible) or (
                idx[-1] < n - 1 and last is not None and last.fully_visible
            ):
                return False
    return True


def _hidden(tr: Track) -> np.ndarray:
    """(T,) frames in which the object may be (partly) hidden: absent, or cut by an occluder or the edge."""
    return np.array([b is None or b.near_occluder or b.touches_edge for b in tr.blobs])


def _check_permanence(tr: Track, pts: np.ndarray, unit: int) -> bool:
    """Object permanence across an occluder: the object is clear of it at the start, and after its last
    hidden stretch it comes back, clear again for at least 2 frames, where (and so when) its motion before
    hiding predicts (within REAPPEAR_MAX of the short side, `unit` px; `pts` are camera-compensated). Never
    hidden: it must still be there in the last fifth of the clip."""
    n = len(tr.blobs)
    hidden = _hidden(tr)
    clear = ~hidden & np.isfinite(pts[:, 0])
    idx = np.flatnonzero(clear)
    if len(idx) < 2 or idx[0] > n // 3:
        return False
    gaps = np.flatnonzero(np.diff(idx) > 1)
    if len(gaps) == 0:  # never hidden between two clear frames
        return bool(idx[-1] >= n - 1 - n // 5)
    before = idx[: gaps[0] + 1]
    after = idx[gaps[-1] + 1 :]
    if len(after) < 2:
        return False
    t0, t1 = before[-1], after[0]
    fit = before[-4:]
    vel = np.polyfit(fit, pts[fit], 1)[0] if len(fit) >= 2 else np.zeros(2)
    pred = pts[t0] + vel * (t1 - t0)
    return bool(np.hypot(*(pts[t1] - pred)) < REAPPEAR_MAX * unit)


def _check_return(tr: Track, pts: np.ndarray, unit: int) -> bool:
    """Off screen and back: a world-static object visible at the start leaves the frame (absent for at
    least 2 frames), comes back, and its camera-compensated position on return is within REAPPEAR_MAX of
    the short side (`unit` px) of where it was before it left."""
    present = tr.present
    idx = np.flatnonzero(present)
    if len(idx) < 2 or not present[0]:
        return False
    gaps = np.flatnonzero(np.diff(idx) > 2)
    if len(gaps) == 0:
        return False  # never left
    ok = np.isfinite(pts[:, 0]) & ~_hidden(tr)
    before = np.flatnonzero(ok[: idx[gaps[0]] + 1])
    after = np.flatnonzero(ok)[np.flatnonzero(ok) > idx[gaps[-1]]]
    if len(before) == 0 or len(after) < 2:
        return False
    return bool(np.hypot(*(np.median(pts[after], axis=0) - np.median(pts[before], axis=0))) < REAPPEAR_MAX * unit)


# ---------------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------------


def _radius(tr: Track) -> float:
    """Blob radius (px) from the track's median area, as if it were a disc."""
    area = tr.area[tr.present]
    return math.sqrt(float(np.median(area)) / math.pi) if len(area) else 0.0


def _contact_frame(pa: np.ndarray, pb: np.ndarray, reach: float) -> int | None:
    """The first frame whose centroids are closer than reach (px), or None."""
    d = np.hypot(*(pa - pb).T)
    close = np.flatnonzero(np.isfinite(d) & (d <= reach))
    return int(close[0]) if len(close) else None


def _velocity(pts: np.ndarray, frames: range) -> np.ndarray | None:
    """Least-squares velocity (px per frame) over the frames of a range that have a position."""
    idx = np.array([t for t in frames if 0 <= t < len(pts) and np.isfinite(pts[t, 0])])
    if len(idx) < 2:
        return None
    return np.polyfit(idx.astype(np.float64), pts[idx], 1)[0]


def _check_collision(ta: Track, tb: Track, pa: np.ndarray, pb: np.ndarray, px: float) -> bool:
    """Equal masses collide: they come into contact without passing through each other, and across the
    contact they exchange velocities (each one's velocity after is the other's before, within 35% of the
    faster one plus 0.15 px per frame: momentum and energy both kept). pa, pb: camera-compensated positions."""
    reach = CONTACT_GAP * (_radius(ta) + _radius(tb))
    c = _contact_frame(pa, pb, reach)
    n = len(pa)
    if c is None or c < 3 or c > n - 4:
        return False
    d = np.hypot(*(pa - pb).T)
    if np.nanmin(d) < 0.6 * (_radius(ta) + _radius(tb)):  # they overlap: passed through each other
        return False
    before = [_velocity(p, range(c - 5, c)) for p in (pa, pb)]
    after = [_velocity(p, range(c + 2, c + 7)) for p in (pa, pb)]
    if any(v is None for v in before + after):
        return False
    va0, vb0 = before
    va1, vb1 = after
    tol = 0.35 * max(float(np.hypot(*va0)), float(np.hypot(*vb0))) + 0.15 * px
    return bool(np.hypot(*(va1 - vb0)) < tol and np.hypot(*(vb1 - va0)) < tol)


def _check_cause(
    ta: Track, tb: Track, tn: Track | None, pa: np.ndarray, pb: np.ndarray, unit: int
) -> tuple[bool, bool]:
    """Contact that changes colour. Returns (passes, acausal): passes when b's old colour gives way to the new
    one in place (at most one frame of overlap, within REAPPEAR_MAX of the short side), no earlier than one frame
    before the contact and at most EFFECT_LAG frames after it; acausal when the change comes first."""
    if tn is None or not tb.present[0] or tn.present[0]:
        return False, False
    change = int(np.argmax(tn.present))
    gone = np.flatnonzero(tb.present)
    if len(gone) == 0 or gone[-1] > change or tb.present[change + 1 :].any():
        return False, False
    last = int(gone[-1])
    if np.hypot(*(tn.position[change] - tb.position[last])) > REAPPEAR_MAX * unit:
        return False, False
    # b's place over the whole clip: the old colour's blob, then the new one's
    pb = np.where(np.isfinite(pb[:, :1]), pb, tn.position)
    contact = _contact_frame(pa, pb, CONTACT_GAP * (_radius(ta) + _radius(tb)))
    if contact is None:
        return False, True  # an effect with no cause at all
    return contact - 1 <= change <= contact + EFFECT_LAG, change < contact - 1


def _fact_key(fact: Mapping) -> str:
    """The score key of a spec fact: "present:0", "relation:1-0", "camera", ..."""
    check = str(fact.get("check", ""))
    if check == "relation":
        return f"relation{'_blind' if fact.get('order_blind') else ''}:{fact.get('a')}-{fact.get('b')}"
    if check == "collision":
        return f"collision:{fact.get('a')}-{fact.get('b')}"
    if check in ("camera", "smooth", "instances"):
        return check
    return f"{check}:{fact.get('object')}"


_AXIS = {"left of": ("left of", "right of"), "right of": ("left of", "right of"), "above": ("above", "below"),
         "below": ("above", "below")}  # fmt: skip


def _family(key: str) -> str:
    """The check family of a score key ("relation_blind:1-0" -> "relation_blind")."""
    return key.split(":")[0]


def _zero_scores(spec: object, error: str) -> dict[str, float | str]:
    """Every fact and aggregate at 0, plus the error message."""
    out: dict[str, float | str] = {}
    facts = spec.get("facts", []) if isinstance(spec, Mapping) else []
    for fact in facts if isinstance(facts, list) else []:
        if isinstance(fact, Mapping):
            out[_fact_key(fact)] = 0.0
    out.update({"color": 0.0, "shape": 0.0, "motion": 0.0, "joint": 0.0, "error": error})
    return out


def failed_scores(spec: object, error: str) -> dict[str, float | str]:
    """The scores of an item that could not be scored (unreadable video, ...): every fact 0, with the error."""
    return _zero_scores(spec, error)


def _match_objects(objects: list[tuple[int, str, str]], tracks: dict[str, Track], n: int) -> dict[int, Track]:
    """Assign spec objects (index, colour, shape) to tracks of their colour: with one object of a colour,
    its longest track; with several, by shape votes (Hungarian)."""
    out: dict[int, Track] = {}
    min_frames = max(1, math.ceil(MIN_TRACK_FRAC * n))
    for color in {c for _, c, _ in objects}:
        objs = [(i, s) for i, c, s in objects if c == color]
        cands = [t for t in tracks.values() if t.color == color and t.n_present >= min_frames]
        if not cands:
            continue
        if len(objs) == 1:
            out[objs[0][0]] = max(cands, key=lambda t: t.n_present)
            continue
        gain = np.array(
            [[tr.votes().get(s, 0) + 0.5 * (s in tr.alike) + 0.01 * tr.n_present for tr in cands] for _, s in objs]
        )
        rows, cols = linear_sum_assignment(-gain)
        for r, c in zip(rows, cols, strict=True):
            out[objs[r][0]] = cands[c]
    return out


def _spec_objects(spec: Mapping) -> list[tuple[int, str, str]]:
    """(index, colour, shape) of every object: from the scene graph, else from the "present" facts."""
    scene = spec.get("scene")
    if isinstance(scene, Mapping) and "objects" in scene:
        return [(i, str(o["color"]), str(o["shape"])) for i, o in enumerate(scene["objects"])]
    present = [f for f in spec["facts"] if f["check"] == "present"]
    return sorted((int(f["object"]), str(f["color"]), str(f["shape"])) for f in present)


def score(frames: np.ndarray, spec: dict, fps: float) -> dict[str, float | str]:
    """Score a video against a scene spec: one value in [0, 1] per fact, plus "color", "shape", "motion"
    and "joint" (1.0 iff every fact passes).

    Fact keys: "present:i" (colour found with the right majority shape), "direction:i", "gravity:i",
    "static:i", "rotation:i", "relation:a-b", "camera", "size:i" (drawn at the asked size). Never raises:
    an empty video, a wrong dtype or shape, or a malformed spec gives all-zero scores and an "error" message.
    """
    try:
        frames = _check_frames(frames)
        facts = spec["facts"]
        if not isinstance(facts, list) or not all(isinstance(f, Mapping) and "check" in f for f in facts):
            raise ValueError("spec['facts'] must be a list of facts")
        objects = _spec_objects(spec)
        if not np.isfinite(fps) or fps <= 0:
            raise ValueError(f"bad fps {fps!r}")
    except Exception as e:  # the benchmark must never crash on a bad video
        return _zero_scores(spec, f"{type(e).__name__}: {e}")
    try:
        return _score(frames, facts, objects, float(fps))
    except Exception as e:
        return _zero_scores(spec, f"{type(e).__name__}: {e}")


def _score(frames: np.ndarray, facts: list, objects: list[tuple[int, str, str]], fps: float) -> dict:
    n, h, w, _ = frames.shape
    unit = min(h, w)  # px per world unit at zoom 1
    px = _px(unit)
    seg = _segment_video(frames)
    effects = {str(f["color"]) for f in facts if f["check"] == "cause"}  # hues objects turn into
    tracks = _tracks(seg, [c for _, c, _ in objects] + sorted(effects))
    matched = _match_objects(objects, tracks, n)
    camera_move = next((str(f["move"]) for f in facts if f["check"] == "camera"), "static")  # as asked
    cam: CameraMotion | None = None

    def camera() -> CameraMotion:
        nonlocal cam
        if cam is None:
            cam = _camera(seg.gray, seg.foreground)
        return cam

    def comp(tr: Track, min_frac: float = 0.4) -> np.ndarray:
        return _to_first_frame(_series(tr, min_frac), camera(), h, w)

    out: dict[str, float | str] = {}
    motion: list[float] = []
    for fact in facts:
        check = fact["check"]
        key = _fact_key(fact)
        ok = False
        if check == "relation":
            ta, tb = matched.get(int(fact["a"])), matched.get(int(fact["b"]))
            rel = str(fact["relation"])
            if fact.get("order_blind"):  # either sign passes: "left of" or "right of", "above" or "below"
                ok = ta is not None and tb is not None and any(_check_relation(ta, tb, r) for r in _AXIS[rel])
            else:
                ok = ta is not None and tb is not None and _check_relation(ta, tb, rel)
        elif check == "camera":
            ok = _check_camera(camera(), str(fact["move"]), unit)
        elif check == "smooth":
            ok = _check_smooth(list(matched.values()), px)
        elif check == "instances":
            ok = _check_instances(
                tracks,
                objects,
                n,
                exempt=effects | {objects[int(f["object"])][1] for f in facts if f["check"] == "cause"},
            )
        elif check == "collision":
            ta, tb = matched.get(int(fact["a"])), matched.get(int(fact["b"]))
            ok = ta is not None and tb is not None and _check_collision(ta, tb, comp(ta, 0.0), comp(tb, 0.0), px)
        else:
            i = int(fact["object"])
            tr = matched.get(i)
            if tr is not None:
                if check == "present":
                    ok = tr.is_shape(objects[i][2])
                elif check == "direction":
                    ok = _check_direction(comp(tr), str(fact["direction"]), px)
                elif check == "static":
                    ok = _check_static(_series(tr, 0.0), comp(tr, 0.0), px)
                elif check == "gravity":
                    ok = _check_gravity(tr, fps, h, unit)
                elif check == "rotation":
                    cw = fact.get("clockwise")
                    ok = _check_rotation(tr, None if cw is None else bool(cw), fps)
                elif check == "moves":
                    ok = _check_moves(tr, comp(tr, 0.0), fps, px)
                elif check == "permanence":
                    ok = tr.is_shape(objects[i][2]) and _check_permanence(tr, comp(tr, 0.0), unit)
                elif check == "return":
                    ok = tr.is_shape(objects[i][2]) and _check_return(tr, comp(tr, 0.0), unit)
                elif check == "size":
                    ok = _check_size(tr, objects[i][2], str(fact["size"]), camera_move, fps, unit)
                elif check == "cause":
                    by = matched.get(int(fact["by"]))
                    new = max((t for t in tracks.values() if t.color == fact["color"]), key=lambda t: t.n_present,
                              default=None)  # fmt: skip
                    acausal = False
                    if by is not None:
                        pa, pb = (_to_first_frame(t.position, camera(), h, w) for t in (by, tr))
                        ok, acausal = _check_cause(by, tr, new, pa, pb, unit)
                    out[f"acausal:{i}"] = float(acausal)
            if check in _MOTION_FAMILIES:
                motion.append(float(ok))
        out[key] = float(ok)
    # with nothing to check, an aggregate is vacuously 1.0 (like "joint")
    n_obj = max(len(objects), 1)
    out["color"] = sum(i in matched for i, _, _ in objects) / n_obj if objects else 1.0
    out["shape"] = sum(i in matched and matched[i].is_shape(s) for i, _, s in objects) / n_obj if objects else 1.0
    out["motion"] = float(np.mean(motion)) if motion else 1.0
    fact_scores = [v for k, v in out.items() if k not in ("color", "shape", "motion") and _family(k) not in INFORMATIVE]
    out["joint"] = float(all(v == 1.0 for v in fact_scores))
    return out


def presence_curve(frames: np.ndarray, spec: Mapping) -> np.ndarray:
    """(T,) per frame, the fraction of the spec's objects whose colour is seen (as many blobs of it as the
    spec has objects of it, at most): score against frame index, to show drift. Empty on a bad video."""
    try:
        frames = _check_frames(frames)
        colors = [c for _, c, _ in _spec_objects(spec)]
    except Exception:
        return np.zeros(0)
    if not colors:
        return np.ones(len(frames))
    need = {c: colors.count(c) for c in set(colors)}
    seen = [sum(min(need[c], sum(b.color == c for b in fb)) for c in need) for fb in _segment_video(frames).blobs]
    return np.asarray(seen, dtype=np.float64) / len(colors)


def summarize(results: Sequence[Mapping[str, float | str]]) -> dict[str, float]:
    """Means over videos of "color", "shape", "motion", "joint" and of each check family (the family's mean
    within a video, averaged over the videos that have it); also "n" and the "error" rate."""
    out: dict[str, float] = {"n": float(len(results))}
    if not results:
        return out
    for key in ("color", "shape", "motion", "joint"):
        vals = [float(r[key]) for r in results if isinstance(r.get(key), int | float)]
        if vals:
            out[key] = float(np.mean(vals))
    for fam in _FAMILIES + EXTRA_FAMILIES:
        per_video = []
        for r in results:
            vals = [float(v) for k, v in r.items() if k.split(":")[0] == fam and isinstance(v, int | float)]
            if vals:
                per_video.append(float(np.mean(vals)))
        if per_video:
            out[fam] = float(np.mean(per_video))
    out["error"] = float(np.mean([isinstance(r.get("error"), str) for r in results]))
    return out
