"""Stage sample: the built-in sample in every supported dataset layout, from the packaged face photos
(``deepfake.sample``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deepfake.sample.build import build_sample
from deepfake.sample.plan import SampleConfig

__all__ = ["Config", "Paths", "run"]

Config = SampleConfig  # Config.from_params(params): the validated ``sample`` section


@dataclass(frozen=True)
class Paths:
    out: Path  # receives one folder per sample part and per extra dataset (SampleConfig.folders)


def run(config: SampleConfig, paths: Paths) -> dict:
    """The sample stage: write the sample's folders under ``paths.out``."""
    return build_sample(paths.out, config)
