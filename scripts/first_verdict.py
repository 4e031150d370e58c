"""How long `deepfake predict one_clip.mp4` takes from a cold start, as a new user runs it.

Each run is a fresh process in an empty folder (no params.yaml: the package's own settings), so it pays for
the interpreter, the imports, the model sessions and the one video. Prints the wall time and peak memory of
each run, then where the import time goes (`python -X importtime` of the prediction path's modules).

    python scripts/first_verdict.py data/raw/dfdc_train_part_0/pnkdcajjzg.mp4 --models models --runs 3
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORTS = "import deepfake.cli, deepfake.apps.predict, deepfake.backends.onnx_backend, onnxruntime"


def cold_run(video: Path, models: Path, backend: str) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as empty:
        command = [sys.executable, "-m", "deepfake.cli", "predict", str(video), "--models", str(models)]
        command += ["--backend", backend, "-q", "--csv", str(Path(empty) / "p.csv")]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=empty, capture_output=True, text=True, check=True)
        return time.perf_counter() - started, done.stderr


def import_seconds() -> dict[str, float]:
    """Cumulative import time of each top-level package the prediction path loads, largest first."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", IMPORTS], capture_output=True, text=True)
    totals: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
        if match and not match.group(2).startswith(" "):  # top level: no indentation
            totals[match.group(2)] = int(match.group(1)) / 1e6
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    video, models = args.video.resolve(), args.models.resolve()
    for run in range(1, args.runs + 1):
        seconds, _ = cold_run(video, models, args.backend)
        print(f"run {run}: {seconds:.2f} s wall")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak memory of the largest run: {peak:.0f} MB")
    imports = import_seconds()
    print(f"imports of the prediction path: {sum(imports.values()):.2f} s; largest:")
    for name, seconds in list(imports.items())[:8]:
        print(f"  {name}: {seconds:.2f} s")


if __name__ == "__main__":
    main()
