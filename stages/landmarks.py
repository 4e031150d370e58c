"""DVC stage landmarks: 5-point MTCNN landmarks on the REAL crops of one part."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.stages import landmarks


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--crops", type=Path, required=True, help="the crops root (holds <part>/index.csv)")
    parser.add_argument("--part", required=True, help="the part name")
    parser.add_argument("--out", type=Path, required=True, help="folder for <original>/<frame>_<face>.npy")
    parser.add_argument("--report", type=Path, required=True, help="stage report JSON")
    args, params = parse_stage_args(parser, argv)
    paths = landmarks.Paths(args.crops, args.part, args.out, args.report)
    landmarks.run(landmarks.Config.from_params(params), paths)


if __name__ == "__main__":
    run_stage(main)
