"""Person boxes by background subtraction: the one module the rig converter and predict use.

No detector weights can be downloaded, so the person is whatever differs from a model of
the static scene. Per view:

1. **Background model** (:attr:`BoxConfig.background`): a *clean plate* (frames of the empty
   scene, the only model that knows what is behind a person who never moves), else a
   two-pass *masked median* of frames sampled over the take (the second pass ignores the
   boxes where the first found people; pixels covered in every sample are *unknown* and
   count as foreground), or the background image of OpenCV's *MOG2* mixture learned over
   the take (shadow detection off).
2. **Foreground mask** (any colour channel differs by more than ``threshold``), after a
   per-frame **lighting gain** (``light_gain``: each frame divided by its per-channel gain
   against the background image, fitted on the pixels that match it; the median's samples
   too), opened and closed; connected components grouped into person blobs: pieces near
   each other join
   (a person split by a background-coloured garment stays whole), but two tall blobs side
   by side are two people and are never merged. A **shape prior** drops blobs that are no
   person: wider than tall (``min_aspect``) or compact (a ball, a box: under 1.5 times
   taller than wide and filling more than ``max_fill`` of their box).
3. **Tracks** of people over time; ONE track is chosen, the take's subject
   (:attr:`BoxConfig.subject`): by default the person the cameras look at. With
   calibration, the capture-volume centre (:func:`capture_centre`, the point nearest to
   all optical axes) and the pair of views' tracks whose triangulated centre stays
   nearest to it (plus their disagreement, the share of the take they miss, and the
   share of the other views' looks that show no person at that point); the other views
   take the track that agrees with those. Without calibration, per view, the track
   nearest the image centre (in its own heights, plus the share of frames it misses).
   ``subject="persistent"`` takes the track seen in the most frames. How many people were
   seen at once is reported (``people_seen``, a note and a log warning; blobs cut by the
   image's side do not count, and blobs mostly inside the subject's final box are the
   subject, one person: a still person's hands or a board are tall pieces side by side).
4. **Multi-view check** (calibration and >= 3 views): per frame, pairs of views propose a
   triangulated box centre and box size; the largest set of views that agree within
   ``multiview_tolerance`` is the consensus, and a view outside it takes another of its
   detections that agrees within half that, else the consensus projection. Views without
   a detection get the projection too. When the boxes are far smaller than a person in
   3D (a still person, whom the median holds), frames under ``min_body`` person heights
   take body-sized boxes from the rest of the take.
5. **Visual hull** (calibration and >= 3 views, ``hull_voxel_mm`` > 0): per frame, a
   voxel block around the person's triangulated centre is carved by all views' masks; the
   tallest part near the centre, within ``hull_radius`` of its axis, is the person, and
   each view's box becomes that of its foreground pixels under that part's projection
   (an object that touches the person in one image, or a ghost of the median, lies
   elsewhere in 3D). A view without a detection gets the box of the projection.
6. Short dropouts **hold** the last box (``hold_frames``); longer gaps take the nearest
   found box; boxes are made square with the margin rule of :func:`crops.square_box` and
   **smoothed** (moving average of centre and side).

``BoxResult.keep_crop`` gives the background-removal mask of a crop: the chosen person's
blob (closed, holes filled, dilated), never another person's pixels.

Coordinates: full-resolution pixels, integer values at pixel centres (OpenCV); the
analysis frames are shrunk to ``analysis_size`` and ``u_small = (u + 0.5) * scale - 0.5``.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Iterable, Iterator, Optional, Protocol, Sequence

import cv2
import numpy as np

from tfrecords_tools import cameras as cameras_lib
from tfrecords_tools import crops, video

log = logging.getLogger(__name__)

BACKGROUNDS = ("auto", "plate", "median", "mog2")
SUBJECTS = ("centre", "persistent")
# Where each output box came from (BoxResult.source).
SOURCES = ("detected", "held", "projected", "filled", "none")
DETECTED, HELD, PROJECTED, FILLED, NONE = range(5)
# Share of the samples that must differ from the plain median for a pixel covered by
# people in every sample to take that median (someone passed over it) rather than count as
# foreground (someone stands on it); see _fit_background.
_PASSED = 0.2
_MIN_PIECE = 4  # analysis pixels: the smallest component that may join a person blob
_GAIN_DEAD = 0.01  # lighting gains within 1% of 1 leave the frame as it is (no rounding)
_SWITCH = 0.5  # disagreement (1: the multi-view tolerance) for taking another detection


class BoxConfigError(ValueError):
    """A BoxConfig setting is out of range (the message names the field)."""


@dataclasses.dataclass(frozen=True)
class BoxConfig:
    """Settings of person-box finding.

    Attributes:
      background: background model: "plate" (median of the clean-plate frames given to
        :func:`find_boxes`), "median" (two-pass masked median over the take), "mog2"
        (the background image of OpenCV's MOG2 mixture learned over the whole take, shadows
        off), or "auto": the plate when
        one is given, else "median" (measured best on short generator takes, BENCHMARKS).
      threshold: grey-level difference to the background (any channel) that counts as
        foreground.
      light_gain: divide each analysis frame by its per-channel lighting gain against the
        background image before the difference (a global brightness or colour-balance
        change, e.g. a lighting drift or a camera's auto-exposure, is otherwise foreground
        wherever the scene is bright); gains within 1% of 1 change nothing.
      samples: frames sampled over the take (or the plate) for a median.
      analysis_size: frames are shrunk to at most this side before any analysis (speed).
      margin: square box margin around the person's tight box, fraction of its side.
      min_side: smallest box side, analysis pixels.
      open_kernel: side of the opening that removes speckle noise, analysis pixels (1: none).
      close_kernel: side of the closing that fills small holes, analysis pixels (1: none).
      min_area: smaller blobs are noise, analysis pixels (smaller pieces, down to 4
        pixels, may still join a person: a shoe, a hand).
      join_gap: components closer than this fraction of the tallest blob's height join one
        person blob (twice as far for one above the other: a belt or trousers the colour
        of the background).
      person_fraction: a blob is a person when its height is at least this fraction of the
        tallest blob's (and its area this fraction squared of the largest's); two such blobs
        side by side (their heights overlapping by half) are two people, never merged.
      smoothing: frames in the moving average of box centre and side (1: none).
      hold_frames: a dropout of up to this many frames keeps the last found box; longer gaps
        take the nearest found box. Also how long a track survives unseen.
      min_track_frames: a person must be seen in this many frames to count in people_seen.
      subject: which person the take is about when several are seen: "centre" (the one
        the cameras look at: with calibration, the track whose viewing rays pass nearest
        the capture-volume centre, the point nearest to all cameras' optical axes; without,
        the track nearest the image centre; either over the track's frames, median, plus
        the share of frames the track misses) or "persistent" (the track seen in the
        most frames).
      min_aspect: shape prior: a blob less tall than this times its width is not a person
        (a rolling box, a ball).
      max_fill: shape prior: a blob less than 1.5 times taller than wide that fills more than
        this share of its box is a compact object, not a person (a person's outline fills
        about half of their box). Neither counts in people_seen nor is chosen.
      person_height_mm: body-size prior: the height whose projection scales the multi-view
        tolerance.
      multiview_tolerance: a view's box centre may lie this many projected person heights
        from the other views' consensus, and its longer side differ by a factor of
        1 + 1.5 x this from theirs (calibration and >= 3 views only).
      keep_close: closing of the background-removal keep mask, fraction of the person's
        height (joins limbs to the body, fills the gaps of background-coloured clothes;
        along image columns 2.5 times as far).
      keep_dilate: the keep mask grows by this many analysis pixels (the blended outline).
      hull_voxel_mm: with calibration and >= 3 views, the visual-hull step's voxel side in
        mm (0: no hull step): per frame a block around the person's triangulated centre is
        carved by every view's foreground mask, and each view's box becomes that of its
        foreground under the projection of the person's part of the hull.
      hull_misses: a voxel stays in the hull when the views that see it show foreground
        there, all but this many (a part of the person that one view's background model
        holds).
      hull_radius: the person's part of the hull lies within this many person heights of
        their vertical axis (0: the whole connected hull).
      min_body: with calibration, when the take's boxes are far smaller in 3D than a
        person (the warning about the background model), a frame whose boxes are less
        tall than this many person heights (0.3: 0.54 m, well under a seated person's
        upper body, about 0.8-0.9 m) takes a body-sized box in every view: the union of
        the view's boxes over the take (0: keep the small boxes).
      projected_guard: with the hull step, a view without a detection of its own keeps
        its box from the hull only while the square box around it overlaps that around
        the projection of the detected views' consensus (their final boxes) by at least
        this IoU; else its box holds foreground that is not the subject (another person
        or an object under the hull's projection) and takes the projection (0: always the
        hull's box).
    """

    background: str = "auto"
    threshold: float = 30.0
    light_gain: bool = True
    samples: int = 40
    analysis_size: int = 320
    margin: float = 0.2
    min_side: float = 16.0
    open_kernel: int = 3
    close_kernel: int = 5
    min_area: int = 20
    join_gap: float = 0.25
    person_fraction: float = 0.5
    smoothing: int = 5
    hold_frames: int = 10
    min_track_frames: int = 3
    subject: str = "centre"
    min_aspect: float = 0.8
    max_fill: float = 0.7
    person_height_mm: float = 1800.0
    multiview_tolerance: float = 0.25
    keep_close: float = 0.1
    keep_dilate: int = 2
    hull_voxel_mm: float = 40.0
    hull_misses: int = 1
    hull_radius: float = 0.25
    min_body: float = 0.3
    projected_guard: float = 0.8

    def __post_init__(self):
        checks = [
            (self.background in BACKGROUNDS, "background", f"one of {list(BACKGROUNDS)}"),
            (self.threshold > 0, "threshold", "> 0"),
            (self.samples >= 1, "samples", ">= 1"),
            (self.analysis_size >= 32, "analysis_size", ">= 32"),
            (self.margin >= 0, "margin", ">= 0"),
            (self.min_side > 0, "min_side", "> 0"),
            (self.open_kernel >= 1, "open_kernel", ">= 1"),
            (self.close_kernel >= 1, "close_kernel", ">= 1"),
            (self.min_area >= 1, "min_area", ">= 1"),
            (self.join_gap >= 0, "join_gap", ">= 0"),
            (0 < self.person_fraction <= 1, "person_fraction", "in (0, 1]"),
            (self.smoothing >= 1, "smoothing", ">= 1"),
            (self.hold_frames >= 0, "hold_frames", ">= 0"),
            (self.min_track_frames >= 1, "min_track_frames", ">= 1"),
            (self.subject in SUBJECTS, "subject", f"one of {list(SUBJECTS)}"),
            (self.min_aspect >= 0, "min_aspect", ">= 0"),
            (0 < self.max_fill <= 1, "max_fill", "in (0, 1]"),
            (self.person_height_mm > 0, "person_height_mm", "> 0"),
            (self.multiview_tolerance > 0, "multiview_tolerance", "> 0"),
            (self.keep_close >= 0, "keep_close", ">= 0"),
            (self.keep_dilate >= 0, "keep_dilate", ">= 0"),
            (self.hull_voxel_mm >= 0, "hull_voxel_mm", ">= 0"),
            (self.hull_misses >= 0, "hull_misses", ">= 0"),
            (self.hull_radius >= 0, "hull_radius", ">= 0"),
            (0 <= self.min_body < 2, "min_body", "in [0, 2)"),
            (0 <= self.projected_guard < 1, "projected_guard", "in [0, 1)"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise BoxConfigError(f"{name}={getattr(self, name)!r}: expected {expected}")


# ---------------------------------------------------------------------------- frame sources


class FrameSource(Protocol):
    """Frames of one view, readable more than once (a video or an array)."""

    num_frames: int
    width: int
    height: int

    def frames(self, indices: Optional[Sequence[int]] = None) -> Iterable[np.ndarray]:
        """RGB uint8 [H, W, 3] frames at increasing ``indices`` (None: all, in order)."""


@dataclasses.dataclass
class ArraySource:
    """A FrameSource over an in-memory [T, H, W, 3] array (or list of frames)."""

    array: Sequence[np.ndarray]

    @property
    def num_frames(self) -> int:
        return len(self.array)

    @property
    def width(self) -> int:
        return int(self.array[0].shape[1])

    @property
    def height(self) -> int:
        return int(self.array[0].shape[0])

    def frames(self, indices=None) -> Iterator[np.ndarray]:
        for i in (range(len(self.array)) if indices is None else indices):
            yield self.array[int(i)]


def analysis_scale(width: int, height: int, analysis_size: int) -> float:
    """Analysis pixels per full pixel: frames shrink to at most ``analysis_size`` a side."""
    return min(1.0, analysis_size / max(width, height))


class _Scaler:
    """Full <-> analysis resolution of one view."""

    def __init__(self, width: int, height: int, analysis_size: int):
        self.width, self.height = width, height
        self.scale = analysis_scale(width, height, analysis_size)
        self.small_wh = (max(1, round(width * self.scale)), max(1, round(height * self.scale)))

    def small(self, image: np.ndarray) -> np.ndarray:
        if self.scale == 1.0:
            return np.ascontiguousarray(image)
        return cv2.resize(image, self.small_wh, interpolation=cv2.INTER_AREA)

    def to_small(self, xy):
        return (np.asarray(xy, np.float64) + 0.5) * self.scale - 0.5

    def to_full(self, xy):
        return (np.asarray(xy, np.float64) + 0.5) / self.scale - 0.5


# ---------------------------------------------------------------------------- masks


def _ellipse(side: int) -> np.ndarray:
    side = max(1, int(side))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))


def _clean(mask: np.ndarray, config: BoxConfig) -> np.ndarray:
    m = mask.astype(np.uint8)
    if config.open_kernel > 1:
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, _ellipse(config.open_kernel))
    if config.close_kernel > 1:
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, _ellipse(config.close_kernel))
    return m


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """uint8 mask with every region not reachable from the border set."""
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = mask
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    return (padded | (1 - flood))[1:-1, 1:-1]


# ---------------------------------------------------------------------------- people in a frame


@dataclasses.dataclass
class Person:
    """One person blob in one analysis frame.

    Attributes:
      box: tight (x0, y0, x1, y1), analysis pixels, inclusive.
      area: foreground pixels.
      origin: (x, y) of the keep-mask region's top-left corner, analysis pixels.
      keep: packed bits of the keep mask over that region (see :meth:`keep_mask`).
      shape: (h, w) of the region.
    """

    box: np.ndarray
    area: int
    origin: tuple
    keep: np.ndarray
    shape: tuple

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1] + 1)

    @property
    def centre(self) -> np.ndarray:
        return (self.box[:2] + self.box[2:]) / 2

    def keep_mask(self) -> np.ndarray:
        """bool [h, w] keep mask of the region at :attr:`origin`."""
        n = self.shape[0] * self.shape[1]
        return np.unpackbits(self.keep, count=n).reshape(self.shape).astype(bool)


def _closest_mergeable(boxes: np.ndarray, areas: np.ndarray,
                       config: BoxConfig) -> Optional[tuple[int, int]]:
    """Indices (a < b) of the closest pair of blobs that may join, or None.

    The tallest blob (of at least ``min_area``) is the scale of the frame's people:
    fragments of one person (an outline against a background that holds part of them) join
    within ``join_gap`` of it, however small each is, and twice as far when one is above
    the other (a belt or trousers the colour of the background); two blobs of at least
    ``person_fraction`` of it side by side (heights overlapping by half, a gap between) are
    two people and never join. Stacked pieces join before pieces side by side, so that the
    body is whole when an arm is judged against it.
    """
    x0, y0, x1, y1 = (boxes[:, k] for k in range(4))
    h, w = y1 - y0 + 1, x1 - x0 + 1
    ref = h[areas >= config.min_area].max()
    pair_max = lambda a: np.maximum(a[:, None], a[None, :])
    pair_min = lambda a: np.minimum(a[:, None], a[None, :])
    x_overlap = pair_min(x1) - pair_max(x0) + 1
    y_overlap = pair_min(y1) - pair_max(y0) + 1
    dx, dy = np.maximum(0, -x_overlap), np.maximum(0, -y_overlap)
    dist = np.hypot(dx, dy)
    limit = config.join_gap * np.maximum(pair_max(h), ref)
    limit = np.where(x_overlap >= 0.5 * pair_min(w), 2 * limit, limit)
    tall = config.person_fraction * ref
    side_by_side = ((pair_min(h) >= tall) & (y_overlap >= 0.5 * pair_min(h))
                    & (dx > 0.03 * pair_max(h)))
    ok = (dist <= limit) & ~side_by_side & np.triu(np.ones(dist.shape, bool), 1)
    if not ok.any():
        return None
    a, b = np.nonzero(ok)
    k = np.lexsort((dx[a, b] > 0, dist[a, b]))[0]  # nearest first; stacked before beside
    return int(a[k]), int(b[k])


def find_people(mask: np.ndarray, config: BoxConfig) -> list[Person]:
    """Person blobs of a foreground mask [h, w] (analysis size), largest first."""
    return _find_people_clean(_clean(mask, config), config)


def _find_people_clean(m: np.ndarray, config: BoxConfig) -> list[Person]:
    """:func:`find_people` of a mask already cleaned by :func:`_clean` (uint8)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    # Pieces below min_area still join a person (a shoe, a hand), but alone are noise.
    ids = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= _MIN_PIECE]
    ids = sorted(ids, key=lambda i: -stats[i, cv2.CC_STAT_AREA])[:60]  # the rest is noise
    if not ids or stats[ids[0], cv2.CC_STAT_AREA] < config.min_area:
        return []
    box_of = lambda i: np.array([stats[i, 0], stats[i, 1], stats[i, 0] + stats[i, 2] - 1,
                                 stats[i, 1] + stats[i, 3] - 1], np.float64)
    clusters = [{"ids": [i], "box": box_of(i), "area": int(stats[i, cv2.CC_STAT_AREA])}
                for i in ids]
    height = lambda c: c["box"][3] - c["box"][1] + 1
    while len(clusters) > 1:  # Join the closest mergeable pair until none is left.
        pair = _closest_mergeable(np.stack([c["box"] for c in clusters]),
                                  np.array([c["area"] for c in clusters]), config)
        if pair is None:
            break
        a, b = pair
        ca, cb = clusters[a], clusters.pop(b)
        ca["ids"] += cb["ids"]
        ca["area"] += cb["area"]
        ca["box"] = np.concatenate([np.minimum(ca["box"][:2], cb["box"][:2]),
                                    np.maximum(ca["box"][2:], cb["box"][2:])])
    clusters = [c for c in clusters
                if c["area"] >= config.min_area and _person_shaped(c, config)]
    if not clusters:
        return []
    tallest = max(height(c) for c in clusters)
    largest = max(c["area"] for c in clusters)
    people = [c for c in clusters
              if height(c) >= config.person_fraction * tallest
              and c["area"] >= config.person_fraction ** 2 * largest]
    people.sort(key=lambda c: -c["area"])
    all_ids = [c["ids"] for c in people]
    return [_person(labels, c, [i for j, o in enumerate(all_ids) if j != k for i in o], config)
            for k, c in enumerate(people)]


