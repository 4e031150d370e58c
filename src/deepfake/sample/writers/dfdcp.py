"""The DFDC preview set, read by the ``dfdcp`` layout adapter (``deepfake.media.layouts.dfdcp``, ``DFDCP``).

``dfdcp/``: ``original_videos/videos/<id>/<id>_A_001.mp4``, ``method_A`` (the swap) and ``method_B``
(the higher-quality swap) ``/videos/<id>/<id>_<A|B>/<source id>_<id>_<A|B>_001.mp4`` for a paired
person, and ``dataset.json`` (``label`` real/fake and ``set`` train/test per video). DFDCP has no val
split, so the val groups' people are left out.
"""

from __future__ import annotations

from deepfake.core.fileio import json_bytes
from deepfake.core.vocabulary import FAKE, REAL
from deepfake.sample.plan import SampleConfig, SamplePlan, identity_of
from deepfake.sample.render import RenderKey
from deepfake.sample.writers.base import DatasetLayout, Entry, real_key, shows, swap_key

__all__ = ["dfdcp_folder"]


def dfdcp_folder(plan: SamplePlan, config: SampleConfig) -> DatasetLayout:
    """The DFDC preview folder: originals, both generators' swaps of each pair partner, dataset.json."""
    ids = plan.dfdcp_ids
    videos: dict[str, RenderKey] = {}
    entries = []
    for person, pid in ids.items():
        split = plan.split_of(person)  # train or test: val people are left out
        path = f"original_videos/videos/{pid}/{pid}_A_001.mp4"
        videos[path] = real_key(person)
        entries.append(Entry(path, REAL, "", split, identity_of(person)))
        partner = plan.partner(person)
        if partner is None:
            continue
        for method, size in (("A", config.generator_size), ("B", config.hq_generator_size)):
            key = swap_key(person, partner, size)
            path = f"method_{method}/videos/{pid}/{pid}_{method}/{ids[partner]}_{pid}_{method}_001.mp4"
            videos[path] = key
            entries.append(Entry(path, FAKE, f"method_{method}", split, shows(key)))
    entries.sort()
    dataset = {e.path: {"label": e.label.lower(), "set": e.split} for e in entries}
    return DatasetLayout("dfdcp", videos, {}, {"dataset.json": json_bytes(dataset)}, tuple(entries))
