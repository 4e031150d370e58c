"""Face tracks: linking boxes over frames, carrying boxes to skipped frames, scoring by the most-fake track."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfake.modeling.metrics import ConfidentStrategy
from deepfake.modeling.tracks import (
    Track,
    bridge_gap,
    carry_boxes,
    iou_matrix,
    link_tracks,
    score_tracks,
    track_of,
    unlinked_gaps,
)

LEFT = [10.0, 10.0, 60.0, 60.0, 0.99]
RIGHT = [200.0, 10.0, 250.0, 60.0, 0.98]
CONFIDENT = ConfidentStrategy(threshold=0.8, min_fakes=11, min_fake_divisor=2.5, low=0.2, low_fraction=0.9)


def boxes(*rows: list[float]) -> np.ndarray:
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def shifted(box: list[float], dx: float) -> list[float]:
    return [box[0] + dx, box[1], box[2] + dx, box[3], box[4]]


def link(frames: list[np.ndarray], **kwargs) -> list[Track]:
    options = {"iou_threshold": 0.3, "max_gap": 2} | kwargs
    return link_tracks(frames, **options)


# ---- link_tracks -----------------------------------------------------------------------------------


def test_two_faces_give_two_tracks_with_their_detections():
    # The right face comes first in odd frames: identity must follow position, not row order.
    frames = [boxes(LEFT, RIGHT) if i % 2 == 0 else boxes(RIGHT, LEFT) for i in range(10)]
    tracks = link(frames)
    assert len(tracks) == 2
    assert tracks[0].detections == [(i, 0 if i % 2 == 0 else 1) for i in range(10)]
    assert tracks[1].detections == [(i, 1 if i % 2 == 0 else 0) for i in range(10)]
    np.testing.assert_array_equal(np.stack(tracks[0].boxes), np.tile(LEFT, (10, 1)))
    assert tracks[0].slots() == list(range(10))


def test_slowly_moving_face_stays_one_track():
    frames = [boxes(shifted(LEFT, 5.0 * i)) for i in range(10)]
    assert [len(t) for t in link(frames)] == [10]


def test_gap_within_max_gap_keeps_the_track():
    frames = [boxes(LEFT)] * 3 + [boxes()] * 2 + [boxes(LEFT)] * 3
    tracks = link(frames, max_gap=2)
    assert len(tracks) == 1
    assert tracks[0].slots() == [0, 1, 2, 5, 6, 7]


def test_gap_beyond_max_gap_starts_a_new_track():
    frames = [boxes(LEFT)] * 3 + [boxes()] * 3 + [boxes(LEFT)] * 3
    tracks = link(frames, max_gap=2)
    assert [t.slots() for t in tracks] == [[0, 1, 2], [6, 7, 8]]
    assert [t.id for t in tracks] == [0, 1]


def test_max_gap_zero_ends_a_track_at_the_first_miss():
    tracks = link([boxes(LEFT), boxes(), boxes(LEFT)], max_gap=0)
    assert [t.slots() for t in tracks] == [[0], [2]]


def test_crossing_faces_keep_identity():
    # A near (large) face walks right through a far (small) one walking left: they overlap for
    # several frames, but each box overlaps its own previous box far more than the other face's.
    near, far = [0.0, 50.0, 100.0, 150.0, 0.99], [200.0, 80.0, 240.0, 120.0, 0.95]
    frames = [boxes(shifted(far, -15.0 * i), shifted(near, 10.0 * i)) for i in range(12)]
    assert iou_matrix(frames[6][:1], frames[6][1:])[0, 0] > 0  # they do overlap mid-way
    tracks = link(frames, iou_threshold=0.3)
    assert [t.detections for t in tracks] == [[(i, 0) for i in range(12)], [(i, 1) for i in range(12)]]


def test_overlapping_boxes_in_one_frame_are_separate_tracks():
    frames = [boxes(LEFT, shifted(LEFT, 10.0))] * 4
    tracks = link(frames)
    assert [t.detections for t in tracks] == [[(i, 0) for i in range(4)], [(i, 1) for i in range(4)]]


def test_low_overlap_does_not_link():
    tracks = link([boxes(LEFT), boxes(shifted(LEFT, 40.0))], iou_threshold=0.3)
    assert len(tracks) == 2


def test_empty_inputs():
    assert link([]) == []
    assert link([boxes(), np.zeros(0), np.zeros((0, 5))]) == []


def test_zero_area_boxes_never_link_but_are_tracked():
    point = [5.0, 5.0, 5.0, 5.0, 0.5]
    tracks = link([boxes(point), boxes(point)], iou_threshold=0.0)
    assert [t.detections for t in tracks] == [[(0, 0)], [(1, 0)]]
    assert iou_matrix(boxes(point), boxes(point))[0, 0] == 0.0


def test_slots_map_detector_frames_to_sampled_frames():
    tracks = link([boxes(LEFT), boxes(LEFT), boxes(LEFT)], slots=[0, 3, 6])
    assert tracks[0].slots() == [0, 3, 6]


@pytest.mark.parametrize(
    ("frames", "kwargs", "message"),
    [
        ([np.zeros((2, 4))], {}, r"frame_boxes\[0\] has shape \(2, 4\)"),
        ([boxes(LEFT), np.zeros(5)], {}, r"frame_boxes\[1\] has shape \(5,\)"),
        ([np.zeros((1, 2, 5))], {}, "expected"),
        ([boxes([0, 0, np.nan, 1, 1])], {}, "non-finite"),
        ([boxes(LEFT)], {"iou_threshold": 1.5}, "iou_threshold"),
        ([boxes(LEFT)], {"max_gap": -1}, "max_gap"),
        ([boxes(LEFT), boxes(LEFT)], {"slots": [0]}, "slots"),
        ([boxes(LEFT), boxes(LEFT)], {"slots": [3, 3]}, "increasing"),
    ],
)
def test_bad_input_raises_clearly(frames, kwargs, message):
    with pytest.raises(ValueError, match=message):
        link(frames, **kwargs)


def test_deterministic():
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(12):
        n = int(rng.integers(0, 4))
        xy = rng.uniform(0, 100, size=(n, 2))
        frames.append(np.column_stack([xy, xy + 40, rng.uniform(0.9, 1, size=n)]))
    first, second = link(frames), link([f.copy() for f in frames])
    assert [(t.id, t.detections) for t in first] == [(t.id, t.detections) for t in second]


def test_track_of_maps_every_detection():
    tracks = link([boxes(LEFT, RIGHT), boxes(RIGHT)])
    assert track_of(tracks) == {(0, 0): 0, (0, 1): 1, (1, 0): 1}


box_rows = st.lists(
    st.tuples(st.floats(0, 200), st.floats(0, 200), st.floats(0, 60), st.floats(0, 60), st.floats(0, 1)).map(
        lambda r: [r[0], r[1], r[0] + r[2], r[1] + r[3], r[4]]
    ),
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(box_rows, max_size=8), st.floats(0, 1), st.integers(0, 3))
def test_every_detection_belongs_to_exactly_one_track(rows, iou_threshold, max_gap):
    frames = [boxes(*r) for r in rows]
    tracks = link(frames, iou_threshold=iou_threshold, max_gap=max_gap)
    found = sorted(d for t in tracks for d in t.detections)
    assert found == sorted((i, j) for i, f in enumerate(frames) for j in range(len(f)))
    for t in tracks:  # one box per frame per track, in time order
        assert t.slots() == sorted(set(t.slots()))
    assert [t.id for t in tracks] == list(range(len(tracks)))


# ---- carry_boxes -----------------------------------------------------------------------------------


def test_interpolation_gives_the_midpoint_between_detections():
    tracks = link([boxes(LEFT), boxes(shifted(LEFT, 20.0))], slots=[0, 2])
    carried = carry_boxes(tracks, [1])
    assert list(carried) == [1]
    [(track_id, box)] = carried[1]
    assert track_id == 0
    np.testing.assert_allclose(box, shifted(LEFT, 10.0))


def test_interpolation_weights_by_distance_and_covers_each_spanning_track():
    tracks = link([boxes(LEFT, RIGHT), boxes(shifted(LEFT, 15.0), RIGHT)], slots=[0, 3])
    carried = carry_boxes(tracks, [1, 2])
    np.testing.assert_allclose(carried[1][0][1], shifted(LEFT, 5.0))
    np.testing.assert_allclose(carried[2][0][1], shifted(LEFT, 10.0))
    assert [tid for tid, _ in carried[2]] == [0, 1]


def test_no_extrapolation_beyond_a_tracks_detections():
    tracks = link([boxes(LEFT), boxes(LEFT), boxes()], slots=[2, 4, 6])
    assert carry_boxes(tracks, [0, 1, 3, 5, 7]) == {0: [], 1: [], 3: [(0, pytest.approx(LEFT))], 5: [], 7: []}


def test_carry_rejects_a_detected_slot():
    tracks = link([boxes(LEFT), boxes(LEFT), boxes(LEFT)], slots=[0, 2, 4])
    for slot in (0, 2, 4):
        with pytest.raises(ValueError, match="skipped"):
            carry_boxes(tracks, [slot])


def test_carry_with_no_tracks_or_slots():
    assert carry_boxes([], [1, 2]) == {1: [], 2: []}
    assert carry_boxes(link([boxes(LEFT)]), []) == {}


# ---- score_tracks ----------------------------------------------------------------------------------


# ---- unlinked_gaps: where boxes may not be carried -----------------------------------------------------


def test_a_gap_every_face_crosses_is_carried():
    slots = [0, 2, 4]
    frames = [boxes(LEFT, RIGHT), boxes(shifted(LEFT, 4), shifted(RIGHT, 4)), boxes(shifted(LEFT, 8), RIGHT)]
    assert unlinked_gaps(link(frames, slots=slots), slots) == []


def test_a_face_that_enters_leaves_or_jumps_marks_its_gaps():
    slots = [0, 2, 4, 6]
    # RIGHT enters at slot 2; LEFT jumps further than its own size between 4 and 6 (a new track)
    frames = [boxes(LEFT), boxes(LEFT, RIGHT), boxes(LEFT, RIGHT), boxes(shifted(LEFT, 120), RIGHT)]
    assert unlinked_gaps(link(frames, slots=slots), slots) == [(0, 2), (4, 6)]


def test_a_gap_with_no_face_at_either_end_is_detected():
    """No face known on either side: a face near the detector's thresholds may show between."""
    slots = [0, 2, 4]
    assert unlinked_gaps(link([boxes(), boxes(), boxes(LEFT)], slots=slots), slots) == [(0, 2), (2, 4)]
    assert unlinked_gaps([], [0, 2]) == [(0, 2)]