def _person_shaped(cluster: dict, config: BoxConfig) -> bool:
    """Shape prior: not wider than tall by more than ``1 / min_aspect``, and not a compact
    object (a ball, a box: under 1.5 times taller than wide and filling more than
    ``max_fill`` of its box; a person's outline fills about half of theirs)."""
    x0, y0, x1, y1 = cluster["box"]
    w, h = x1 - x0 + 1, y1 - y0 + 1
    aspect = h / w
    fill = cluster["area"] / (w * h)
    return aspect >= config.min_aspect and not (aspect < 1.5 and fill > config.max_fill)


def _person(labels: np.ndarray, cluster: dict, other_ids: list, config: BoxConfig) -> Person:
    box = cluster["box"]
    height = box[3] - box[1] + 1
    close = int(round(config.keep_close * height)) | 1
    pad = close + config.keep_dilate + 1
    h, w = labels.shape
    x0, y0 = int(max(0, box[0] - pad)), int(max(0, box[1] - pad))
    x1, y1 = int(min(w, box[2] + pad + 1)), int(min(h, box[3] + pad + 1))
    region = labels[y0:y1, x0:x1]
    keep = np.isin(region, cluster["ids"]).astype(np.uint8)
    if close > 1:
        keep = cv2.morphologyEx(keep, cv2.MORPH_CLOSE, _ellipse(close))
        # A band of clothes the colour of the background cuts the body across; closing
        # along columns (2.5 times as far) bridges it without filling the space between
        # the legs or under an arm, which is open at one end.
        line = np.ones((int(round(2.5 * close)) | 1, 1), np.uint8)
        keep = cv2.morphologyEx(keep, cv2.MORPH_CLOSE, line)
    keep = _fill_holes(keep)
    if config.keep_dilate:
        keep = cv2.dilate(keep, _ellipse(2 * config.keep_dilate + 1))
    if other_ids:  # Never keep another person's pixels.
        keep[np.isin(region, other_ids)] = 0
    return Person(box=box, area=cluster["area"], origin=(x0, y0),
                  keep=np.packbits(keep.astype(bool).ravel()), shape=keep.shape)


