"""DVC stage landmarks: 5-point MTCNN landmarks on the REAL crops of one DFDC part."""

from pathlib import Path

from deepfake.cli import parse_stage_args, run_stage, stage_parser
from deepfake.pipeline import landmarks


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--crops", type=Path, required=True, help="the crops root (holds <part>/index.csv)")
    parser.add_argument("--part", required=True, help="DFDC part name")
    parser.add_argument("--out", type=Path, required=True, help="folder for <video>/<frame>_<face>.npy")
    parser.add_argument("--report", type=Path, required=True, help="stage report JSON")
    args, params = parse_stage_args(parser, argv)
    landmarks.run(args.crops, args.part, args.out, args.report, landmarks.LandmarksConfig.from_params(params))


if __name__ == "__main__":
    run_stage(main)
