"""What every layout writer plans: one output folder (:class:`DatasetLayout`) with the renders it copies,
the mask videos, its list files and each video's labels (:class:`Entry`)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

from deepfake.core.vocabulary import FAKE, REAL
from deepfake.sample.plan import identity_of
from deepfake.sample.render import RenderKey

__all__ = ["DatasetLayout", "Entry", "csv_bytes", "lines_bytes", "real_key", "shows", "swap_key"]


class Entry(NamedTuple):
    """One video of a layout, as the real dataset labels it (vocabulary translated)."""

    path: str  # relative to the dataset root
    label: str  # REAL or FAKE
    method: str  # FAKE: the layout's method name, "" when the layout does not say
    split: str  # the split its people belong to (train, val, test)
    identity: str  # whose face it shows


@dataclass(frozen=True)
class DatasetLayout:
    """One output folder: which render goes where, the list files, and every video's labels."""

    name: str
    videos: dict[str, RenderKey]  # relative path -> render
    masks: dict[str, RenderKey]  # relative path -> the fake whose mask it is
    texts: dict[str, bytes]  # relative path -> metadata / list file
    entries: tuple[Entry, ...] = ()
    # identities of videos the dataset uses from a declared extra root (path with ..), not shipped here
    borrowed: tuple[tuple[str, str], ...] = ()

    def counts(self) -> dict[str, Any]:
        """real/fake totals, fakes per method, real/fake per split."""
        fakes = [e for e in self.entries if e.label == FAKE]
        splits: dict[str, dict[str, int]] = {}
        for entry in self.entries:
            row = splits.setdefault(entry.split or "none", {"real": 0, "fake": 0})
            row["real" if entry.label == REAL else "fake"] += 1
        return {
            "real": len(self.entries) - len(fakes),
            "fake": len(fakes),
            "methods": dict(sorted(Counter(e.method or "unknown" for e in fakes).items())),
            "splits": dict(sorted(splits.items())),
            "masks": len(self.masks),
        }


def real_key(person: str) -> RenderKey:
    """The person's real clip."""
    return RenderKey("real", person)


def swap_key(target: str, donor: str, size: int) -> RenderKey:
    """The donor's face, rendered by a generator of ``size`` pixels, swapped into the target's clip."""
    return RenderKey("swap", target, donor, size)


def shows(key: RenderKey) -> str:
    """Whose face a render shows: a swap its donor, anything else its target."""
    return identity_of(key.source if key.kind == "swap" else key.target)


def lines_bytes(lines: list[str]) -> bytes:
    """A text list file: one line each, ``\\n`` ends, UTF-8."""
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def csv_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    """A CSV list file: the header, then the rows, ``\\n`` ends, UTF-8."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")
