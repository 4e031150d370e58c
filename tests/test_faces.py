import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepfake.core.errors import ParamsError
from deepfake.media import mtcnn
from deepfake.media.faces import (
    BoxesFileError,
    DetectorConfig,
    FaceDetector,
    boxes_to_json,
    detection_scale,
    load_boxes,
    pick_central_face,
    save_boxes,
)
from tests.conftest import FACES, as_params, tiny_params

RULE = [[299, 2.0], [1000, 1.0], [1900, 0.5], [100000, 0.33]]
# MTCNN's published cascade settings, as params.yaml holds them (checked below)
PUBLISHED = {"pyramid_factor": 0.709, "nms_thresholds": (0.5, 0.7, 0.7, 0.7)}


def test_params_yaml_keeps_mtcnns_published_cascade_settings(tmp_path: Path) -> None:
    params = as_params(tiny_params(tmp_path))
    for section in (params.bboxes, params.landmarks, params.predict_detector):
        config = DetectorConfig.from_section(section)
        assert (config.pyramid_factor, config.nms_thresholds) == tuple(PUBLISHED.values())


@pytest.mark.parametrize(
    "size, scale",
    [
        ((320, 180), 2.0),
        ((640, 360), 1.0),
        ((1280, 720), 1.0),
        ((1920, 1200), 0.5),
        ((1920, 1080), 0.5),
        ((1080, 1920), 0.5),
        ((3840, 2160), 0.33),
        ((1000, 1000), 1.0),
    ],
)
def test_detection_scale_follows_the_shorter_side(size: tuple[int, int], scale: float) -> None:
    assert detection_scale(*size, RULE) == scale


def test_detection_scale_override_and_bad_values(tmp_path: Path) -> None:
    assert detection_scale(1920, 1080, RULE, 0.25) == 0.25
    for bad in (0, -1, float("nan")):
        with pytest.raises(ParamsError, match=r"bboxes\.scale"):
            detection_scale(1920, 1080, RULE, bad)
    with pytest.raises(ParamsError, match=r"bboxes\.scale"):  # the schema refuses it first; direct callers too
        detection_scale(1920, 1080, RULE, "fast")
    for bad in (0, -1, "fast"):
        with pytest.raises(ParamsError, match="scale"):
            as_params(tiny_params(tmp_path, bboxes__scale=bad))
    with pytest.raises(ParamsError, match="no row"):
        detection_scale(5000, 5000, [[1000, 1.0]])


def test_pick_central_face() -> None:
    boxes = np.array([[0, 0, 10, 10, 0.99], [40, 40, 60, 60, 0.9]], np.float32)
    assert pick_central_face(boxes, 100, 100) == 1
    assert pick_central_face(np.zeros((0, 5), np.float32), 100, 100) is None


def test_boxes_file_round_trip(tmp_path: Path) -> None:
    frames = {8: np.array([[1.234, 2, 30.5, 40, 0.99991]], np.float32), 0: np.zeros((0, 5), np.float32)}
    save_boxes(tmp_path / "v.json", boxes_to_json("v.mp4", 640, 360, 1.0, frames))
    loaded = load_boxes(tmp_path / "v.json")
    assert loaded.width == 640 and loaded.height == 360 and loaded.faces == 1
    assert list(loaded.frames) == [0, 8]
    assert loaded.frames[8][0] == [1.23, 2.0, 30.5, 40.0, 0.9999]


@pytest.mark.parametrize(
    "content",
    [
        "nope",
        json.dumps([]),
        json.dumps({"format": 99, "width": 1, "height": 1, "frames": {}}),
        json.dumps({"format": 1, "width": -1, "height": 1, "frames": {}}),
        json.dumps({"format": 1, "width": 1, "height": 1, "frames": []}),
        json.dumps({"format": 1, "width": 1, "height": 1, "frames": {"x": []}}),
        json.dumps({"format": 1, "width": 1, "height": 1, "frames": {"0": [[1, 2, 3]]}}),
        json.dumps({"format": 1, "width": 1, "height": 1, "frames": {"0": [[1, 2, 3, 4, "a"]]}}),
        json.dumps({"format": 1, "width": 1, "height": 1, "frames": {"0": [[1, 2, 3, 4, True]]}}),
    ],
)
def test_malformed_boxes_files_are_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / "v.json").write_text(content)
    with pytest.raises(BoxesFileError):
        load_boxes(tmp_path / "v.json")


