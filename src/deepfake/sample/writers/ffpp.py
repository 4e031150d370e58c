"""FaceForensics++ (c23), read by the ``ffpp`` layout adapter (``deepfake.media.layouts.ffpp``, ``FFPP``).

``ffpp/``: ``original_sequences/youtube/c23/videos/NNN.mp4`` for each paired person,
``manipulated_sequences/<method>/{c23,masks}/videos/<target>_<source>.mp4`` for both directions of every
pair and the methods ``Deepfakes`` (the face swap), ``Face2Face`` (reenactment) and ``NeuralTextures``
(re-texture, the held-out method), with FF++'s mask videos, and ``splits/{train,val,test}.json``. People
without a pair are not in FF++.
"""

from __future__ import annotations

import json

from deepfake.core.vocabulary import FAKE, REAL, SPLITS
from deepfake.sample.plan import SampleConfig, SamplePlan, identity_of
from deepfake.sample.render import RenderKey
from deepfake.sample.writers.base import DatasetLayout, Entry, real_key, shows

__all__ = ["FFPP_COMPRESSION", "FFPP_METHODS", "ffpp_folder"]

FFPP_METHODS = ("Deepfakes", "Face2Face", "NeuralTextures")
FFPP_COMPRESSION = "c23"
FFPP_KINDS = {"Deepfakes": "swap", "Face2Face": "reenact", "NeuralTextures": "retexture"}


def _method_key(method: str, target: str, source: str, config: SampleConfig) -> RenderKey:
    kind = FFPP_KINDS[method]
    return RenderKey(kind, target, source, config.generator_size if kind == "swap" else 0)


def ffpp_folder(plan: SamplePlan, config: SampleConfig) -> DatasetLayout:
    """The FF++ folder: reals, both directions of every pair in each method with their masks, the splits."""
    ids = plan.ffpp_ids
    videos: dict[str, RenderKey] = {}
    masks: dict[str, RenderKey] = {}
    entries = []
    for person in sorted(ids, key=ids.__getitem__):
        path = f"original_sequences/youtube/{FFPP_COMPRESSION}/videos/{ids[person]}.mp4"
        videos[path] = real_key(person)
        entries.append(Entry(path, REAL, "", plan.split_of(person), identity_of(person)))
    for a, b in plan.pairs:
        for target, source in ((a, b), (b, a)):  # FF++ ships both directions of a pair
            name = f"{ids[target]}_{ids[source]}.mp4"
            for method in FFPP_METHODS:
                key = _method_key(method, target, source, config)
                path = f"manipulated_sequences/{method}/{FFPP_COMPRESSION}/videos/{name}"
                videos[path] = key
                masks[f"manipulated_sequences/{method}/masks/videos/{name}"] = key
                entries.append(Entry(path, FAKE, method, plan.split_of(target), shows(key)))
    texts = {}
    for split in SPLITS:
        pairs = sorted(sorted([ids[a], ids[b]]) for a, b in plan.pairs if plan.split_of(a) == split)
        texts[f"splits/{split}.json"] = (json.dumps(pairs, indent=2) + "\n").encode("utf-8")
    return DatasetLayout("ffpp", videos, masks, texts, tuple(sorted(entries)))
