"""Build a zoo package from seeded random weights in a publisher's exact file layout, for benchmarks.

Speed does not depend on the weights' values, so this measures what the real package will cost without
downloading it:

    python scripts/zoo_random_package.py --package dfdc1st-b7 --out /tmp/zoo-bench/dfdc1st-b7
    deepfake predict --models /tmp/zoo-bench/dfdc1st-b7 data/raw/dfdc_train_part_0 --json /tmp/p.json

The files are written where the fetch stage would leave them, with their hashes recorded as a first
download records them, and the convert stage (``deepfake.stages.zoo_convert``) turns them into the package
exactly as ``dvc repro zoo/dvc.yaml:zoo_convert@<package>`` would. The package is a demonstration of
speed only: its verdicts mean nothing. Only the ``dfdc1st`` layout can be written (its writer ships with
the project); ``--encoder`` swaps in a smaller timm EfficientNet of the same layout.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from deepfake.core.params import load_params
from deepfake.modeling.card import read_card, write_card
from deepfake.modeling.store import ModelStore
from deepfake.stages import zoo_convert
from deepfake.zoo import dfdc1st
from deepfake.zoo.download import sha256_of
from deepfake.zoo.record import write_record

RANDOM_WEIGHTS_WARNING = "random weights in the publisher's layout, for speed benchmarks: its verdicts mean nothing"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", required=True, help="a key of zoo.packages (its entry's layout: dfdc1st)")
    parser.add_argument("--out", type=Path, required=True, help="the package folder to write")
    parser.add_argument("--encoder", help="a timm EfficientNet in place of the entry's encoder (smaller, faster)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-2,
        help="ONNX parity bound: random weights give logits in the tens to hundreds, so float32 noise exceeds "
        "export.tolerance, which is meant for trained weights (default: %(default)s)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = zoo_convert.Config.from_params(load_params(args.params), args.package)
    if config.entry.layout != "dfdc1st":
        parser.error(f"{args.package}: layout {config.entry.layout}; only dfdc1st files can be written here")
    encoder = args.encoder or config.entry.model_kwargs["encoder"]
    if args.encoder:
        entry = config.entry.model_copy(update={"model_kwargs": {**config.entry.model_kwargs, "encoder": encoder}})
        config = zoo_convert.Config(**{**config.__dict__, "entry": entry})
    work = args.out.parent / f".{args.out.name}.inputs"
    download = work / "download"
    download.mkdir(parents=True, exist_ok=True)
    record = {}
    for seed, file in enumerate(config.files, start=1):
        path = download / file.name
        if not path.is_file():
            dfdc1st.write_checkpoint(path, encoder, seed)
        record[file.name] = {"url": file.url, "sha256": sha256_of(path)}
    record_path = work / "checksums.json"
    write_record(record_path, config.entry_name, record)
    files = tuple(f.model_copy(update={"sha256": None}) for f in config.files)
    config = zoo_convert.Config(**{**config.__dict__, "files": files, "tolerance": args.tolerance})
    report = zoo_convert.run(config, zoo_convert.Paths(download, record_path, args.out, work / "convert.json"))
    # the card must not pass random weights off as the publisher's model: mark them as what they are
    folder = ModelStore(args.out).folder("onnx")
    card = read_card(folder).model_copy(
        update={"version": "", "demonstration": True, "evaluation": [], "warning": RANDOM_WEIGHTS_WARNING}
    )
    write_card(folder, card)
    logging.getLogger("zoo").info("wrote %s: %s", args.out, report)


if __name__ == "__main__":
    main()