# ---------------------------------------------------------------------------- background models


class _Background:
    """Foreground masks of one view's analysis frames."""

    def __init__(self, config: BoxConfig, kind: str, image: np.ndarray,
                 unknown: Optional[np.ndarray] = None):
        self.config, self.kind, self.image, self.unknown = config, kind, image, unknown

    def mask(self, small: np.ndarray) -> np.ndarray:
        fg = video.foreground_mask(small, self.image, self.config.threshold, kernel=1)
        if self.unknown is not None:
            fg |= self.unknown
        return fg


def compensate_light(small: np.ndarray, background: np.ndarray,
                     threshold: float) -> np.ndarray:
    """``small`` (RGB uint8) divided by its per-channel lighting gain against
    ``background``, or ``small`` itself when every gain is within 1% of 1.

    The gain is the median ratio frame / background over pixels that are not dark, fitted
    again on the pixels that then match the background within ``threshold`` (the person
    and moving objects drop out of the second fit)."""
    ok = background.min(-1) > 30  # dark pixels carry no ratio (noise, clipping)
    if np.count_nonzero(ok) < 100:
        return small
    ratio = small[ok].astype(np.float32) / background[ok]
    gain = np.median(ratio, 0)
    inliers = np.abs(small[ok] / gain - background[ok]).max(-1) < threshold
    if np.count_nonzero(inliers) >= 100:
        gain = np.median(ratio[inliers], 0)
    if np.abs(gain - 1).max() < _GAIN_DEAD:
        return small
    return np.clip(np.round(small / gain), 0, 255).astype(np.uint8)


def _exclusion(people: list[Person], shape: tuple) -> np.ndarray:
    """Where a sample shows people: their tight boxes grown by 2% of the frame side (a
    person who barely moves shows only the moving limbs against a median that contains
    the rest of them, so the whole box is excluded, not the blob)."""
    out = np.zeros(shape, bool)
    grow = max(1, int(round(0.02 * max(shape))))
    for p in people:
        x0, y0, x1, y1 = p.box.astype(int)
        out[max(0, y0 - grow):y1 + grow + 1, max(0, x0 - grow):x1 + grow + 1] = True
    return out


def _as_source(x) -> FrameSource:
    if hasattr(x, "frames") and hasattr(x, "num_frames"):
        return x
    x = np.asarray(x)
    return ArraySource(x[None] if x.ndim == 3 else x)


def _fit_background(config: BoxConfig, kind: str, source: FrameSource, scaler: _Scaler,
                    plate) -> _Background:
    if kind == "plate":
        plate = _as_source(plate)
        if (plate.width, plate.height) != (scaler.width, scaler.height):
            raise ValueError(f"clean plate is {plate.width}x{plate.height}, the view "
                             f"{scaler.width}x{scaler.height}")
        picks = video.sample_indices(plate.num_frames, config.samples)
        small = np.stack([scaler.small(f) for f in plate.frames(picks)])
        return _Background(config, kind, video.masked_median(small))
    if kind == "mog2":
        mog = cv2.createBackgroundSubtractorMOG2(history=max(2, source.num_frames),
                                                 detectShadows=False)
        # Two passes, so that the model has seen the whole take. Its own masks are not
        # used: on a short take the per-pixel variances include the person's passage,
        # which hides the person (measured); its dominant mode is the background image.
        for _ in range(2):
            for frame in source.frames():
                mog.apply(scaler.small(frame))
        return _Background(config, kind, mog.getBackgroundImage())
    # Two-pass masked median: the second ignores where the first one found people.
    picks = video.sample_indices(source.num_frames, config.samples)
    small = np.stack([scaler.small(f) for f in source.frames(picks)])
    first = video.masked_median(small)
    if config.light_gain:  # The samples in the take's mean light: a drift is no person.
        small = np.stack([compensate_light(s, first, config.threshold) for s in small])
        first = video.masked_median(small)
    exclude = np.stack([_exclusion(find_people(video.foreground_mask(
        s, first, config.threshold, kernel=1), config), s.shape[:2]) for s in small])
    image = video.masked_median(small, exclude_masks=exclude)
    # Covered in every sample: the median there is the person, so count it as foreground,
    # unless the plain median there changes often (someone walked over it: a person who
    # stays hides it in almost every sample). Else the box of a person who walks slowly
    # is the whole area their boxes covered, however tight their outline.
    unknown = exclude.all(0)
    if unknown.any():
        differ = np.mean([video.foreground_mask(s, first, config.threshold, kernel=1)
                          for s in small], 0)
        passed = unknown & (differ >= _PASSED)
        image[passed] = first[passed]
        unknown &= ~passed
    return _Background(config, kind, image, unknown if unknown.any() else None)


# ---------------------------------------------------------------------------- tracks


def _track(people: list[list[Person]], hold: int) -> list[list[tuple[int, int]]]:
    """Greedy tracks over time: lists of (frame, person index)."""
    tracks: list[dict] = []
    for t, found in enumerate(people):
        live = [k for k, tr in enumerate(tracks) if t - tr["last"] <= hold + 1]
        pairs = []
        for k in live:
            last = people[tracks[k]["last"]][tracks[k]["items"][-1][1]]
            for j, p in enumerate(found):
                d = float(np.linalg.norm(p.centre - last.centre))
                if d <= 0.5 * max(p.height, last.height):
                    pairs.append((d, k, j))
        used_t, used_p = set(), set()
        for d, k, j in sorted(pairs):
            if k not in used_t and j not in used_p:
                used_t.add(k)
                used_p.add(j)
                tracks[k]["items"].append((t, j))
                tracks[k]["last"] = t
        for j in range(len(found)):
            if j not in used_p:
                tracks.append({"items": [(t, j)], "last": t})
    return [tr["items"] for tr in tracks]


