"""Face tracks: link a video's per-frame face boxes over time, then score the video by its most-fake track.

Why: pooling every crop of a video into one aggregation lets a real face dilute a swapped one (two
people, one face swapped). Tracks keep each face's crops together, so the ``evaluate`` aggregation
(DFDC-1st's confident strategy) runs within one face and the video takes its most-fake face. Tracks
also carry boxes to sampled frames where the detector did not run (``detect every k-th frame``), and say
where they cannot (``unlinked_gaps``: there the frames between are detected too).

Pure numpy (+ scipy's Hungarian matching): no frames, no models, so every rule here is unit-testable.
Tunables (IoU threshold, gap, share) come from ``params.yaml`` through the caller; none has a default here.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

BOX_COLUMNS = 5  # x1, y1, x2, y2, detector score


@dataclass
class Track:
    """One face over time: the detections linked to it, in time order.

    ``detections[j] = (slot, face)``: ``slot`` is the frame's position in the sampled-frame list,
    ``face`` the row of that frame's detector boxes; ``boxes[j]`` is that row (a copy, so callers need
    not keep the detector output around to crop or interpolate).
    """

    id: int
    detections: list[tuple[int, int]]
    boxes: list[np.ndarray] = field(default_factory=list)

    def slots(self) -> list[int]:
        """Sampled-frame slots where this track was detected (increasing)."""
        return [slot for slot, _ in self.detections]

    def __len__(self) -> int:
        return len(self.detections)


def _as_boxes(boxes: np.ndarray, position: int) -> np.ndarray:
    """Validate one frame's detector output; an empty array of any shape means 'no face'."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, BOX_COLUMNS))
    if array.ndim != 2 or array.shape[1] != BOX_COLUMNS:
        raise ValueError(
            f"frame_boxes[{position}] has shape {array.shape}; expected (n, {BOX_COLUMNS}) rows [x1, y1, x2, y2, score]"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"frame_boxes[{position}] holds non-finite values")
    return array


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(n, >=4)`` and ``(m, >=4)`` boxes; a pair with zero union (zero-area boxes) has IoU 0."""
    a, b = np.asarray(a, dtype=np.float64)[:, None, :4], np.asarray(b, dtype=np.float64)[None, :, :4]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def import_in_background() -> threading.Thread:
    """Start importing scipy's assignment solver (half a second) on a daemon thread: a video prepared in the
    predict process itself decodes and detects meanwhile, which release the GIL, and ``link_tracks``'s own
    import then finds the module loaded (or waits for the one under way: Python's import lock)."""
    thread = threading.Thread(target=importlib.import_module, args=("scipy.optimize",), daemon=True)
    thread.start()
    return thread


def link_tracks(
    frame_boxes: Sequence[np.ndarray],
    iou_threshold: float,
    max_gap: int,
    slots: Sequence[int] | None = None,
) -> list[Track]:
    """Link per-frame detector boxes into tracks (Hungarian matching on IoU, frame by frame).

    ``frame_boxes[i]`` is the ``(n_i, 5)`` detector output of the i-th frame the detector ran on, in
    time order; ``slots[i]`` is that frame's slot in the sampled-frame list (default ``i``: the detector
    ran on every sampled frame). Each frame's boxes are matched to the live tracks by the IoU with the
    track's last box; a pair needs IoU > 0 and >= ``iou_threshold``. Matching maximises total IoU, so
    two faces that pass close to each other keep their identities better than greedy matching would.
    A track missing from more than ``max_gap`` consecutive detector frames ends (gaps count detector
    runs, not sampled frames, so ``max_gap`` means the same whatever ``detect_every`` is); a box left
    unmatched starts a new track. Deterministic: scipy's assignment is, and track ids follow creation
    order (frame, then box row). Limitation: there is no motion model, so two faces of the same size
    that swap places between two detector frames can swap tracks; faces at different depths (sizes)
    crossing, or overlapping faces that stay put, keep theirs.
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")
    slots = list(range(len(frame_boxes))) if slots is None else [int(s) for s in slots]
    if len(slots) != len(frame_boxes):
        raise ValueError(f"{len(slots)} slots for {len(frame_boxes)} frames of boxes")
    if any(later <= earlier for earlier, later in pairwise(slots)):
        raise ValueError("slots must be strictly increasing (frames in time order)")

    from scipy.optimize import linear_sum_assignment  # here: scipy.optimize is half a second of predict's start

    tracks: list[Track] = []
    last_seen: list[int] = []  # per track: index i of the detector frame it was last matched in
    for i, (slot, raw) in enumerate(zip(slots, frame_boxes, strict=True)):
        boxes = _as_boxes(raw, i)
        live = [t for t in range(len(tracks)) if i - last_seen[t] - 1 <= max_gap]
        matched: set[int] = set()
        if live and len(boxes):
            iou = iou_matrix(np.stack([tracks[t].boxes[-1] for t in live]), boxes)
            rows, cols = linear_sum_assignment(iou, maximize=True)
            for r, c in zip(rows, cols, strict=True):
                if iou[r, c] > 0 and iou[r, c] >= iou_threshold:
                    track = tracks[live[r]]
                    track.detections.append((slot, int(c)))
                    track.boxes.append(boxes[c].copy())
                    last_seen[live[r]] = i
                    matched.add(int(c))
        for face in range(len(boxes)):
            if face not in matched:
                tracks.append(Track(id=len(tracks), detections=[(slot, face)], boxes=[boxes[face].copy()]))
                last_seen.append(i)
    return tracks


def track_of(tracks: Iterable[Track]) -> dict[tuple[int, int], int]:
    """``(slot, face) -> track id`` for every detection, so the caller can label each crop with its track."""
    return {detection: track.id for track in tracks for detection in track.detections}


def carry_boxes(tracks: Iterable[Track], skipped_slots: Iterable[int]) -> dict[int, list[tuple[int, np.ndarray]]]:
    """Boxes for sampled frames the detector skipped: per slot, ``(track id, box)`` for each track spanning it.

    A track spans slot ``s`` when it was detected before and after ``s``; its box there is the linear
    interpolation (all five columns, score included) between the two detections around ``s``. No
    extrapolation: before a track's first or after its last detection it has no box, because a face
    that left the shot or a detection that ended would otherwise be cropped from the background.
    (Skipped frames after the video's last detector frame therefore get no boxes; make the last sampled
    frame a detector frame to avoid that.) Every requested slot is a key, with ``[]`` where no track spans it.
    """
    carried: dict[int, list[tuple[int, np.ndarray]]] = {int(s): [] for s in skipped_slots}
    for track in tracks:
        detected = track.slots()
        for slot, out in carried.items():
            if not detected or not detected[0] < slot < detected[-1]:
                if slot in detected:
                    raise ValueError(f"slot {slot} is listed as skipped but track {track.id} was detected there")
                continue
            after = int(np.searchsorted(detected, slot))
            if detected[after] == slot:
                raise ValueError(f"slot {slot} is listed as skipped but track {track.id} was detected there")
            before = after - 1
            weight = (slot - detected[before]) / (detected[after] - detected[before])
            box = (1.0 - weight) * track.boxes[before] + weight * track.boxes[after]
            out.append((track.id, box))
    return carried


def unlinked_gaps(tracks: Iterable[Track], detected_slots: Iterable[int]) -> list[tuple[int, int]]:
    """Consecutive detector slots ``(a, b)`` whose frames between cannot be carried: no face at either end,
    or a face whose track does not cross the gap (detected at ``a`` with no detection of its track at ``b``,
    or the other way round).

    Carrying boxes is only sound across a gap every face's track crosses. Elsewhere (a face that moved
    further than its own size, entered, left, or was missed at one end; or no face known at all, where one
    the detector scores near its thresholds may show in the frames between) those frames have to be
    detected, or a face the detector would find there gets no box.
    """
    present = [set(track.slots()) for track in tracks]
    return [
        (a, b)
        for a, b in pairwise(sorted(detected_slots))
        if any((a in s) != (b in s) for s in present) or not any(a in s for s in present)
    ]


def _centres(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, :2] + boxes[:, 2:4]) / 2


def _sides(boxes: np.ndarray) -> np.ndarray:
    """A box's side: the square root of its area (a face box is about square)."""
    return np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None))


