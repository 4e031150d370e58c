"""Perturbed copies of one test set's videos (``perturb@<testset>``), the input of ``robustness@<testset>``.

The test set's videos are those ``evaluate@<testset>`` scores: for a test set of folded datasets, the videos of
the holdout fold (``train.holdout_fold``) in ``folds.csv``; for a test-only test set, every video of its
datasets' indexes. At most ``robustness.max_videos`` of each label are kept (the first by dataset and name,
so the choice is stable). Each is written once per variant of ``robustness.grid`` (``deepfake.media.
perturbations``: DeeperForensics-1.0's seven families and two of platforms, each at the levels asked for), plus
the baseline ``none-0`` that every variant is compared with: the same decode and re-encode
(``robustness.encoding``) without a perturbation. ``robustness.full_grid`` asks for every family at every level.

Output (one DVC output, cached: written once, never regenerated while its inputs and params stand):
``<out>/<family>-<level>/<dataset>/<video>`` and ``<out>/videos.csv`` (variant, family, level, dataset,
video, label, file). A video that cannot be decoded is recorded with its reason in the stage report and left
out of every variant; the others go on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake.core.errors import InputError, ParamsError
from deepfake.core.fileio import atomic_dir, write_bytes_atomic, write_json_atomic
from deepfake.core.parallel import map_videos
from deepfake.core.params import Params
from deepfake.core.report import DONE, VideoResult
from deepfake.core.vocabulary import FAKE, REAL
from deepfake.media.layouts import load_dataset
from deepfake.media.perturbations import BASELINE, FAMILIES, LEVELS, Encoding, parse_grid, perturb_video
from deepfake.media.perturbed_index import VIDEOS_CSV, variant_name, videos_csv
from deepfake.modeling.data import read_folds

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    testset: str
    datasets: tuple[str, ...]
    test_only: bool
    holdout_fold: int
    grid: tuple[tuple[str, int], ...]  # (family, level), the baseline first
    max_videos: int  # of each label
    seed: int
    encoding: Encoding
    max_pixels: int
    workers: int = 1  # videos perturbed at once (threads)

    @classmethod
    def from_params(cls, params: Params, testset: str) -> Config:
        if testset not in params.evaluate.testsets:
            raise ParamsError(f"params.yaml: evaluate.testsets: no test set {testset!r}")
        sect = params.robustness
        datasets = tuple(params.evaluate.testsets[testset])
        return cls(
            testset=testset,
            datasets=datasets,
            test_only=all(name in params.data.test_datasets for name in datasets),
            holdout_fold=params.train.holdout_fold,
            grid=((BASELINE, 0), *grid_of(sect.grid, sect.full_grid)),
            max_videos=sect.max_videos,
            seed=sect.seed,
            encoding=Encoding(crf=sect.encoding.crf, preset=sect.encoding.preset, threads=sect.encoding.threads),
            max_pixels=params.video.max_pixels,
            workers=sect.workers,
        )


def grid_of(spec: dict[str, list[int]], full: bool) -> list[tuple[str, int]]:
    """The (family, level) pairs of ``robustness.grid`` (empty lists skipped), or every pair when ``full``."""
    if full:
        return [(family, level) for family in FAMILIES for level in range(1, LEVELS + 1)]
    try:
        return parse_grid({family: levels for family, levels in spec.items() if levels})
    except ValueError as err:
        raise ParamsError(f"params.yaml: robustness.grid: {err}") from err


@dataclass(frozen=True)
class Paths:
    folds: Path  # data/folds.csv (a folded test set's holdout videos)
    index: Path  # data/index: <dataset>.csv
    roots: dict[str, Path]  # dataset -> its root
    extra_roots: dict[str, tuple[Path, ...]]
    out: Path  # data/robustness/<testset>
    report: Path  # metrics/preprocess/perturb/<testset>.json


@dataclass(frozen=True)
class TestVideo:
    dataset: str
    video: str
    label: str
    source: Path


def test_videos(config: Config, paths: Paths) -> list[TestVideo]:
    """The test set's videos (as evaluate selects its rows), at most ``max_videos`` of each label."""
    if config.test_only:
        wanted: set[tuple[str, str]] | None = None
    else:
        folds = read_folds(paths.folds)
        holdout = folds[(folds["fold"] == config.holdout_fold) & folds["part"].astype(str).isin(config.datasets)]
        wanted = set(zip(holdout["part"].astype(str), holdout["video"].astype(str), strict=True))
    videos = []
    for dataset in config.datasets:
        metadata = load_dataset(
            paths.index / f"{dataset}.csv", paths.roots[dataset], dataset, paths.extra_roots.get(dataset, ())
        )
        for name, entry in metadata.entries.items():
            if wanted is None or (dataset, name) in wanted:
                videos.append(TestVideo(dataset, name, entry.label, metadata.video_path(name)))
    if not videos:
        raise InputError(f"test set {config.testset!r} ({', '.join(config.datasets)}) has no videos to perturb")
    kept = [v for label in (REAL, FAKE) for v in [v for v in videos if v.label == label][: config.max_videos]]
    return sorted(kept, key=lambda v: (v.dataset, v.video))


@dataclass(frozen=True)
class _Task:
    video: TestVideo
    out: Path  # the set's folder being written
    config: Config


def _perturb_one(task: _Task) -> VideoResult:
    """Every variant of one test video; an undecodable one raises ``InputError`` (a skip, said in the report)."""
    video, config = task.video, task.config
    rows = []
    for family, level in config.grid:
        variant = variant_name(family, level)
        dest = task.out / variant / video.dataset / video.video
        dest.parent.mkdir(parents=True, exist_ok=True)
        perturb_video(video.source, dest, family, level, config.seed, config.encoding, max_pixels=config.max_pixels)
        row = {"variant": variant, "family": family, "level": level, "dataset": video.dataset}
        rows.append(
            {**row, "video": video.video, "label": video.label, "file": f"{variant}/{video.dataset}/{video.video}"}
        )
    return VideoResult(video=f"{video.dataset}/{video.video}", records=rows)


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """Every variant of every test video, written into ``paths.out`` whole (or not at all)."""
    started = time.perf_counter()
    videos = test_videos(config, paths)
    with atomic_dir(paths.out) as tmp:
        tasks = [(f"{v.dataset}/{v.video}", _Task(v, tmp, config)) for v in videos]
        # threads: FFmpeg's decoder, x264 and OpenCV release the GIL; files stay on this machine (never Dask)
        results = map_videos(_perturb_one, tasks, config.workers, f"perturb {config.testset}", pool="threads")
        refused = {r.video: r.reason or "" for r in results if r.status != DONE}
        for key in refused:  # a video is in every variant or in none
            dataset, name = key.split("/", 1)
            for family, level in config.grid:
                (tmp / variant_name(family, level) / dataset / name).unlink(missing_ok=True)
        rows = sorted(
            (row for r in results if r.status == DONE for row in r.records),
            key=lambda row: ([variant_name(f, lv) for f, lv in config.grid].index(row["variant"]), row["file"]),
        )
        write_bytes_atomic(tmp / VIDEOS_CSV, videos_csv(rows))
    kept = [v for v in videos if f"{v.dataset}/{v.video}" not in refused]
    report = {
        "testset": config.testset,
        "variants": [variant_name(f, level) for f, level in config.grid],
        "videos": len(kept),
        "real_videos": sum(v.label == REAL for v in kept),
        "refused": refused,
        "files": len(rows),
        "encoding": {"crf": config.encoding.crf, "preset": config.encoding.preset, "threads": config.encoding.threads},
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_json_atomic(paths.report, report)
    return report