def test_detector_maps_boxes_back_to_full_resolution() -> None:
    image = cv2.cvtColor(cv2.imread(str(FACES / "grace_hopper.jpg")), cv2.COLOR_BGR2RGB)
    detector = FaceDetector(
        DetectorConfig(
            thresholds=(0.6, 0.7, 0.7), min_face_size=20, min_face_share=0.0, runtime="onnx", device="cpu", **PUBLISHED
        )
    )
    (full,) = detector.detect([image], scale=1.0)
    (half,) = detector.detect([image], scale=0.5)
    assert full.shape[1] == 5 and len(full) >= 1 and len(half) >= 1
    # the box found on the half-size frame, mapped back, lands on the full-size box
    assert np.abs(full[0, :4] - half[0, :4]).max() < 0.08 * (full[0, 2] - full[0, 0])
    boxes, points = detector.landmarks(image)
    assert points.shape == (len(boxes), 5, 2)
    blank = np.zeros((120, 160, 3), np.uint8)
    assert detector.detect([blank])[0].shape == (0, 5)
    assert detector.landmarks(blank)[1].shape == (0, 5, 2)


def _detector(**changes: object) -> FaceDetector:
    config = {"thresholds": (0.6, 0.7, 0.7), "min_face_size": 20, "min_face_share": 0.0, "runtime": "onnx", **PUBLISHED}
    return FaceDetector(DetectorConfig(**{**config, **changes, "device": "cpu"}))  # type: ignore[arg-type]


def test_frames_smaller_than_the_smallest_face_have_no_faces_not_a_crash() -> None:
    """MTCNN's pyramid is empty for them (facenet-pytorch died with torch.cat of an empty list)."""
    detector = _detector()
    for side in (1, 2, 8, 19):
        frame = np.full((side, side, 3), 128, np.uint8)
        assert detector.detect([frame, frame])[0].shape == (0, 5)
        assert detector.landmarks(frame)[0].shape == (0, 5)


def test_the_face_share_bounds_the_pyramid_and_what_it_finds() -> None:
    from deepfake.media.mtcnn import pyramid_scales

    image = cv2.cvtColor(cv2.imread(str(FACES / "grace_hopper.jpg")), cv2.COLOR_BGR2RGB)
    height, width = image.shape[:2]
    config = DetectorConfig((0.6, 0.7, 0.7), 20, 0.2, "onnx", "cpu", **PUBLISHED)  # type: ignore[arg-type]
    assert config.min_size(width, height) == 0.2 * min(width, height)
    bounded = pyramid_scales(height, width, 20, config.pyramid_factor, config.min_size(width, height))
    full = pyramid_scales(height, width, 20, config.pyramid_factor)
    assert len(bounded) < len(full) and bounded == full[len(full) - len(bounded) :]  # the same grid, finest dropped
    (found,) = _detector(min_face_share=0.2).detect([image])
    assert len(found) >= 1 and (found[0, 2] - found[0, 0]) >= 0.2 * min(width, height)
    (unbounded,) = _detector().detect([image])
    np.testing.assert_allclose(found[0], unbounded[0], atol=1e-3)  # a face above the bound: found as before


def test_the_cascade_agrees_with_facenet_pytorch_and_across_runtimes() -> None:
    """Same weights, same cascade: boxes match facenet-pytorch's MTCNN.detect up to resampling."""
    from facenet_pytorch import MTCNN

    from deepfake.modeling.tracks import iou_matrix

    image = cv2.cvtColor(cv2.imread(str(FACES / "t1_person2.jpg")), cv2.COLOR_BGR2RGB)
    reference, _ = MTCNN(keep_all=True, post_process=False, thresholds=[0.6, 0.7, 0.7], min_face_size=20).detect(image)
    (onnx,) = _detector().detect([image])
    (torch_boxes,) = _detector(runtime="torch").detect([image])
    assert len(onnx) == len(reference) >= 2  # two people in the photo (and a face cut by its edge)
    assert iou_matrix(np.asarray(reference), onnx).max(axis=1).min() > 0.8
    assert np.abs(onnx - torch_boxes).max() < 0.5  # ONNX Runtime and torch run the same nets


def _corner_sums(image: np.ndarray, top: int, left: int, height: int, width: int, out: tuple[int, int]) -> np.ndarray:
    """torch's "area" resize by the definition: each cell the mean of its window, from float64 corner sums."""
    table = cv2.integral(image, sdepth=cv2.CV_64F).reshape(image.shape[0] + 1, image.shape[1] + 1, -1)
    rows, cols = np.arange(out[0]), np.arange(out[1])
    y0, y1 = top + rows * height // out[0], top - (-(rows + 1) * height // out[0])
    x0, x1 = left + cols * width // out[1], left - (-(cols + 1) * width // out[1])
    sums = table[y1][:, x1] - table[y0][:, x1] - table[y1][:, x0] + table[y0][:, x0]
    return (sums / ((y1 - y0)[:, None] * (x1 - x0)[None, :])[..., None]).astype(np.float32)