def _centred(boxes: np.ndarray) -> np.ndarray:
    """The boxes moved so that each one's centre is at the origin (their size and shape kept)."""
    half_w, half_h = (boxes[:, 2] - boxes[:, 0]) / 2, (boxes[:, 3] - boxes[:, 1]) / 2
    return np.stack([-half_w, -half_h, half_w, half_h], axis=1)


def bridge_gap(
    before: np.ndarray, after: np.ndarray, a: int, b: int, slots: Sequence[int], iou_threshold: float, max_shift: float
) -> dict[int, np.ndarray] | None:
    """Boxes for ``slots`` between detector slots ``a`` and ``b`` that IoU could not link (``unlinked_gaps``), where
    the faces detected at ``a`` (``before``) and at ``b`` (``after``) pair up one to one by motion: each pair of
    similar size and shape (IoU >= ``iou_threshold`` once centred on each other) with its centre moved at most
    ``max_shift`` face sides (the mean of the two boxes' sides) per sampled frame. Then each slot gets every
    pair's box interpolated as ``carry_boxes`` does, in ``before``'s order; otherwise (no face, an unequal count,
    a face too far or too unlike) None: the frames between have to be detected.

    Why: a small or fast face moves more than its own size between two detections, so IoU links nothing,
    though one face at each end is there. These boxes are a hypothesis only; the caller has them confirmed
    (O-Net, ``FaceDetector.refine``) before using them. Pairs are chosen by scipy's assignment on centre
    distance (least total movement).
    """
    if not b > a:
        raise ValueError(f"slot b ({b}) must come after slot a ({a})")
    if any(not a < s < b for s in slots):
        raise ValueError(f"slots {list(slots)} must lie strictly between {a} and {b}")
    first, last = _as_boxes(before, 0), _as_boxes(after, 1)
    if not len(first) or len(first) != len(last):
        return None
    from scipy.optimize import linear_sum_assignment

    distance = np.linalg.norm(_centres(first)[:, None] - _centres(last)[None], axis=2)
    sides = (_sides(first)[:, None] + _sides(last)[None]) / 2
    allowed = (distance <= max_shift * (b - a) * sides) & (iou_matrix(_centred(first), _centred(last)) >= iou_threshold)
    # a pair not allowed costs more than every allowed pair together: chosen only when no full pairing avoids it
    rows, cols = linear_sum_assignment(np.where(allowed, distance, distance.sum() + 1.0))
    if not allowed[rows, cols].all():
        return None
    out = {}
    for slot in slots:
        weight = (slot - a) / (b - a)
        out[int(slot)] = (1.0 - weight) * first[rows] + weight * last[cols]
    return out


