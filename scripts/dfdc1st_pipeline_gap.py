"""How far the project's own prediction moves a DFDC-winner package's scores from the winner's inference.

The same weights, two pipelines: ``pipeline: dfdc1st`` (the winner's frames, detector settings, crops and
confident strategy, as the package records it) and the project's own (``predict`` params: frames over the
whole duration, detection every k-th frame with face tracks, the package's aggregation). Prints one line
per video, the winner's reference probability when a reference JSON is given, and writes a JSON::

    python scripts/zoo_random_package.py --package dfdc1st-b7 --encoder tf_efficientnet_b0 --out /tmp/b0
    python scripts/dfdc1st_pipeline_gap.py --models /tmp/b0 --videos data/raw/dfdc_train_part_0 \\
        --reference docs/zoo/dfdc1st-reference-b0.json --out docs/zoo/dfdc1st-pipeline-gap-b0.json
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from deepfake.apps.predict import Outputs, PredictConfig, predict_videos
from deepfake.apps.zoo_predict import dfdc1st_config, dfdc1st_stream, package_pipeline
from deepfake.backends.base import create_backend
from deepfake.core.params import load_params_for_models
from deepfake.modeling.store import ModelStore


def _scores(videos: list[Path], backend: Any, config: PredictConfig, stream: Any, folder: Path) -> dict[str, Any]:
    outputs = Outputs(folder / "p.csv", folder / "p.json", folder / "p.jsonl")
    predict_videos(videos, backend, config, outputs, stream=stream)
    return {Path(r["path"]).name: r for r in json.loads(outputs.json.read_text())["videos"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, required=True, help="a package whose manifest names pipeline dfdc1st")
    parser.add_argument("--videos", type=Path, required=True, help="a folder of videos")
    parser.add_argument("--reference", type=Path, help="the winner's own figures (scripts/dfdc1st_reference.py)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    store = ModelStore(args.models)
    params, _ = load_params_for_models(None, store.settings)  # run from a folder without params.yaml
    config = PredictConfig.from_params(params)
    backend = create_backend("onnx", store, params)
    pipeline, settings = package_pipeline(store)
    if settings is None:
        parser.error(f"{args.models}: pipeline {pipeline}; a dfdc1st package is needed")
    winner = dfdc1st_stream(backend, dfdc1st_config(settings, backend.face_input.image_size), config.aggregation)
    videos = sorted(args.videos.glob("*.mp4"))
    reference = json.loads(args.reference.read_text())["videos"] if args.reference else {}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a").mkdir()
        (Path(tmp) / "b").mkdir()
        theirs = _scores(videos, backend, config, winner, Path(tmp) / "a")
        ours = _scores(videos, backend, config, None, Path(tmp) / "b")
    rows = {}
    for video in videos:
        a, b = theirs[video.name], ours[video.name]
        ref = reference.get(video.name, {}).get("probability")
        gap = None if a["probability"] is None or b["probability"] is None else b["probability"] - a["probability"]
        rows[video.name] = {
            "winner_reference": ref,
            "pipeline_dfdc1st": a["probability"],
            "pipeline_project": b["probability"],
            "project_minus_dfdc1st": gap,
            "faces_dfdc1st": a.get("crops"),
            "crops_project": b.get("crops"),
        }
        print(f"{video.name}: reference {ref} dfdc1st {a['probability']} project {b['probability']} gap {gap}")
    gaps = [abs(r["project_minus_dfdc1st"]) for r in rows.values() if r["project_minus_dfdc1st"] is not None]
    summary = {
        "videos": len(rows),
        "mean_abs_gap": sum(gaps) / len(gaps) if gaps else None,
        "max_abs_gap": max(gaps, default=None),
    }
    args.out.write_text(json.dumps({"models": str(args.models), "summary": summary, "videos": rows}, indent=1) + "\n")
    print(summary)


if __name__ == "__main__":
    main()
