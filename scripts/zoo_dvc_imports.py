"""Write the `dvc import-url --no-download` stages that make `dvc pull` fetch the zoo from its publishers.

    python scripts/zoo_dvc_imports.py                      # every zoo entry
    python scripts/zoo_dvc_imports.py --entry dfdc1st      # one entry
    git add models/zoo/*/pulled/*.dvc && git commit

Nothing is downloaded: DVC asks each publisher's server for the file's ETag and size and writes
``models/zoo/<entry>/pulled/<file>.dvc``. Afterwards ``dvc pull`` (on any clone) downloads the files from the
publishers, and ``dvc repro zoo/dvc.yaml`` verifies their SHA-256 and converts them without downloading
them again. Needs the network; see ``deepfake.zoo.imports`` for why and for what DVC cannot fetch.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from deepfake.core.command import run_stage
from deepfake.core.params import load_params
from deepfake.zoo.imports import import_specs, write_import_stages

MODELS_ROOT = Path("models/zoo")  # zoo/dvc.yaml's models/zoo/<entry>/...


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entry", action="append", help="a key of zoo.entries (repeatable; all by default)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--repo", type=Path, default=Path("."), help="the repository root")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    specs = import_specs(load_params(args.params), MODELS_ROOT, args.entry)
    for path in write_import_stages(args.repo, specs):
        print(path)


if __name__ == "__main__":
    run_stage(main)