@dataclass(frozen=True)
class TrackScores:
    """A video's track-level scores.

    ``probability`` is the video's P(fake): the score of track ``decided_by``. ``tracks`` holds each
    track's member-mean score, ``members`` each member's score per track, ``crops`` each track's crop
    count and ``eligible`` the tracks long enough to decide (see ``score_tracks``).
    """

    probability: float
    decided_by: int
    tracks: dict[int, float]
    members: dict[str, dict[int, float]]
    crops: dict[int, int]
    eligible: tuple[int, ...]

    def member_probabilities(self) -> dict[str, float]:
        """Each member's score of the deciding track (what predict reports per member)."""
        return {m: scores[self.decided_by] for m, scores in self.members.items()}


def score_tracks(
    crop_tracks: Sequence[int],
    member_probs: Mapping[str, np.ndarray],
    aggregation: Callable[[np.ndarray], float],
    min_share: float,
) -> TrackScores:
    """Score a video by its most-fake track.

    ``crop_tracks[i]`` is the track id of crop ``i`` (detected, via ``track_of``, or carried, via
    ``carry_boxes``) and ``member_probs[m][i]`` ensemble member ``m``'s P(fake) for it. Order:
    ``aggregation`` (the ``evaluate`` one) over each track's crops per member -> mean over members per
    track -> max over eligible tracks. A track is eligible when it has at least ``min_share`` times the
    crops of the longest track, so a one-frame false positive on the background cannot decide the
    video while a real face is tracked. Ties go to the lowest track id; a non-finite track score wins
    the max (``np.argmax``) so the caller's finiteness check sees it.
    """
    if not 0.0 <= min_share <= 1.0:
        raise ValueError(f"min_share must be in [0, 1], got {min_share}")
    if not member_probs:
        raise ValueError("no ensemble members' probabilities to score")
    owners = np.asarray(crop_tracks, dtype=np.int64).reshape(-1)
    if not owners.size:
        raise ValueError("no crops to score")
    probs = {m: np.asarray(p, dtype=np.float64).reshape(-1) for m, p in member_probs.items()}
    for m, p in probs.items():
        if len(p) != len(owners):
            raise ValueError(f"member {m!r} has {len(p)} probabilities for {len(owners)} crops")

    ids = [int(t) for t in np.unique(owners)]  # sorted: the tie order
    crops = {t: int((owners == t).sum()) for t in ids}
    members = {m: {t: float(aggregation(p[owners == t])) for t in ids} for m, p in probs.items()}
    tracks = {t: float(np.mean([members[m][t] for m in members])) for t in ids}
    longest = max(crops.values())
    eligible = tuple(t for t in ids if crops[t] >= min_share * longest) or tuple(ids)
    best = eligible[int(np.argmax([tracks[t] for t in eligible]))]
    return TrackScores(
        probability=tracks[best], decided_by=best, tracks=tracks, members=members, crops=crops, eligible=eligible
    )