@pytest.mark.parametrize("shape", [(37, 53), (540, 960)])
def test_the_cascades_resampling_is_the_area_rule_to_the_last_bit(shape: tuple[int, int]) -> None:
    """Levels (row sums first, from an int32 table) and candidate crops (many boxes in one gather) are bit for
    bit the windows' means: the integers summed are exact whichever way they are added."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    table = mtcnn.integral(image)
    assert table.dtype == np.int32  # the whole image's sum fits
    for size in [(shape[0] // 3 + 1, shape[1] // 2 + 1), (12, 12), shape]:
        expected = _corner_sums(image, 0, 0, *shape, size)
        np.testing.assert_array_equal(mtcnn.area_resize(table, 0, 0, *shape, size), expected)
    tops, lefts = rng.integers(0, shape[0] // 2, 20), rng.integers(0, shape[1] // 2, 20)
    heights, widths = rng.integers(1, shape[0] // 2, 20), rng.integers(1, shape[1] // 2, 20)
    crops = mtcnn.area_resize_boxes(table, tops, lefts, heights, widths, 24)
    for crop, *box in zip(crops, tops, lefts, heights, widths, strict=True):
        np.testing.assert_array_equal(crop, _corner_sums(image, *box, (24, 24)))


def test_a_table_too_large_for_int32_sums_is_float64() -> None:
    image = np.full((4000, 2200, 1), 255, np.uint8)  # 2.2e9 > 2**31 - 1
    table = mtcnn.integral(image)
    assert table.dtype == np.float64 and table[-1, -1, 0] == 255 * 4000 * 2200


def test_the_onnx_cascade_gives_the_same_bits_on_any_thread_count() -> None:
    """A single video's detector runs on every core (deepfake.apps.predict.video_pool), workers' on one: that
    leaves a verdict's floats alone only because ONNX Runtime's CPU kernels for these nets split work by
    output, never by sum. Checked here on this machine, with frames that yield candidates for every net."""
    image = cv2.cvtColor(cv2.imread(str(FACES / "t1_person2.jpg")), cv2.COLOR_BGR2RGB)
    config = DetectorConfig((0.6, 0.7, 0.7), 20, 0.0, "onnx", "cpu", **PUBLISHED)  # type: ignore[arg-type]
    frames = [image, np.ascontiguousarray(image[:, ::-1])]
    one = FaceDetector(config, threads=1).detect(frames)
    for threads in (2, 3):
        for a, b in zip(one, FaceDetector(config, threads=threads).detect(frames), strict=True):
            assert len(a) >= 2
            np.testing.assert_array_equal(a, b)


def test_the_cascades_call_sizes_change_its_speed_not_its_boxes(monkeypatch: pytest.MonkeyPatch) -> None:
    """P-Net takes a level's frames in chunks of ``PNET_PIXELS`` and R-/O-Net their candidates ``NET_BATCH`` at a
    time for speed (activations that fit in the cache): the boxes of a batch of frames are the same bits as
    with every frame and candidate in one call, and as each frame detected alone."""
    image = cv2.cvtColor(cv2.imread(str(FACES / "t1_person2.jpg")), cv2.COLOR_BGR2RGB)
    frames = [image, np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(image[::-1])]
    detector = _detector()
    chunked = detector.detect(frames)
    alone = [detector.detect([frame])[0] for frame in frames]
    monkeypatch.setattr(mtcnn, "PNET_PIXELS", 1 << 40)
    monkeypatch.setattr(mtcnn, "NET_BATCH", 1 << 20)
    whole = detector.detect(frames)
    assert len(chunked[0]) >= 2
    for a, b, c in zip(chunked, whole, alone, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_onet_confirms_a_predicted_face_box_and_rejects_one_without_a_face() -> None:
    """``refine``: a face's box shifted by a tenth of its side (a track's interpolation) is confirmed and pulled
    back onto the face; a box on the background scores low; a box outside the frame scores 0."""
    image = cv2.cvtColor(cv2.imread(str(FACES / "grace_hopper.jpg")), cv2.COLOR_BGR2RGB)
    detector = _detector()
    for scale in (1.0, 0.5):
        (found,) = detector.detect([image], scale)
        face = found[0]
        side = face[2] - face[0]
        moved = face + np.array([0.1, -0.1, 0.1, -0.1, 0], np.float32) * side
        background = np.array([5, image.shape[0] - 65, 65, image.shape[0] - 5, 0.9], np.float32)
        outside = np.array([image.shape[1] + 10, 10, image.shape[1] + 90, 90, 0.9], np.float32)
        (refined,) = detector.refine([image], [np.stack([moved, background, outside])], scale)
        assert refined.shape == (3, 5)
        assert refined[0, 4] > 0.7 and refined[1, 4] < 0.7 and refined[2, 4] == 0.0
        # the regressed box lands nearer the detected face than the shifted one it started from
        assert np.abs(refined[0, :4] - face[:4]).max() < np.abs(moved[:4] - face[:4]).max()
    assert detector.refine([image, image], [np.zeros((0, 5)), found], 1.0)[0].shape == (0, 5)


def test_the_pyramid_factor_and_nms_thresholds_take_effect() -> None:
    """bboxes.pyramid_factor sets the pyramid's step; bboxes.nms_thresholds how much overlap the cascade's NMS
    steps allow (at 1 they drop nothing)."""
    from deepfake.media.mtcnn import _nms, pyramid_scales

    coarse, fine = pyramid_scales(360, 640, 20, 0.5), pyramid_scales(360, 640, 20, 0.709)
    assert coarse[0] == fine[0] == 12 / 20 and len(coarse) < len(fine)
    np.testing.assert_allclose(np.diff(np.log(coarse)), np.log(0.5))
    boxes = np.array([[0, 0, 10, 10, 0.9], [1, 1, 11, 11, 0.8], [0, 0, 4, 4, 0.7]], np.float32)
    groups = np.zeros(3, np.int64)
    # boxes 0 and 1: IoU 100 / 142 = 0.704 (MTCNN counts pixels inclusively); box 2 lies inside box 0 (IoU 0.21)
    assert list(_nms(boxes, groups, 0.7)) == [0, 2]
    assert list(_nms(boxes, groups, 0.75)) == [0, 1, 2]
    assert list(_nms(boxes, groups, 0.7, "min")) == [0]  # over the smaller box: 100 / 121 and 25 / 25
    image = cv2.cvtColor(cv2.imread(str(FACES / "grace_hopper.jpg")), cv2.COLOR_BGR2RGB)
    (published,) = _detector().detect([image])
    (coarser,) = _detector(pyramid_factor=0.5).detect([image])
    assert len(published) >= 1 and len(coarser) >= 1
    assert not np.array_equal(published, coarser)  # other pyramid levels: other scores and boxes
    (all_kept,) = _detector(nms_thresholds=(1.0, 1.0, 1.0, 1.0)).detect([image])
    assert len(all_kept) > len(published)  # without NMS the face's overlapping candidates all survive


def test_mtcnn_onnx_graphs_are_cached_whole_and_reused_without_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first detector exports the nets and caches them under a key of what they depend on; later ones
    read the same bytes and never export (so never import torch or torchvision for them)."""
    exported = mtcnn.onnx_graphs(tmp_path)
    files = sorted(tmp_path.rglob("*.onnx"))
    assert [f.name for f in files] == ["onet.onnx", "pnet.onnx", "rnet.onnx"]
    assert {f.parent.name for f in files} == {mtcnn.onnx_cache_key()}
    assert not [f for f in tmp_path.rglob("*") if f.name.startswith(".")]  # no temporary file left behind

    def no_export() -> None:
        raise AssertionError("exported again although the graphs are cached")

    monkeypatch.setattr(mtcnn, "_export_onnx", no_export)
    assert mtcnn.onnx_graphs(tmp_path) == exported


def test_the_mtcnn_cache_key_follows_the_weights_and_the_exporter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = mtcnn.onnx_cache_key()
    copies = []
    for path in mtcnn.weight_files():
        copies.append(tmp_path / path.name)
        copies[-1].write_bytes(path.read_bytes())
    monkeypatch.setattr(mtcnn, "weight_files", lambda: tuple(copies))
    assert mtcnn.onnx_cache_key() == key
    copies[1].write_bytes(copies[1].read_bytes() + b"\0")  # other R-Net weights
    assert mtcnn.onnx_cache_key() != key
    copies[1].write_bytes(copies[1].read_bytes()[:-1])
    monkeypatch.setattr(mtcnn, "ONNX_EXPORT_FORMAT", mtcnn.ONNX_EXPORT_FORMAT + 1)
    assert mtcnn.onnx_cache_key() != key


def test_an_unwritable_mtcnn_cache_costs_only_the_export(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    graphs = mtcnn.onnx_graphs(blocked)
    assert graphs == mtcnn._export_onnx() and len(graphs) == 3
    assert "not cached" in caplog.text
