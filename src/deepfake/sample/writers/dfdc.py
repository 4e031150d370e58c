"""The DFDC training parts (``sample.parts``), read by the ``dfdc`` layout adapter
(``deepfake.media.layouts.dfdc``, ``DFDC``).

``<part>/``: every person of the part's share of the people, their clip plus up to ``fakes_per_real``
swaps whose donors come from the person's identity group, the person included (a self-swap), and
``metadata.json`` with ``original: null`` on REALs and the optional ``identity`` key on every entry. All
are DFDC's own ``split: train``, as the real parts are.
"""

from __future__ import annotations

from deepfake.core.fileio import json_bytes
from deepfake.core.vocabulary import FAKE, REAL, TRAIN
from deepfake.media.metadata import METADATA_NAME
from deepfake.sample.plan import SampleConfig, SamplePlan, identity_of
from deepfake.sample.render import RenderKey
from deepfake.sample.writers.base import DatasetLayout, Entry, real_key, swap_key

__all__ = ["dfdc_parts"]


def dfdc_parts(plan: SamplePlan, config: SampleConfig) -> list[DatasetLayout]:
    """The DFDC training parts: videos + metadata.json (null originals on REALs, identity on all)."""
    layouts = []
    for part in config.parts:
        videos: dict[str, RenderKey] = {}
        metadata: dict[str, dict] = {}
        for clip in plan.clips:
            if clip.part != part:
                continue
            videos[clip.name] = real_key(clip.person)
            metadata[clip.name] = {
                "label": REAL,
                "split": TRAIN,
                "original": None,
                "identity": identity_of(clip.person),
            }
            for fake in clip.fakes:
                videos[fake.name] = swap_key(clip.person, fake.donor, config.generator_size)
                metadata[fake.name] = {
                    "label": FAKE,
                    "split": TRAIN,
                    "original": clip.name,
                    "identity": identity_of(fake.donor),
                }
        entries = [Entry(name, e["label"], "", e["split"], e["identity"]) for name, e in sorted(metadata.items())]
        layouts.append(DatasetLayout(part, videos, {}, {METADATA_NAME: json_bytes(metadata)}, tuple(entries)))
    return layouts
