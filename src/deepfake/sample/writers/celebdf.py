"""Celeb-DF v2, read by the ``celebdf`` layout adapter (``deepfake.media.layouts.celebdf``, ``CELEBDF``).

``celebdf/``: ``Celeb-real/id<k>_0000.mp4`` (paired people), ``YouTube-real/NNNNN.mp4`` (people without
a pair), ``Celeb-synthesis/id<t>_id<s>_0000.mp4`` (the higher-quality swap, both directions of a pair)
and ``List_of_testing_videos.txt`` (``1`` = REAL, ``0`` = FAKE). Celeb-DF has no val split: whatever is
not listed counts as train, so the val groups' people are left out rather than called train.
"""

from __future__ import annotations

from deepfake.core.vocabulary import FAKE, REAL, TEST, TRAIN
from deepfake.media.layouts.celebdf import LIST_LABELS
from deepfake.sample.plan import SampleConfig, SamplePlan, identity_of
from deepfake.sample.render import RenderKey
from deepfake.sample.writers.base import DatasetLayout, Entry, lines_bytes, real_key, shows, swap_key

LIST_CODE = {label: code for code, label in LIST_LABELS.items()}  # Celeb-DF's test list spelling: 1 = real

__all__ = ["celebdf_folder"]


def celebdf_folder(plan: SamplePlan, config: SampleConfig) -> DatasetLayout:
    """The Celeb-DF folder: real and YouTube-real clips, the improved swaps of each pair, the test list."""
    ids = plan.celebdf_ids
    videos: dict[str, RenderKey] = {}
    entries = []

    def split(person: str) -> str:  # Celeb-DF lists its test videos; everything else is train
        return TEST if plan.split_of(person) == TEST else TRAIN

    for person, celeb_id in ids.items():
        path = f"Celeb-real/{celeb_id}_0000.mp4"
        videos[path] = real_key(person)
        entries.append(Entry(path, REAL, "", split(person), identity_of(person)))
    for person, number in plan.youtube_ids.items():
        path = f"YouTube-real/{number}.mp4"
        videos[path] = real_key(person)
        entries.append(Entry(path, REAL, "", split(person), identity_of(person)))
    for a, b in plan.pairs:
        if a not in ids:  # a val pair: Celeb-DF has no val split
            continue
        for target, source in ((a, b), (b, a)):
            key = swap_key(target, source, config.hq_generator_size)
            path = f"Celeb-synthesis/{ids[target]}_{ids[source]}_0000.mp4"
            videos[path] = key
            entries.append(Entry(path, FAKE, "Celeb-synthesis", split(target), shows(key)))
    entries.sort()
    # Celeb-DF's inverted convention: 1 = real, 0 = fake.
    listed = [f"{LIST_CODE[e.label]} {e.path}" for e in entries if e.split == TEST]
    return DatasetLayout("celebdf", videos, {}, {"List_of_testing_videos.txt": lines_bytes(listed)}, tuple(entries))