def _fill_track_gaps(people: list[list[Person]], chosen: np.ndarray, alone: bool,
                     nearest: bool = True) -> None:
    """Frames the chosen track missed (a jump between distant frames, e.g. a large
    frame step, breaks a track) take a detection anyway (in place): the only one when the
    view never shows two people at once, else (if ``nearest``) the one nearest the
    track's box in the nearest frame of the track, if within that box's height."""
    have = np.flatnonzero(chosen >= 0)
    for t in np.flatnonzero(chosen < 0):
        found = people[t]
        if not found:
            continue
        if alone and len(found) == 1:
            chosen[t] = 0
            continue
        if not len(have) or not nearest:
            continue
        s = int(have[np.abs(have - t).argmin()])
        ref = people[s][chosen[s]]
        d = [float(np.linalg.norm(p.centre - ref.centre)) for p in found]
        if min(d) <= ref.height:
            chosen[t] = int(np.argmin(d))


def _count_people(people: list[list[Person]], min_frames: int, width: int,
                  subject: Optional[np.ndarray] = None) -> int:
    """Most people seen at once in >= ``min_frames`` frames; blobs cut by the image's left
    or right side are not counted (an object entering, clipped to a tall sliver).

    ``subject``: per frame, the subject's box (analysis pixels, [T, 4]; NaN: none). Blobs
    mostly (half their box or more) inside it are the subject, one person however many
    pieces: a still person's hands, a board or a body split by the background model are
    tall blobs side by side, but a second person is elsewhere (measured on the caliscope
    sessions: every extra blob lay wholly inside the subject's box)."""
    whole = lambda p: p.box[0] > 0 and p.box[2] < width - 1

    def count(t: int, found: list) -> int:
        found = [p for p in found if whole(p)]
        box = None if subject is None else subject[t]
        if box is None or not np.all(np.isfinite(box)):
            return len(found)
        own = [_inside_share(p.box, box) >= 0.5 for p in found]
        return int(any(own)) + own.count(False)

    counts = np.array([count(t, p) for t, p in enumerate(people)] or [0])
    return int(max([k for k in range(1, counts.max() + 1) if (counts >= k).sum() >= min_frames]
                   or [0]))


# ---------------------------------------------------------------------------- multi-view


def _triangulate(cams: Sequence[cameras_lib.Camera], points: np.ndarray) -> np.ndarray:
    """World point (mm) from pixel points [V, 2] of the same 3D point (linear DLT)."""
    rows = []
    for cam, uv in zip(cams, points):
        xy = cv2.undistortPoints(np.asarray(uv, np.float64).reshape(1, 1, 2), cam.matrix,
                                 np.asarray(cam.distortion, np.float64)).reshape(2)
        p = np.concatenate([cam.rotation, cam.translation[:, None]], 1)
        rows += [xy[0] * p[2] - p[0], xy[1] * p[2] - p[1]]
    _, _, vt = np.linalg.svd(np.asarray(rows))
    x = vt[-1]
    return x[:3] / x[3]


def _size_3d(cam, box: np.ndarray, x: np.ndarray) -> float:
    """A tight box's longer side in mm at the depth of world point ``x``."""
    return float((box[2:] - box[:2]).max() + 1) * cam.world_to_camera(x)[2] / cam.fy


def _disagreement(cam, box: np.ndarray, x: np.ndarray, size: float, tol_px: float,
                  size_tolerance: float) -> float:
    """<= 1 when a tight box is a view of the person at ``x`` of box side ``size`` mm:
    centre within ``tol_px``, side within a factor exp(``size_tolerance``)."""
    if cam.world_to_camera(x)[2] <= 0:
        return np.inf
    centre = (box[:2] + box[2:]) / 2
    return max(np.linalg.norm(cam.project(x) - centre) / tol_px,
               abs(np.log(_size_3d(cam, box, x) / size)) / size_tolerance)


def _tolerances(config: BoxConfig, cams) -> tuple:
    """The multi-view check's tolerances: ``tol_of(view, x)``, box-centre pixels for a
    person at world point ``x`` in that view (``multiview_tolerance`` person heights, at
    least that many pixels), and the box-size tolerance (log of the size ratio)."""
    def tol_of(v: int, x: np.ndarray) -> float:
        z = max(cams[v].world_to_camera(x)[2], 1.0)
        return config.multiview_tolerance * max(1.0, cams[v].fy * config.person_height_mm / z)
    return tol_of, float(np.log1p(1.5 * config.multiview_tolerance))


def _consensus(cams, boxes: dict, tol_of, size_tolerance: float) -> Optional[tuple]:
    """The views of one frame that agree: ({view: tight box}, world centre, side mm), or
    None if no 2 agree.

    ``boxes``: {view: tight full-pixel box}. Every pair of views proposes the triangulated
    box centre and the box side in mm there; the views that :func:`_disagreement` accepts
    are its inliers, refitted once; the proposal with the most inliers wins (RANSAC over
    pairs: one wrong view cannot drag the triangulation of the others, as in a
    leave-one-out check). The size test catches a view that boxes two people at once or
    misses the legs.
    """
    views = sorted(boxes)
    centre = {v: (boxes[v][:2] + boxes[v][2:]) / 2 for v in views}

    def fit(members):
        x = _triangulate([cams[v] for v in members], np.stack([centre[v] for v in members]))
        if min(cams[v].world_to_camera(x)[2] for v in members) <= 0:
            return None
        return x, float(np.median([_size_3d(cams[v], boxes[v], x) for v in members]))

    def agreeing(x, size):
        errs = {v: _disagreement(cams[v], boxes[v], x, size, tol_of(v, x), size_tolerance)
                for v in views}
        inliers = [v for v in views if errs[v] <= 1.0]
        return inliers, sum(errs[v] for v in inliers)

    best = None
    for i, a in enumerate(views):
        for b in views[i + 1:]:
            model = fit([a, b])
            if model is None:
                continue
            inliers, _ = agreeing(*model)
            if len(inliers) < 2:
                continue
            model = fit(inliers)  # Refit on the inliers (a pair splits its difference).
            if model is None:
                continue
            inliers, err = agreeing(*model)
            if len(inliers) >= 2 and (best is None or (len(inliers), -err) >
                                      (len(best[0]), -best[1])):
                best = (inliers, err, model)
    if best is None:
        return None
    inliers, _, (x, size) = best
    return {v: boxes[v] for v in inliers}, x, size


def _world_up(cams) -> np.ndarray:
    """Unit world vector that the cameras see as image-up (their mean -y axis): rigs film
    upright, so this is the vertical without assuming a world convention."""
    up = -np.mean([np.asarray(c.rotation, np.float64)[1] for c in cams], 0)
    return up / max(np.linalg.norm(up), 1e-9)


