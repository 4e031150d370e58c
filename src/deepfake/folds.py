"""Leak-free folds: every original and all of its fakes land in one fold.

Two strategies:
- ``original``: groups (an original plus its fakes) are shuffled with a seed and dealt greedily to
  the fold with the fewest crops, so folds are balanced and no face straddles a boundary.
- ``part``: DFDC-1st's split by DFDC part: ``part_splits`` folds of ``parts_total // part_splits``
  consecutive parts (fold 0 = parts 0-2 with the defaults), the last fold taking the remainder.
  DFDC keeps a fake with its original in one part, so this is leak-free too; it is checked.
Fold 0 is the holdout in both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from deepfake.params import section

STRATEGIES = ("original", "part")
_PART_NUMBER = re.compile(r"(\d+)$")


class LeakageError(AssertionError):
    """A group (an original with its fakes) would straddle folds."""


@dataclass(frozen=True)
class FoldsConfig:
    strategy: str
    n_splits: int
    seed: int
    part_splits: int
    parts_total: int

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> FoldsConfig:
        sect = section(params, "folds")
        config = cls(
            strategy=str(sect["strategy"]),
            n_splits=int(sect["n_splits"]),
            seed=int(sect["seed"]),
            part_splits=int(sect["part_splits"]),
            parts_total=int(sect["parts_total"]),
        )
        if config.strategy not in STRATEGIES:
            raise ValueError(f"folds.strategy must be one of {STRATEGIES}, got {config.strategy!r}")
        if config.n_splits < 2 or config.part_splits < 1 or config.parts_total < config.part_splits:
            raise ValueError(f"folds: need n_splits >= 2 and 1 <= part_splits <= parts_total: {config}")
        return config


def group_key(frame: pd.DataFrame) -> pd.Series:
    """The leakage unit of each row: its part and the original its face comes from."""
    return frame["part"].astype(str) + "/" + frame["original"].astype(str)


def part_number(part: str) -> int:
    match = _PART_NUMBER.search(part)
    if not match:
        raise ValueError(f"part {part!r} has no trailing number (expected dfdc_train_part_N)")
    return int(match.group(1))


def folds_by_original(frame: pd.DataFrame, n_splits: int, seed: int) -> pd.Series:
    groups = group_key(frame)
    sizes = groups.value_counts().sort_index()
    order = np.random.default_rng(seed).permutation(len(sizes))
    load = np.zeros(n_splits, dtype=np.int64)
    fold_of: dict[str, int] = {}
    for position in order:
        fold = int(np.argmin(load))  # the lightest fold; ties go to the lowest index
        fold_of[sizes.index[position]] = fold
        load[fold] += sizes.iloc[position]
    return groups.map(fold_of).astype(int)


def folds_by_part(frame: pd.DataFrame, part_splits: int, parts_total: int) -> pd.Series:
    chunk = parts_total // part_splits
    numbers = frame["part"].map(part_number)
    return np.minimum(numbers // chunk, part_splits - 1).astype(int)


def assign_folds(frame: pd.DataFrame, config: FoldsConfig) -> pd.Series:
    if frame.empty:
        return pd.Series([], dtype=int)
    if config.strategy == "original":
        return folds_by_original(frame, config.n_splits, config.seed)
    return folds_by_part(frame, config.part_splits, config.parts_total)


def find_leaks(frame: pd.DataFrame) -> list[str]:
    """Groups whose rows sit in more than one fold (must be empty)."""
    folds_per_group = frame.groupby(group_key(frame))["fold"].nunique()
    return sorted(folds_per_group[folds_per_group > 1].index)
