from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepfake.core.errors import InputError, ParamsError
from deepfake.media.masks import binarize, ssim_difference
from deepfake.modeling.splits import FoldsConfig, assign_folds, find_leaks, folds_by_part, leak_units, part_number
from tests.conftest import as_params, tiny_params

WIN = 7  # params.yaml's diffs.win_size (DFDC-1st)


def test_ssim_difference_is_zero_for_identical_and_bright_where_changed() -> None:
    rng = np.random.default_rng(0)
    original = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    assert ssim_difference(original, original.copy(), WIN).max() == 0
    fake = original.copy()
    fake[20:40, 20:40] = 255 - fake[20:40, 20:40]
    diff = ssim_difference(original, fake, WIN)
    assert diff.shape == (64, 64) and diff.dtype == np.uint8
    assert diff[25:35, 25:35].mean() > 100 > diff[:10, :10].mean()
    mask = binarize(diff, 102)
    assert set(np.unique(mask)) == {0, 255}
    assert mask[25:35, 25:35].all() and not mask[:10, :10].any()


def test_ssim_difference_refuses_mismatched_or_tiny_crops() -> None:
    with pytest.raises(ValueError, match="differ"):
        ssim_difference(np.zeros((10, 10, 3), np.uint8), np.zeros((10, 12, 3), np.uint8), WIN)
    with pytest.raises(ValueError, match="window"):
        ssim_difference(np.zeros((5, 5, 3), np.uint8), np.zeros((5, 5, 3), np.uint8), WIN)


def crops_table(groups: int, fakes: int = 2, crops: int = 3, part: str = "dfdc_train_part_0") -> pd.DataFrame:
    rows = []
    for g in range(groups):
        original = f"real{g}.mp4"
        for video in [original] + [f"fake{g}_{k}.mp4" for k in range(fakes)]:
            for c in range(crops):
                rows.append(
                    {
                        "video": video,
                        "original": original,
                        "part": part,
                        "frame": c,
                        "label": "REAL" if video == original else "FAKE",
                    }
                )
    return pd.DataFrame(rows)


def config(**overrides: object) -> FoldsConfig:
    values = {"strategy": "original", "n_splits": 3, "seed": 7, "part_splits": 16, "parts_total": 50, "identity": True}
    values.update(overrides)
    return FoldsConfig(**values)  # type: ignore[arg-type]


def test_original_folds_keep_groups_whole_and_balanced() -> None:
    table = crops_table(groups=12)
    table["fold"] = assign_folds(table, config())
    assert find_leaks(table) == []
    sizes = table.groupby("fold").size()
    assert list(sizes.index) == [0, 1, 2] and sizes.max() - sizes.min() <= 9  # at most one group apart


def test_original_folds_are_seeded() -> None:
    table = crops_table(groups=12)
    a, b = assign_folds(table, config(seed=1)), assign_folds(table, config(seed=1))
    assert a.equals(b)
    assert not a.equals(assign_folds(table, config(seed=2)))


def with_identities(table: pd.DataFrame, donor_of: dict[int, int]) -> pd.DataFrame:
    """Reals show person g; fake g_k shows its donor's face (person donor_of[g])."""
    table = table.copy()
    group = table["original"].str.extract(r"real(\d+)", expand=False).astype(int)
    is_fake = table["label"] == "FAKE"
    table["identity"] = "p" + group.astype(str)
    table.loc[is_fake, "identity"] = "p" + group[is_fake].map(donor_of).astype(str)
    return table


def test_identity_labels_join_groups_into_one_fold() -> None:
    # Pairs swap faces with each other: (0, 1), (2, 3), ...; every pair must share a fold.
    table = with_identities(crops_table(groups=12), {g: g ^ 1 for g in range(12)})
    assert leak_units(table, identity=True).nunique() == 6
    assert leak_units(table, identity=False).nunique() == 12
    table["fold"] = assign_folds(table, config())
    assert find_leaks(table, identity=True) == []
    pairs = table.assign(pair=table["identity"].str[1:].astype(int) // 2).groupby("pair")["fold"].nunique()
    assert (pairs == 1).all()


def test_identity_leaks_are_found_and_can_be_switched_off() -> None:
    table = with_identities(crops_table(groups=12), {g: g ^ 1 for g in range(12)})
    table["fold"] = assign_folds(table, config(identity=False, seed=3))
    leaks = find_leaks(table, identity=True)
    assert leaks and all(leak.startswith("identity:p") for leak in leaks)
    assert find_leaks(table, identity=False) == []  # originals alone stay whole


def test_too_few_leak_free_groups_is_a_clear_error() -> None:
    # Every fake's donor is person 0: one connected group, nothing left for the other folds.
    table = with_identities(crops_table(groups=6), {g: 0 for g in range(6)})
    with pytest.raises(InputError, match=r"only 1 leak-free groups .*n_splits=3"):
        assign_folds(table, config())
    assert assign_folds(table, config(identity=False)).nunique() == 3


def test_rows_without_identity_fall_back_to_originals() -> None:
    table = crops_table(groups=6).assign(identity="")
    assert leak_units(table, identity=True).nunique() == 6


def test_find_leaks_detects_a_straddling_original() -> None:
    table = crops_table(groups=2)
    table["fold"] = 0
    table.loc[table["video"] == "fake1_0.mp4", "fold"] = 1
    assert find_leaks(table) == ["dfdc_train_part_0/real1.mp4"]


def test_part_folds_follow_dfdc_first_place() -> None:
    parts = [f"dfdc_train_part_{n}" for n in (0, 1, 2, 3, 44, 45, 49)]
    table = pd.DataFrame({"part": parts, "original": "x.mp4"})
    assert list(folds_by_part(table, 16, 50)) == [0, 0, 0, 1, 14, 15, 15]
    with pytest.raises(ParamsError, match="trailing number"):
        part_number("my_part")


def test_folds_config_validation(tmp_path: Path) -> None:
    config = FoldsConfig.from_params(as_params(tiny_params(tmp_path, folds__n_splits=3, folds__seed=1)))
    assert config == FoldsConfig("original", 3, 1, 16, 50, True)
    with pytest.raises(ParamsError, match=r"folds\.strategy"):
        as_params(tiny_params(tmp_path, folds__strategy="random", folds__n_splits=3))
    with pytest.raises(ParamsError, match=r"folds\.identity"):
        as_params(tiny_params(tmp_path, folds__identity="yes", folds__n_splits=3))
