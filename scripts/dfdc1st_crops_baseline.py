"""DFDC-1st's per-video crop extraction, re-implemented from the description in ``bench_crops_vs_dfdc1st.py``
(written from it, not copied from selimsef/dfdc_deepfake_challenge): OpenCV and the standard library only, so a
process that runs it (``python scripts/dfdc1st_crops_baseline.py JOBS.json OUT WORKERS``, as the benchmark does
to measure its memory) holds what the winner's own script would, not this project's packages.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from multiprocessing import Pool
from pathlib import Path

import cv2


def baseline_video(job: tuple[str, str, str, int], out: str) -> int:
    """DFDC-1st's per-video crop extraction (steps 2-4 of the benchmark's description); the crops written."""
    video, boxes_path, stem, stride = job
    with open(boxes_path) as fh:
        frames = json.load(fh)["frames"]
    capture = cv2.VideoCapture(video)
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    written = 0
    for index in range(count):
        capture.grab()
        if index % stride:
            continue
        ok, frame = capture.retrieve()
        boxes = frames.get(str(index)) if ok else None
        if not boxes:
            continue
        images = []
        for box in boxes:
            left, top, right, bottom = (int(v) for v in box[:4])
            pad_w, pad_h = (right - left) // 3, (bottom - top) // 3
            images.append(frame[max(top - pad_h, 0) : bottom + pad_h, max(left - pad_w, 0) : right + pad_w])
        folder = os.path.join(out, stem)
        os.makedirs(folder, exist_ok=True)
        for face, image in enumerate(images):
            cv2.imwrite(os.path.join(folder, f"{index}_{face}.png"), image)
            written += 1
    capture.release()
    return written


def run_baseline(jobs: list[tuple[str, str, str, int]], out: Path, workers: int) -> int:
    """Every job over ``workers`` processes (a fork Pool, unordered); the number of crops written."""
    work = functools.partial(baseline_video, out=str(out))
    if workers <= 1:
        return sum(map(work, jobs))
    with Pool(processes=workers) as pool:
        return sum(pool.imap_unordered(work, jobs))


if __name__ == "__main__":
    jobs_file, out_folder, worker_count = sys.argv[1:]
    jobs = [tuple(job) for job in json.loads(Path(jobs_file).read_text())]
    print(run_baseline(jobs, Path(out_folder), int(worker_count)))  # type: ignore[arg-type]