def _hull_grid(config: BoxConfig, up: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Voxel centres [N, 3] (mm, relative to the person's centre) of a block around a
    person: 0.6 person heights to each side, 0.75 up and down; and its shape (a, b, up)."""
    step = config.hull_voxel_mm
    e1 = np.cross(up, [1.0, 0.0, 0.0])
    if np.linalg.norm(e1) < 0.5:
        e1 = np.cross(up, [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    n_h = int(np.ceil(0.6 * config.person_height_mm / step))
    n_v = int(np.ceil(0.75 * config.person_height_mm / step))
    a = np.arange(-n_h, n_h + 1) * step
    c = np.arange(-n_v, n_v + 1) * step
    grid = (a[:, None, None, None] * e1 + a[None, :, None, None] * e2
            + c[None, None, :, None] * up)
    return grid.reshape(-1, 3), (len(a), len(a), len(c))


def _hull_component(occ: np.ndarray, max_gap: int, reach: float) -> np.ndarray:
    """The person's part of an occupancy block [a, b, up] centred on them: the ground-plan
    component (8-connected) within ``reach`` voxels of the centre column with the most
    occupied layers (then voxels), cut along the vertical at the first
    gap of more than ``max_gap`` layers above or below the layer nearest the centre."""
    plan = occ.any(2).astype(np.uint8)
    n, labels = cv2.connectedComponents(plan, connectivity=8)
    if n <= 1:
        return np.zeros_like(occ)
    ca, cb = (occ.shape[0] - 1) / 2, (occ.shape[1] - 1) / 2
    ya, xb = np.mgrid[:occ.shape[0], :occ.shape[1]]
    near = np.hypot(ya - ca, xb - cb) <= reach
    # The tallest component near the centre, then the most voluminous (a ball or a box
    # beside a person may be nearer, and the centre triangulated from boxes that hold it
    # too, but it is never as tall).
    best = None
    for k in np.unique(labels[near & (plan > 0)]):
        part = occ & (labels == k)[:, :, None]
        key = (int(part.any((0, 1)).sum()), int(part.sum()))
        if best is None or key > best[0]:
            best = (key, part)
    if best is None:
        return np.zeros_like(occ)
    occ = best[1]
    layers = np.flatnonzero(occ.any((0, 1)))
    mid = int(np.argmin(np.abs(layers - (occ.shape[2] - 1) / 2)))
    lo = hi = mid
    while lo > 0 and layers[lo] - layers[lo - 1] <= max_gap + 1:
        lo -= 1
    while hi < len(layers) - 1 and layers[hi + 1] - layers[hi] <= max_gap + 1:
        hi += 1
    occ[:, :, :layers[lo]] = False
    occ[:, :, layers[hi] + 1:] = False
    return occ


def _hull_boxes(config: BoxConfig, cams, scalers, masks, tight: np.ndarray,
                source: np.ndarray) -> None:
    """Visual-hull boxes (in place): per frame, a voxel block around the person's
    triangulated centre is carved by every view's foreground mask (a voxel stays when the
    views that see it show foreground there, all but ``hull_misses``); the person's part
    of it (:func:`_hull_component`) is projected into each view, and the view's box is
    that of its foreground pixels under the projection. A moving object touching the
    person in one view, a ghost of the background model or another person is elsewhere
    in 3D and drops out; a view without a detection gets the box of the projection."""
    num_views, num_frames = tight.shape[:2]
    up = _world_up(cams)
    offsets, shape = _hull_grid(config, up)
    half_diag = 0.5 * np.sqrt(3) * config.hull_voxel_mm
    for t in range(num_frames):
        have = [v for v in range(num_views)
                if source[v, t] == DETECTED and np.all(np.isfinite(tight[v, t]))]
        if len(have) < 2:
            continue
        x = _triangulate([cams[v] for v in have],
                         np.stack([(tight[v, t, :2] + tight[v, t, 2:]) / 2 for v in have]))
        pts = x + offsets
        seen = np.zeros(len(pts), np.int16)
        hits = np.zeros(len(pts), np.int16)
        views = []
        for v, (cam, sc) in enumerate(zip(cams, scalers)):
            w, h = sc.small_wh
            fg = np.unpackbits(masks[v][t], count=w * h).reshape(h, w)
            z_x = cam.world_to_camera(x)[2]
            if z_x <= 0:
                views.append(None)
                continue
            # One pixel more than a voxel's reach: thin limbs must survive the carving.
            radius = int(np.ceil(half_diag * cam.fy * sc.scale / z_x)) + 1
            pc = cam.world_to_camera(pts)
            uv = sc.to_small(cam.project_camera(pc))
            # Voxels behind or beside the camera's centre project to inf/NaN or beyond int64:
            # clip them outside the image before the cast (a real recording's close webcams
            # printed "invalid value encountered in cast").
            uv = np.clip(np.where(np.isfinite(uv), uv, -1.0), -1.0, float(max(w, h) + 1))
            ix, iy = np.rint(uv[:, 0]).astype(np.int64), np.rint(uv[:, 1]).astype(np.int64)
            inside = (pc[:, 2] > 0) & (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
            grown = cv2.dilate(fg, _ellipse(2 * radius + 1))
            seen += inside
            hits[inside] += grown[iy[inside], ix[inside]].astype(np.int16)
            views.append((fg, ix, iy, inside, radius))
        occ = (seen >= 2) & (hits >= np.maximum(2, seen - config.hull_misses))
        occ = _hull_component(occ.reshape(shape), max_gap=max(
            1, int(round(100.0 / config.hull_voxel_mm))),
            reach=0.5 * config.person_height_mm / config.hull_voxel_mm).ravel()
        if not occ.any():
            continue
        if config.hull_radius > 0:
            # A hull of few views is a fat prism around the person, joined at times to an
            # object or a ghost of the background model; keep what lies within a body's
            # reach of the person's vertical axis: the disc of that radius holding the
            # most occupied volume (a person is taller than what touches them).
            occ3 = occ.reshape(shape)
            r = config.hull_radius * config.person_height_mm / config.hull_voxel_mm
            disc = _ellipse(2 * int(np.ceil(r)) + 1).astype(np.float32)
            volume = cv2.filter2D(occ3.sum(2).astype(np.float32), -1, disc,
                                  borderType=cv2.BORDER_CONSTANT)
            ia, ib = np.unravel_index(int(np.argmax(volume)), volume.shape)
            ya, xb = np.mgrid[:shape[0], :shape[1]]
            if np.hypot(ia - (shape[0] - 1) / 2, ib - (shape[1] - 1) / 2) > 2 * r:
                continue  # Far from where the detections put the person: trust neither.
            occ = (occ3 & (np.hypot(ya - ia, xb - ib) <= r)[:, :, None]).ravel()
        layers = np.flatnonzero(occ.reshape(shape).any((0, 1)))
        if not len(layers) or (layers[-1] - layers[0] + 1) * config.hull_voxel_mm < (
                0.55 * config.person_height_mm):
            continue  # Not a person's height: a hull of objects or ghosts.
        new = {}
        for v, item in enumerate(views):
            if item is None:
                continue
            fg, ix, iy, inside, radius = item
            sel = occ & inside
            if not sel.any():
                continue
            proj = np.zeros_like(fg)
            proj[iy[sel], ix[sel]] = 1
            proj = cv2.dilate(proj, _ellipse(2 * radius + 3))
            ys, xs = np.nonzero(proj & fg)
            if len(xs) < 0.2 * np.count_nonzero(proj):
                # This view's mask misses the person: the hull's own extent.
                xs, ys = ix[sel], iy[sel]
            box = np.array([[xs.min(), ys.min()], [xs.max(), ys.max()]], np.float64)
            new[v] = scalers[v].to_full(box).ravel()
        # The hull is the detections' person only if its boxes lie mostly inside them and
        # keep most of their height (else the centre came from wrong detections, or the
        # hull holds an object: keep what the views found).
        agree = [v for v in have if v in new and _inside_share(new[v], tight[v, t]) >= 0.7
                 and new[v][3] - new[v][1] >= 0.7 * (tight[v, t, 3] - tight[v, t, 1])]
        if len(agree) < max(2, len(have) - 1):
            continue
        for v, box in new.items():
            if v in have and v not in agree:
                continue
            tight[v, t] = box
            if source[v, t] == NONE:
                source[v, t] = PROJECTED


def _guard_projected(config: BoxConfig, cams, tight: np.ndarray,
                     source: np.ndarray) -> np.ndarray:
    """Boxes of views without a detection of their own, checked against the detected
    views (in place): per frame, the consensus of the detected views' final tight boxes
    (:func:`_consensus`) is projected into each such view, and a box from the hull whose
    square box (the crop's shape) overlaps the projection's by an IoU under
    ``projected_guard`` takes the projection. The hull gives such a view the box of its
    foreground under the hull's projection, which also holds another person or an object
    that the projection covers (measured: the bystander where two people cross); the
    detected views' boxes have been through the hull step too, so a still person's parts
    do not shrink the projection. Returns the number of boxes replaced per view."""
    tol_of, size_tolerance = _tolerances(config, cams)
    square = lambda b: crops.square_box(b.reshape(2, 2), margin=0.0, min_side=0.0)
    replaced = np.zeros(len(cams), int)
    for t in range(tight.shape[1]):
        have = {v: tight[v, t] for v in range(len(cams))
                if source[v, t] == DETECTED and np.all(np.isfinite(tight[v, t]))}
        todo = [v for v in range(len(cams))
                if source[v, t] == PROJECTED and np.all(np.isfinite(tight[v, t]))]
        if len(have) < 2 or not todo:
            continue
        found = _consensus(cams, have, tol_of, size_tolerance)
        if found is None:
            continue
        for v in todo:
            box, _ = _project_box(cams, found[0], v)
            if box is not None and (_iou(square(tight[v, t]), square(box))
                                    < config.projected_guard):
                tight[v, t] = box
                replaced[v] += 1
    return replaced


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    both = _overlap(a, b)
    return both / max(_area(a) + _area(b) - both, 1e-9)


def _frame_sizes(cams, tight: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Per frame, the median over views of the boxes' longer side in mm at their
    triangulated centre (NaN: fewer than 2 views with a box)."""
    num_views, num_frames = tight.shape[:2]
    out = np.full(num_frames, np.nan)
    for t in range(num_frames):
        vs = [v for v in range(num_views)
              if source[v, t] != NONE and np.all(np.isfinite(tight[v, t]))]
        if len(vs) < 2:
            continue
        x = _triangulate([cams[v] for v in vs],
                         np.stack([(tight[v, t, :2] + tight[v, t, 2:]) / 2 for v in vs]))
        sizes = [_size_3d(cams[v], tight[v, t], x) for v in vs
                 if cams[v].world_to_camera(x)[2] > 0]
        if sizes:
            out[t] = np.median(sizes)
    return out


def _body_fallback(config: BoxConfig, cams, tight: np.ndarray, source: np.ndarray) -> int:
    """Body-sized boxes (in place) for the frames of a take whose boxes are less tall in
    3D than ``min_body`` person heights: a person who sits or stands still is in the
    background model of the take, and only what moves (hands, a board) is foreground. Such
    a frame takes, per view, the take's body box: the union of its boxes over the take
    (what moved over the take spans the person who barely moved), its corners at the
    10th / 90th percentiles so that a few stray boxes do not set it. Returns the number
    of frames replaced."""
    sizes = _frame_sizes(cams, tight, source)
    small = np.isfinite(sizes) & (sizes < config.min_body * config.person_height_mm)
    present = (source != NONE) & np.all(np.isfinite(tight), -1)
    for v in range(len(tight)):
        if not present[v].any():
            continue
        boxes = tight[v, present[v]]
        body = np.concatenate([np.percentile(boxes[:, :2], 10, 0),
                               np.percentile(boxes[:, 2:], 90, 0)])
        tight[v, small & present[v]] = body
    return int(small.sum())


def _area(a: np.ndarray) -> float:
    return float((a[2] - a[0]) * (a[3] - a[1]))


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Area of the intersection of boxes ``a`` and ``b`` (x0, y0, x1, y1)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return float(w * h)


def _inside_share(a: np.ndarray, b: np.ndarray) -> float:
    """Share of box ``a``'s area inside box ``b`` (x0, y0, x1, y1)."""
    return _overlap(a, b) / max(_area(a), 1e-9)


def _project_box(cams, agreed: dict, v: int) -> tuple[np.ndarray, np.ndarray]:
    """Tight box in view ``v`` from the agreeing views' boxes, and the 3D centre."""
    views = sorted(agreed)
    centres = np.array([(agreed[o][:2] + agreed[o][2:]) / 2 for o in views])
    x = _triangulate([cams[o] for o in views], centres)
    heights, ratios = [], []
    for o in views:
        z = cams[o].world_to_camera(x)[2]
        b = agreed[o]
        heights.append((b[3] - b[1] + 1) * z / cams[o].fy)
        ratios.append((b[2] - b[0] + 1) / (b[3] - b[1] + 1))
    z = cams[v].world_to_camera(x)[2]
    if z <= 0:
        return None, x
    h = float(np.median(heights)) * cams[v].fy / z
    w = h * float(np.median(ratios))
    c = cams[v].project(x)
    return np.array([c[0] - w / 2, c[1] - h / 2, c[0] + w / 2, c[1] + h / 2]), x


# ---------------------------------------------------------------------------- result


@dataclasses.dataclass
class BoxResult:
    """Person boxes of V views over T frames.

    Attributes:
      boxes: float [V, T, 4] square boxes (x0, y0, x1, y1), full-resolution pixels; NaN
        where a view never showed a person.
      found: bool [V, T]: the person was detected in that view and frame.
      source: int8 [V, T] index into :data:`SOURCES` (detected, held, projected, filled,
        none).
      people_seen: most people seen at once in some view (in >= min_track_frames frames).
      notes: human-readable remarks (several people, views replaced, views without a person).
      scales: analysis scale per view (analysis pixels per full pixel).
      people: per view and frame, every person blob found (analysis pixels).
      chosen: int [V, T] index of the chosen person in ``people`` (-1: none).
      background: per view, the fitted background model (``.kind``, ``.image`` at
        analysis size, ``.unknown`` mask or None), for inspection.
    """

    boxes: np.ndarray
    found: np.ndarray
    source: np.ndarray
    people_seen: int
    notes: list
    scales: np.ndarray
    people: list
    chosen: np.ndarray
    background: list = dataclasses.field(default_factory=list)

    def _keep_person(self, view: int, t: int) -> tuple[Optional[Person], np.ndarray]:
        """The person whose mask serves frame t, and the shift (analysis px) to apply:
        frames without a detection borrow the nearest detected frame's mask, moved with
        the box."""
        ch = self.chosen[view]
        if ch[t] >= 0:
            return self.people[view][t][ch[t]], np.zeros(2)
        have = np.flatnonzero(ch >= 0)
        if not len(have):
            return None, np.zeros(2)
        s = int(have[np.abs(have - t).argmin()])
        c = lambda k: (self.boxes[view, k, :2] + self.boxes[view, k, 2:]) / 2
        return self.people[view][s][ch[s]], (c(t) - c(s)) * self.scales[view]

    def keep_mask(self, view: int, t: int, shape: tuple) -> np.ndarray:
        """bool [h, w] (analysis size ``shape``): the chosen person's pixels to keep when
        removing the background (the whole frame is kept if no person was ever found)."""
        person, shift = self._keep_person(view, t)
        if person is None:
            return np.ones(shape, bool)
        out = np.zeros(shape, np.uint8)
        x0, y0 = (int(round(o + d)) for o, d in zip(person.origin, shift))
        m = person.keep_mask().astype(np.uint8)
        h, w = m.shape
        ys, xs = slice(max(0, y0), max(0, min(shape[0], y0 + h))), slice(
            max(0, x0), max(0, min(shape[1], x0 + w)))
        out[ys, xs] = m[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
        return out.astype(bool)

    def keep_crop(self, view: int, t: int, box: np.ndarray, size: int) -> np.ndarray:
        """bool [size, size]: the keep mask resampled like ``crops.crop_image(frame, box,
        size)`` (``box`` in full pixels)."""
        person, shift = self._keep_person(view, t)
        if person is None:
            return np.ones((size, size), bool)
        s = self.scales[view]
        small = (np.asarray(box, np.float64) + 0.5) * s - 0.5
        origin = np.asarray(person.origin, np.float64) + shift
        local = small - np.concatenate([origin, origin])
        m = person.keep_mask().astype(np.uint8) * 255
        return crops.crop_image(m, local, size) > 127


# ---------------------------------------------------------------------------- main entry


def smooth_boxes(boxes: np.ndarray, window: int) -> np.ndarray:
    """Moving average of centre and side over ``window`` frames (edges padded)."""
    if window <= 1 or len(boxes) <= 1:
        return boxes
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = boxes[:, 2] - boxes[:, 0]
    pad = window // 2
    kernel = np.ones(window) / window
    smooth = lambda x: np.convolve(np.pad(x, pad, mode="edge"), kernel, mode="valid")[:len(x)]
    centre = np.stack([smooth(centre[:, 0]), smooth(centre[:, 1])], -1)
    side = smooth(side)
    return np.concatenate([centre - side[:, None] / 2, centre + side[:, None] / 2], -1)


def hold_and_fill(boxes: np.ndarray, have: np.ndarray, hold: int) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Boxes [T, 4] with gaps (``have`` False) filled, and the source per frame.

    Up to ``hold`` frames after a box keep it (HELD); other gaps take the nearest box
    (FILLED; ties: the earlier one). No box at all: NaN and NONE.
    """
    out = boxes.copy()
    source = np.where(have, DETECTED, NONE).astype(np.int8)
    idx = np.flatnonzero(have)
    if not len(idx):
        out[:] = np.nan
        return out, source
    for t in np.flatnonzero(~have):
        before = idx[idx < t]
        if len(before) and t - before[-1] <= hold:
            out[t], source[t] = boxes[before[-1]], HELD
        else:
            out[t], source[t] = boxes[idx[np.abs(idx - t).argmin()]], FILLED
    return out, source


def find_boxes(views: Sequence, config: BoxConfig = BoxConfig(),
               cameras: Optional[Sequence[cameras_lib.Camera]] = None,
               plates: Optional[Sequence[Optional[np.ndarray]]] = None, name: str = "",
               on_frame: Optional[Callable] = None) -> BoxResult:
    """Person boxes in every view and frame of a synchronized take.

    Args:
      views: V views, each RGB uint8 [T, H, W, 3] at full resolution (or a
        :class:`FrameSource`, e.g. a video, read twice without holding full frames).
      config: settings.
      cameras: V calibrated cameras in the views' full-resolution pixels, for the
        multi-view check (>= 3 views); None skips it.
      plates: per view, frames of the empty scene ([N, H, W, 3], [H, W, 3] or a
        FrameSource) or None.
      name: what the log warnings call the take (e.g. the sequence id).
      on_frame: called as ``on_frame(view, t, small_rgb, people)`` for each analysis
        frame during detection (e.g. the rig's motion crops).

    Returns:
      A :class:`BoxResult`.
    """
    sources = [_as_source(v) for v in views]
    num = [s.num_frames for s in sources]
    if len(set(num)) > 1:
        raise ValueError(f"views have different frame counts {num}")
    num_views, num_frames = len(sources), num[0] if num else 0
    notes: list = []
    scalers = [_Scaler(s.width, s.height, config.analysis_size) for s in sources]
    people: list = []
    masks: list = []  # per view and frame, the cleaned foreground mask (packed bits)
    backgrounds = []
    for v, (src, sc) in enumerate(zip(sources, scalers)):
        plate = None if plates is None else plates[v]
        kind = config.background
        if kind == "auto":
            kind = "plate" if plate is not None else "median"
        if kind == "plate" and plate is None:
            raise ValueError(f"background='plate' but view {v} has no clean plate")
        bg = _fit_background(config, kind, src, sc, plate)
        backgrounds.append(bg)
        found, view_masks = [], []
        for t, frame in enumerate(src.frames()):
            small = sc.small(frame)
            seen = (compensate_light(small, bg.image, config.threshold) if config.light_gain
                    else small)
            fg = _clean(bg.mask(seen), config)
            ps = _find_people_clean(fg, config)
            found.append(ps)
            view_masks.append(np.packbits(fg.astype(bool).ravel()))
            if on_frame is not None:
                on_frame(v, t, small, ps)
        if len(found) != num_frames:
            raise ValueError(f"view {v} gave {len(found)} frames, expected {num_frames}")
        people.append(found)
        masks.append(view_masks)

    # ---- one track per view: the subject (nearest the centre, or the most persistent),
    # with calibration the one that agrees in 3D with the best view's subject
    chosen = np.full((num_views, num_frames), -1, np.int64)
    calibrated = (cameras is not None and num_views >= 2
                  and _calibrated_like(cameras, scalers, notes))
    centre = capture_centre(cameras) if calibrated else None
    ranked, costs = [], []
    for v in range(num_views):
        tracks = _track(people[v], config.hold_frames)
        tracks.sort(key=lambda tr: (-len(tr), -sum(people[v][t][j].area for t, j in tr)))
        if config.subject == "centre":
            cost = [_centre_cost(tr, people[v], scalers[v], num_frames,
                                 None if centre is None else cameras[v], centre,
                                 config.person_height_mm) for tr in tracks]
        else:
            cost = [1.0 - len(tr) / max(num_frames, 1) for tr in tracks]
        order = np.argsort(cost, kind="stable")
        ranked.append([tracks[k] for k in order])
        costs.append([cost[k] for k in order])
    picks = [r[0] if r else None for r in ranked]
    if calibrated:
        picks = _consistent_tracks(config, cameras, scalers, people, ranked, costs, centre)
    for v, best in enumerate(picks):
        for t, j in best or ():
            chosen[v, t] = j
    counts = [_count_people(p, config.min_track_frames, sc.small_wh[0])
              for p, sc in zip(people, scalers)]
    # With the multi-view check, a gap in a view that shows several people is left to the
    # consensus projection: the nearest detection there is often the other person.
    multiview = calibrated and num_views >= 3
    for v in range(num_views):
        _fill_track_gaps(people[v], chosen[v], alone=counts[v] <= 1,
                         nearest=not multiview)

    # ---- tight full-resolution boxes of the chosen person
    tight = np.full((num_views, num_frames, 4), np.nan)
    for v in range(num_views):
        for t in range(num_frames):
            if chosen[v, t] >= 0:
                b = people[v][t][chosen[v, t]].box
                tight[v, t] = scalers[v].to_full(b.reshape(2, 2)).ravel()
    source = np.where(chosen >= 0, DETECTED, NONE).astype(np.int8)
    if cameras is not None and num_views >= 3:
        sizes = _multiview(config, cameras, scalers, people, chosen, tight, source, notes,
                           name)
        if config.hull_voxel_mm > 0 and _calibrated_like(cameras, scalers, notes):
            _hull_boxes(config, cameras, scalers, masks, tight, source)
            if config.projected_guard > 0:
                for v, n in enumerate(_guard_projected(config, cameras, tight, source)):
                    if n:
                        msg = (f"view {cameras[v].camera_id}: {n} frame(s) without a "
                               "detection took the detected views' consensus projection "
                               "instead of the hull's box (another person or an object "
                               "under it)")
                        notes.append(msg)
                        log.info("%s: %s", name or "take", msg)
        # Body-size prior: boxes far smaller than a person, in mm, mean the background
        # model holds part of them (a person who barely moves, without a clean plate).
        if sizes and np.median(sizes) < 0.6 * config.person_height_mm:
            kinds = sorted({b.kind for b in backgrounds})
            msg = (f"the boxes are {np.median(sizes) / 1000:.2f} m tall in 3D (median), a "
                   f"person about {config.person_height_mm / 1000:.1f} m: parts of the "
                   f"person may be in the background model ({', '.join(kinds)})"
                   + ("" if kinds == ["plate"] else "; give a clean plate of the empty "
                      "scene"))
            notes.append(msg)
            log.warning("%s: %s", name or "take", msg)
            if config.min_body > 0 and _calibrated_like(cameras, scalers, notes):
                replaced = _body_fallback(config, cameras, tight, source)
                if replaced:
                    notes.append(f"{replaced} frame(s) less than {config.min_body:g} person "
                                 "heights tall in 3D took a body-sized box (a still person's "
                                 "moving parts only)")

    # ---- square, hold, smooth
    boxes = np.full((num_views, num_frames, 4), np.nan)
    for v in range(num_views):
        sc = scalers[v]
        have = source[v] != NONE
        sq = np.full((num_frames, 4), np.nan)
        for t in np.flatnonzero(have):
            corners = sc.to_small(tight[v, t].reshape(2, 2))
            sq[t] = sc.to_full(crops.square_box(corners, config.margin, config.min_side)
                               .reshape(2, 2)).ravel()
        filled, how = hold_and_fill(sq, have, config.hold_frames)
        keep_src = np.where(have, source[v], how)
        source[v] = keep_src
        if not have.any():
            label = v if cameras is None else cameras[v].camera_id
            notes.append(f"view {label}: no person found in any frame")
            continue
        boxes[v] = smooth_boxes(filled, config.smoothing)

    # ---- how many people: the subject's pieces inside their box are one person
    counts = [_count_people(people[v], config.min_track_frames, sc.small_wh[0],
                            subject=sc.to_small(boxes[v].reshape(-1, 2, 2)).reshape(-1, 4))
              for v, sc in enumerate(scalers)]
    people_seen = max(counts or [0])
    if people_seen > 1:
        where = [v if cameras is None else cameras[v].camera_id
                 for v, c in enumerate(counts) if c > 1]
        rule = ("the one nearest the centre" if config.subject == "centre"
                else "the most persistent one")
        msg = f"{people_seen} people seen at once (views {where}); boxing {rule}"
        notes.append(msg)
        log.warning("%s: %s", name or "take", msg)
    return BoxResult(boxes=boxes, found=chosen >= 0, source=source, people_seen=people_seen,
                     notes=notes, scales=np.array([s.scale for s in scalers]),
                     people=people, chosen=chosen, background=backgrounds)


def _calibrated_like(cameras, scalers, notes: list) -> bool:
    """Cameras match the views' sizes (else a note, and no multi-view reasoning)."""
    for cam, sc in zip(cameras, scalers):
        if (cam.width, cam.height) != (sc.width, sc.height):
            msg = (f"camera {cam.camera_id} is calibrated for {cam.width}x{cam.height}, the "
                   f"view is {sc.width}x{sc.height}: no multi-view check")
            if msg not in notes:
                notes.append(msg)
            return False
    return True


def _pair_cost(cams, va: int, ba: np.ndarray, vb: int, bb: np.ndarray) -> float:
    """Disagreement of two tight full-pixel boxes in two views as views of one person:
    reprojection error of the triangulated centre (in box heights) plus the log ratio of
    the 3D heights the two boxes imply at that point."""
    ca, cb = (ba[:2] + ba[2:]) / 2, (bb[:2] + bb[2:]) / 2
    x = _triangulate([cams[va], cams[vb]], np.stack([ca, cb]))
    za, zb = cams[va].world_to_camera(x)[2], cams[vb].world_to_camera(x)[2]
    if za <= 0 or zb <= 0:
        return np.inf
    ha, hb = ba[3] - ba[1] + 1, bb[3] - bb[1] + 1
    err = (np.linalg.norm(cams[va].project(x) - ca) / ha
           + np.linalg.norm(cams[vb].project(x) - cb) / hb)
    return float(err + abs(np.log((ha * za / cams[va].fy) / (hb * zb / cams[vb].fy))))


def capture_centre(cams: Sequence[cameras_lib.Camera]) -> Optional[np.ndarray]:
    """World point (mm) nearest to all cameras' optical axes (least squares): where a
    multi-camera take looks. None when the axes are (nearly) parallel."""
    a, b = np.zeros((3, 3)), np.zeros(3)
    for cam in cams:
        rot = np.asarray(cam.rotation, np.float64)
        origin = -rot.T @ np.asarray(cam.translation, np.float64)
        axis = rot[2] / np.linalg.norm(rot[2])  # the camera's +z in world coordinates
        perp = np.eye(3) - np.outer(axis, axis)
        a += perp
        b += perp @ origin
    if np.linalg.cond(a) > 1e6:
        return None
    return np.linalg.solve(a, b)


def _centre_cost(track, people, scaler: _Scaler, num_frames: int, cam, centre,
                 person_mm: float) -> float:
    """How far a track stays from where the cameras look, in person heights (median over
    up to 20 of its frames), plus the share of the take it misses.

    With a camera and the capture centre: the distance of the centre from the viewing ray
    through the box centre, over ``person_mm``. Without: the box centre's distance from the
    image centre, over the blob's height.
    """
    step = max(1, len(track) // 20)
    dist = []
    for t, j in track[::step]:
        p = people[t][j]
        if cam is not None:
            uv = scaler.to_full(p.centre)
            xy = cv2.undistortPoints(uv.reshape(1, 1, 2), cam.matrix,
                                     np.asarray(cam.distortion, np.float64)).reshape(2)
            rot = np.asarray(cam.rotation, np.float64)
            origin = -rot.T @ np.asarray(cam.translation, np.float64)
            ray = rot.T @ np.array([xy[0], xy[1], 1.0])
            ray /= np.linalg.norm(ray)
            dist.append(np.linalg.norm(np.cross(centre - origin, ray)) / person_mm)
        else:
            image_centre = (np.array(scaler.small_wh, np.float64) - 1) / 2
            dist.append(np.linalg.norm(p.centre - image_centre) / p.height)
    return float(np.median(dist)) + 1.0 - len(track) / max(num_frames, 1)


def _subject_pair(config, cams, full, cand, centre, num_frames, people) -> Optional[list]:
    """The two views' tracks that best show one person near the capture centre: every
    pair of candidate tracks in two views is triangulated over (up to 20 of) their common
    frames; its cost is the median distance of that point from ``centre`` in person
    heights, plus their disagreement (:func:`_pair_cost`), the share of the take the
    two miss, and the share of the other views' looks (frames where they found anyone)
    that show no one there (:func:`_unsupported`): two views' rays always pass near each
    other, so two different people, one in each view, can triangulate near the centre,
    but no third view shows a person at that point. Returns [(view, track), (view,
    track)] or None (no common frames)."""
    best = None
    tolerances = _tolerances(config, cams)
    views = [v for v in range(len(cand)) if cand[v]]
    for i, a in enumerate(views):
        for b in views[i + 1:]:
            for ta in cand[a]:
                mine = dict(ta)
                for tb in cand[b]:
                    common = [(t, mine[t], j) for t, j in tb if t in mine]
                    if not common:
                        continue
                    step = max(1, len(common) // 20)
                    dist, agree, lone = [], [], []
                    for t, ja, jb in common[::step]:
                        ba, bb = full(a, t, ja), full(b, t, jb)
                        agree.append(_pair_cost(cams, a, ba, b, bb))
                        mid = np.stack([(ba[:2] + ba[2:]) / 2, (bb[:2] + bb[2:]) / 2])
                        x = _triangulate([cams[a], cams[b]], mid)
                        dist.append(np.linalg.norm(x - centre) / config.person_height_mm)
                        lone += _unsupported(cams, full, people, t, x, {a: ba, b: bb},
                                             (a, b), tolerances)
                    miss = 1.0 - (len(ta) + len(tb)) / (2.0 * max(num_frames, 1))
                    cost = float(np.median(dist) + np.median(agree) + miss
                                 + (np.mean(lone) if lone else 0.0))
                    if np.isfinite(cost) and (best is None or cost < best[0]):
                        best = (cost, [(a, ta), (b, tb)])
    return None if best is None else best[1]


def _unsupported(cams, full, people, t: int, x: np.ndarray, boxes: dict,
                 exclude: tuple, tolerances: tuple) -> list:
    """Per view outside ``exclude`` that found anyone in frame ``t``: 1.0 when none of
    its people is a view of a person at world point ``x`` with the box size of
    ``boxes`` ({view: full-pixel box}) within the multi-view tolerance (``tolerances``,
    from :func:`_tolerances`), else 0.0."""
    sizes = [_size_3d(cams[v], bx, x) for v, bx in boxes.items()
             if cams[v].world_to_camera(x)[2] > 0]
    if not sizes:
        return []
    size = float(np.median(sizes))
    tol_of, size_tolerance = tolerances
    out = []
    for u in range(len(people)):
        if u in exclude or not people[u][t]:
            continue
        if cams[u].world_to_camera(x)[2] <= 0:
            continue
        tol = tol_of(u, x)
        errs = [_disagreement(cams[u], full(u, t, j), x, size, tol, size_tolerance)
                for j in range(len(people[u][t]))]
        out.append(float(min(errs) > 1.0))
    return out


def _consistent_tracks(config, cams, scalers, people, ranked, costs,
                       centre: Optional[np.ndarray] = None) -> list:
    """One track per view, consistent across views. The anchor: with ``subject="centre"``
    and a capture centre, the pair of views' tracks of :func:`_subject_pair`, else the
    best-ranked track of all (lowest cost); each other view (best first) takes, among its 4
    best-ranked tracks, the one that best agrees with the views chosen so far."""
    def full(v, t, j):
        return scalers[v].to_full(people[v][t][j].box.reshape(2, 2)).ravel()

    longest = [max((len(tr) for tr in r), default=0) for r in ranked]
    cand = [[tr for tr in r[:4] if len(tr) >= min(config.min_track_frames, n)]
            for r, n in zip(ranked, longest)]
    first_cost = [min((c for tr, c in zip(r, cs) if tr in cand[v]), default=np.inf)
                  for v, (r, cs) in enumerate(zip(ranked, costs))]
    views = [v for v in range(len(cand)) if cand[v]]
    if not views:
        return [None] * len(cand)
    views.sort(key=lambda v: (first_cost[v], v))
    picks = [None] * len(cand)
    anchor = None
    if config.subject == "centre" and centre is not None:
        anchor = _subject_pair(config, cams, full, cand, centre, len(people[0]), people)
    if anchor is None:
        anchor = [(views[0], cand[views[0]][0])]
    for v, tr in anchor:
        picks[v] = tr
    for v in views:
        if picks[v] is not None:
            continue
        best = None
        for tr in cand[v]:
            mine = dict(tr)
            costs = []
            for u, other in enumerate(picks):
                if other is None:
                    continue
                common = [(t, j) for t, j in other if t in mine]
                step = max(1, len(common) // 20)  # 20 frames tell agreement apart
                costs += [_pair_cost(cams, u, full(u, t, j), v, full(v, t, mine[t]))
                          for t, j in common[::step]]
            cost = float(np.median(costs)) if costs else np.inf
            if best is None or cost < best[0]:
                best = (cost, tr)
        picks[v] = best[1] if np.isfinite(best[0]) else cand[v][0]
    return picks


def _multiview(config, cameras, scalers, people, chosen, tight, source, notes, name) -> list:
    """Replaces boxes that disagree with the other views (in place); returns the
    consensus box sizes (mm) of the frames that had one."""
    cams = list(cameras)
    sizes: list = []
    if not _calibrated_like(cams, scalers, notes):
        return sizes
    tol_of, size_tolerance = _tolerances(config, cams)
    num_views, num_frames = chosen.shape
    switched = np.zeros(num_views, int)
    projected = np.zeros(num_views, int)
    for t in range(num_frames):
        have = {v: tight[v, t] for v in range(num_views) if chosen[v, t] >= 0}
        if len(have) < 2:
            continue
        found = _consensus(cams, have, tol_of, size_tolerance)
        if found is None:
            continue
        agreed, x, size = found
        sizes.append(size)
        for v in range(num_views):
            if v in agreed:
                continue
            box, _ = _project_box(cams, agreed, v)
            if box is None:  # The consensus lies behind this camera.
                continue
            best = None
            for j, p in enumerate(people[v][t]):
                pb = scalers[v].to_full(p.box.reshape(2, 2)).ravel()
                err = _disagreement(cams[v], pb, x, size, tol_of(v, x), size_tolerance)
                # Another detection must agree twice as well as the consensus' own views
                # need to: where the subject is not detected, a person passing in front of
                # or behind them lies near the same ray (measured: the bystander).
                if err <= _SWITCH and (best is None or err < best[0]):
                    best = (err, j, pb)
            if best is not None:
                if chosen[v, t] != best[1]:
                    switched[v] += 1
                chosen[v, t], tight[v, t], source[v, t] = best[1], best[2], DETECTED
            else:
                chosen[v, t], tight[v, t], source[v, t] = -1, box, PROJECTED
                projected[v] += 1
    for v in range(num_views):
        if switched[v] or projected[v]:
            msg = (f"view {cams[v].camera_id}: {switched[v]} frame(s) took another detection "
                   f"and {projected[v]} the projection of the other views' consensus")
            notes.append(msg)
            log.info("%s: %s", name or "take", msg)
    return sizes