# ---- bridge_gap: faces IoU cannot link, paired by motion ------------------------------------------------


def test_a_small_face_that_moved_further_than_its_size_is_bridged_by_interpolation():
    """50 px face, 120 px between detector slots 0 and 2: no overlap, but one face at each end, 1.2 sides a slot."""
    after = shifted(LEFT, 120)
    assert unlinked_gaps(link([boxes(LEFT), boxes(after)], slots=[0, 2]), [0, 2]) == [(0, 2)]
    bridged = bridge_gap(boxes(LEFT), boxes(after), 0, 2, [1], iou_threshold=0.3, max_shift=1.5)
    assert bridged is not None and list(bridged) == [1]
    np.testing.assert_allclose(bridged[1], boxes(shifted(LEFT, 60)))  # halfway, score included
    # slower than the face moved: not bridged
    assert bridge_gap(boxes(LEFT), boxes(after), 0, 2, [1], iou_threshold=0.3, max_shift=1.0) is None


def test_two_faces_pair_by_least_movement_whatever_their_order():
    before, after = boxes(LEFT, RIGHT), boxes(shifted(RIGHT, 60), shifted(LEFT, 60))
    bridged = bridge_gap(before, after, 0, 4, [1, 2, 3], iou_threshold=0.3, max_shift=1.0)
    assert bridged is not None
    np.testing.assert_allclose(bridged[2][:, :4], boxes(shifted(LEFT, 30), shifted(RIGHT, 30))[:, :4])
    np.testing.assert_allclose(bridged[1][0, 0], LEFT[0] + 15)


