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

Official splits (``original`` strategy): a dataset that ships one (FaceForensics++'s pair lists,
Celeb-DF's test list, DFDC preview's ``set``, DeeperForensics' lists) keeps it: its ``test`` videos form
the holdout fold (``train.holdout_fold``), its ``val`` videos the validation fold (``train.val_fold``)
and its ``train`` videos are dealt over the other folds. Videos without an official split are dealt
over all folds, as above. A fake always lands with its source: an original group whose videos carry
different official splits goes whole to the strictest (test, then val, then train), and the moved
videos are counted. Identity links that would join videos of different official splits are not
followed (the dataset's own protocol decides; real Celeb-DF's test list shares people with its
training videos); links that cross no split still are, and the report lists the identities not
followed, so it says how far that protocol leaks identities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepfake.core.errors import InputError, ParamsError
from deepfake.core.errors import LeakageError as LeakageError  # re-exported: a group would straddle folds
from deepfake.core.params import Params
from deepfake.core.vocabulary import PART_NUMBER, TEST, TRAIN, VAL


@dataclass(frozen=True)
class FoldsConfig:
    strategy: str
    n_splits: int
    seed: int
    part_splits: int
    parts_total: int
    identity: bool  # join groups that share a metadata identity label
    holdout_fold: int = 0  # official test splits land here
    val_fold: int = 1  # official val splits land here

    @classmethod
    def from_params(cls, params: Params) -> FoldsConfig:
        """From the validated ``folds`` section (types and ranges are checked there)."""
        sect = params.folds
        return cls(
            strategy=sect.strategy,
            n_splits=sect.n_splits,
            seed=sect.seed,
            part_splits=sect.part_splits,
            parts_total=sect.parts_total,
            identity=sect.identity,
            holdout_fold=params.train.holdout_fold,
            val_fold=params.train.val_fold,
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
    match = PART_NUMBER.search(part)
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


SPLIT_ORDER = (TEST, VAL, TRAIN)  # strictest first: a group with mixed splits goes to the first


def _official_splits(frame: pd.DataFrame) -> pd.Series:
    if "split" not in frame.columns:
        return pd.Series("", index=frame.index, dtype=str)
    return frame["split"].fillna("").astype(str)


@dataclass(frozen=True)
class OfficialSplits:
    """Each row's official split and leak-free unit once fakes are kept with their sources and
    identity links are followed where they do not cross official splits; and what that took."""

    split: pd.Series  # "test", "val", "train" or ""
    units: pd.Series  # the leak-free unit of each row (one official split at most per unit)
    moved_rows: int  # rows moved to a stricter split to stay with their original group
    unfollowed_identities: tuple[str, ...]  # identity labels whose links would join different splits


def official_splits(frame: pd.DataFrame, identity: bool) -> OfficialSplits:
    """Resolve the rows' official splits into one per leak-free unit (see the module docstring).

    Original groups are joined through shared identity labels (union-find, in sorted order, so the
    result is deterministic) unless the join would put two official splits in one unit: that link
    is not followed and its label is reported.
    """
    given = _official_splits(frame)
    groups = group_key(frame)
    rank = {name: i for i, name in enumerate(SPLIT_ORDER)}

    def strictest(values: pd.Series) -> str:
        present = [v for v in values if v]
        return min(present, key=rank.__getitem__) if present else ""

    per_group = given.groupby(groups).agg(strictest)
    moved = int(((given != "") & (groups.map(per_group) != given)).sum())
    parent: dict[str, str] = {group: group for group in per_group.index}
    splits_of: dict[str, set[str]] = {group: {value} - {""} for group, value in per_group.items()}

    def find(node: str) -> str:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    unfollowed: set[str] = set()
    if identity:
        labels = _identities(frame)
        labelled = labels != ""
        for group, label in sorted(set(zip(groups[labelled], labels[labelled], strict=True))):
            node = "identity:" + label
            parent.setdefault(node, node)
            splits_of.setdefault(node, set())
            a, b = find(group), find(node)
            if a == b:
                continue
            if len(splits_of[a] | splits_of[b]) > 1:
                unfollowed.add(label)
                continue
            root, child = min(a, b), max(a, b)  # deterministic representative
            parent[child] = root
            splits_of[root] |= splits_of[child]
    units = groups.map(find)
    unit_split = {unit: next(iter(splits_of[unit]), "") for unit in units.unique()}
    split = units.map(unit_split).astype(str)
    return OfficialSplits(split=split, units=units, moved_rows=moved, unfollowed_identities=tuple(sorted(unfollowed)))


def _deal(sizes: pd.Series, folds: list[int], seed: int) -> dict[str, int]:
    """Deal units (largest-first is not used: a seeded shuffle) to the lightest of ``folds``."""
    order = np.random.default_rng(seed).permutation(len(sizes))
    load = dict.fromkeys(folds, 0)
    fold_of: dict[str, int] = {}
    for position in order:
        fold = min(folds, key=lambda f: (load[f], f))  # the lightest fold; ties go to the lowest index
        fold_of[sizes.index[position]] = fold
        load[fold] += int(sizes.iloc[position])
    return fold_of


def folds_with_official_splits(frame: pd.DataFrame, config: FoldsConfig, official: OfficialSplits) -> pd.Series:
    """Folds when some rows carry an official split: test -> holdout, val -> val, train -> the rest."""
    split, units = official.split, official.units
    training = [f for f in range(config.n_splits) if f not in (config.holdout_fold, config.val_fold)]
    if not training:
        raise InputError(f"folds.n_splits={config.n_splits} leaves no training fold besides the holdout and val folds")
    fold = pd.Series(-1, index=frame.index, dtype=int)
    fold[split == TEST] = config.holdout_fold
    fold[split == VAL] = config.val_fold
    for wanted, folds in ((TRAIN, training), ("", list(range(config.n_splits)))):
        rows = split == wanted
        if rows.any():
            sizes = units[rows].value_counts().sort_index()
            fold[rows] = units[rows].map(_deal(sizes, folds, config.seed)).astype(int)
    return fold


def assign_folds(frame: pd.DataFrame, config: FoldsConfig) -> pd.Series:
    if frame.empty:
        return pd.Series([], dtype=int)
    if config.strategy == "original":
        official = official_splits(frame, config.identity)
        if (official.split != "").any():
            return folds_with_official_splits(frame, config, official)
        return folds_by_original(frame, config.n_splits, config.seed, config.identity)
    return folds_by_part(frame, config.part_splits, config.parts_total)


def find_leaks(frame: pd.DataFrame, identity: bool = False, excused: tuple[str, ...] = ()) -> list[str]:
    """Originals (``part/name``) and, with ``identity``, identity labels (``identity:label``) whose
    rows sit in more than one fold (must be empty). Identities that the datasets' official splits
    themselves spread over splits are not counted, nor the ``excused`` ones (the labels
    ``official_splits`` did not follow)."""
    folds_per_group = frame.groupby(group_key(frame))["fold"].nunique()
    leaks = sorted(folds_per_group[folds_per_group > 1].index)
    if identity:
        labels = _identities(frame)
        given = _official_splits(frame)
        split_per_identity = given[labels != ""].groupby(labels[labels != ""]).agg(lambda v: len({x for x in v if x}))
        by_protocol = set(split_per_identity[split_per_identity > 1].index) | set(excused)
        labels = labels.where(~labels.isin(by_protocol), "")
        labelled = frame[labels != ""]
        folds_per_identity = labelled.groupby(labels[labels != ""])["fold"].nunique()
        leaks += sorted("identity:" + label for label in folds_per_identity[folds_per_identity > 1].index)
    return leaks
