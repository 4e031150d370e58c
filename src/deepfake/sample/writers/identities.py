"""The identities maps, ``identities/<dataset>.csv`` (``path,identity``), read by every layout adapter
through its ``identities`` option (``deepfake.media.layouts.base``).

One map per extra layout: who each video shows (the photo stem, as DFDC's ``identity`` key), so folds can
keep a person in one fold across datasets. A swap shows its donor; a reenactment or re-texture shows its
target. DeeperForensics' map also labels the FF++ reals it borrows, by the path its index gives them
(``../ffpp/...``, via ``ffpp_root``).
"""

from __future__ import annotations

from deepfake.sample.plan import IDENTITIES
from deepfake.sample.writers.base import DatasetLayout, csv_bytes

__all__ = ["identities_folder"]


def identities_folder(layouts: list[DatasetLayout]) -> DatasetLayout:
    """The identities folder: one ``<dataset>.csv`` per layout in ``layouts``, rows sorted."""
    texts = {
        f"{layout.name}.csv": csv_bytes(
            ["path", "identity"],
            sorted([[e.path, e.identity] for e in layout.entries] + list(map(list, layout.borrowed))),
        )
        for layout in layouts
    }
    return DatasetLayout(IDENTITIES, {}, {}, texts)