@pytest.mark.parametrize(
    ("before", "after", "why"),
    [
        (boxes(), boxes(), "no face at either end"),
        (boxes(LEFT), boxes(), "a face leaves"),
        (boxes(LEFT), boxes(LEFT, RIGHT), "a face enters"),
        (boxes(LEFT), boxes([400.0, 10.0, 450.0, 60.0, 0.9]), "too far for its size"),
        (boxes(LEFT), boxes([60.0, 10.0, 260.0, 210.0, 0.9]), "four times the size: another face"),
    ],
)
def test_what_cannot_be_bridged_is_left_to_the_detector(before, after, why):
    assert bridge_gap(before, after, 0, 2, [1], iou_threshold=0.1, max_shift=1.5) is None, why


def test_bridge_gap_refuses_slots_outside_its_gap():
    with pytest.raises(ValueError, match="strictly between"):
        bridge_gap(boxes(LEFT), boxes(LEFT), 0, 2, [2], iou_threshold=0.1, max_shift=1.0)
    with pytest.raises(ValueError, match="after"):
        bridge_gap(boxes(LEFT), boxes(LEFT), 2, 2, [], iou_threshold=0.1, max_shift=1.0)


def test_video_score_is_the_fake_tracks_score_not_the_pooled_one():
    # 8 frames, a fake face (0.9) and a real one (0.1): pooled, the 8 confident crops are too few
    # of 16 for the confident strategy (min_fakes 11), so the real face halves the score.
    tracks = link([boxes(LEFT, RIGHT)] * 8)
    owner = track_of(tracks)
    keys = [(slot, face) for slot in range(8) for face in range(2)]
    crop_tracks = [owner[k] for k in keys]
    probs = np.array([0.9 if owner[k] == 0 else 0.1 for k in keys])
    result = score_tracks(crop_tracks, {"a": probs}, CONFIDENT, min_share=0.25)
    assert result.decided_by == 0
    assert result.probability == pytest.approx(0.9)
    assert result.tracks == {0: pytest.approx(0.9), 1: pytest.approx(0.1)}
    assert result.eligible == (0, 1)
    assert result.crops == {0: 8, 1: 8}
    assert CONFIDENT(probs) == pytest.approx(0.5) == np.mean(probs)
    assert result.probability > np.mean(probs) + 0.3


