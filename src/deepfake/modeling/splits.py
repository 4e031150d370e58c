"""Leak-free folds: every original and all of its fakes land in one fold.

Two strategies:
- ``original``: groups (an original plus its fakes) are shuffled with a seed and dealt greedily to
  the fold with the fewest crops, so folds are balanced and no face straddles a boundary.
  When the metadata labels identities (the optional ``identity`` key: whose face a video shows,
  for a fake the donor's) and ``folds.identity`` is on, groups sharing an identity are joined
  first, so a donor's face never trains a model that is then tested on that person's real clips.
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

from deepfake.core.errors import InputError, ParamsError
from deepfake.core.errors import LeakageError as LeakageError  # re-exported: a group would straddle folds

_PART_NUMBER = re.compile(r"(\d+)$")


@dataclass(frozen=True)
class FoldsConfig:
    strategy: str
    n_splits: int
    seed: int
    part_splits: int
    parts_total: int
    identity: bool  # join groups that share a metadata identity label

    @classmethod
    def from_params(cls, params: Any) -> FoldsConfig:
        """From the validated ``folds`` section (types and ranges are checked there)."""
        sect = params.folds
        return cls(
            strategy=sect.strategy,
            n_splits=sect.n_splits,
            seed=sect.seed,
            part_splits=sect.part_splits,
            parts_total=sect.parts_total,
            identity=sect.identity,
        )


def group_key(frame: pd.DataFrame) -> pd.Series:
    """The leakage unit of each row: its part and the original its face comes from."""
    return frame["part"].astype(str) + "/" + frame["original"].astype(str)


def _identities(frame: pd.DataFrame) -> pd.Series:
    if "identity" not in frame.columns:
        return pd.Series("", index=frame.index, dtype=str)
    return frame["identity"].fillna("").astype(str)


def leak_units(frame: pd.DataFrame, identity: bool) -> pd.Series:
    """The unit that must stay in one fold, per row: its original's group, joined (union-find)
    with every group that shares an identity label when ``identity`` is on."""
    groups = group_key(frame)
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for group in groups.unique():
        find(group)
    if identity:
        for group, label in zip(groups, _identities(frame), strict=True):
            if label:
                a, b = find(group), find("identity:" + label)
                if a != b:
                    parent[max(a, b)] = min(a, b)  # deterministic representative
    return groups.map(find)


def part_number(part: str) -> int:
    match = _PART_NUMBER.search(part)
    if not match:
        raise ParamsError(f"part {part!r} has no trailing number (expected dfdc_train_part_N)")
    return int(match.group(1))


def folds_by_original(frame: pd.DataFrame, n_splits: int, seed: int, identity: bool) -> pd.Series:
    groups = leak_units(frame, identity)
    sizes = groups.value_counts().sort_index()
    if len(sizes) < n_splits:
        joined = " (originals joined by shared identity labels)" if identity and _identities(frame).ne("").any() else ""
        raise InputError(
            f"only {len(sizes)} leak-free groups{joined} for folds.n_splits={n_splits}: "
            "lower n_splits or add data, so that no fold is empty"
        )
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
        return folds_by_original(frame, config.n_splits, config.seed, config.identity)
    return folds_by_part(frame, config.part_splits, config.parts_total)


def find_leaks(frame: pd.DataFrame, identity: bool = False) -> list[str]:
    """Originals (``part/name``) and, with ``identity``, identity labels (``identity:label``) whose
    rows sit in more than one fold (must be empty)."""
    folds_per_group = frame.groupby(group_key(frame))["fold"].nunique()
    leaks = sorted(folds_per_group[folds_per_group > 1].index)
    if identity:
        labels = _identities(frame)
        labelled = frame[labels != ""]
        folds_per_identity = labelled.groupby(labels[labels != ""])["fold"].nunique()
        leaks += sorted("identity:" + label for label in folds_per_identity[folds_per_identity > 1].index)
    return leaks