def test_a_one_frame_spurious_track_does_not_decide_the_video():
    crop_tracks = [0] * 20 + [1]
    probs = np.array([0.3] * 20 + [1.0])
    result = score_tracks(crop_tracks, {"a": probs}, np.mean, min_share=0.25)
    assert result.decided_by == 0
    assert result.probability == pytest.approx(0.3)
    assert result.eligible == (0,)
    assert result.tracks[1] == pytest.approx(1.0)


def test_ensemble_order_aggregate_per_member_then_mean_then_max():
    # Track 0: members 0.8 and 0.2 -> 0.5; track 1: 0.6 and 0.6 -> 0.6 (a per-member max would say 0.8).
    crop_tracks = [0, 0, 1, 1]
    member_probs = {"a": np.array([0.8, 0.8, 0.6, 0.6]), "b": np.array([0.2, 0.2, 0.6, 0.6])}
    result = score_tracks(crop_tracks, member_probs, np.mean, min_share=0.5)
    assert result.decided_by == 1
    assert result.probability == pytest.approx(0.6)
    assert result.members == {"a": {0: 0.8, 1: 0.6}, "b": {0: 0.2, 1: 0.6}}
    assert result.member_probabilities() == {"a": pytest.approx(0.6), "b": pytest.approx(0.6)}


def test_ties_go_to_the_lowest_track_id_and_nan_surfaces():
    assert score_tracks([2, 0], {"a": np.array([0.5, 0.5])}, np.mean, min_share=0.0).decided_by == 0
    result = score_tracks([0, 1], {"a": np.array([0.9, np.nan])}, np.mean, min_share=0.0)
    assert np.isnan(result.probability)


@pytest.mark.parametrize(
    ("crop_tracks", "member_probs", "min_share", "message"),
    [
        ([], {"a": np.zeros(0)}, 0.25, "no crops"),
        ([0], {}, 0.25, "members"),
        ([0, 0], {"a": np.zeros(3)}, 0.25, "3 probabilities for 2 crops"),
        ([0], {"a": np.zeros(1)}, 1.5, "min_share"),
    ],
)
def test_score_bad_input_raises(crop_tracks, member_probs, min_share, message):
    with pytest.raises(ValueError, match=message):
        score_tracks(crop_tracks, member_probs, np.mean, min_share=min_share)
