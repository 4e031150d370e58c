"""DeeperForensics-1.0, read by the ``deeperforensics`` layout adapter
(``deepfake.media.layouts.deeperforensics``, ``DEEPERFORENSICS``).

``deeperforensics/``: ``manipulated_videos/end_to_end/<ffpp id>_<actor>.mp4`` (the higher-quality swap
of the pair partner, the "actor", onto the FF++ target) and ``lists/splits/{train,val,test}.txt``. Its
reals are FF++'s and are not shipped: the adapter reaches them through ``ffpp_root``.
"""

from __future__ import annotations

from pathlib import Path

from deepfake.core.errors import InputError
from deepfake.core.vocabulary import FAKE, SPLITS
from deepfake.sample.plan import SampleConfig, SamplePlan, identity_of
from deepfake.sample.render import RenderKey
from deepfake.sample.writers.base import DatasetLayout, Entry, lines_bytes, shows, swap_key
from deepfake.sample.writers.ffpp import FFPP_COMPRESSION

__all__ = ["ACTOR_LETTER", "deeperforensics_folder"]

# DeeperForensics names its actors M/W + a number; the letter of each photo's person.
ACTOR_LETTER = {
    "astronaut.jpg": "W",
    "grace_hopper.jpg": "W",
    "t1_person0.jpg": "W",
    "t1_person1.jpg": "W",
    "t1_person2.jpg": "M",
    "t1_person3.jpg": "M",
    "t1_person4.jpg": "M",
    "t1_person5.jpg": "W",
    "tom_hanks.png": "M",
}


def _actor(person: str, people: tuple[str, ...]) -> str:
    if person not in ACTOR_LETTER:
        raise InputError(f"{person}: add its DeeperForensics actor letter (M/W) to ACTOR_LETTER in {__name__}")
    return f"{ACTOR_LETTER[person]}{people.index(person):03d}"


def deeperforensics_folder(plan: SamplePlan, config: SampleConfig) -> DatasetLayout:
    """The DeeperForensics folder: each FF++ target's improved swap of its partner, the split lists, and
    the identities of the FF++ reals it borrows."""
    videos: dict[str, RenderKey] = {}
    entries = []
    for person, ffpp_id in plan.ffpp_ids.items():
        partner = plan.partner(person)
        assert partner is not None  # FF++ ids go to paired people only
        key = swap_key(person, partner, config.hq_generator_size)
        path = f"manipulated_videos/end_to_end/{ffpp_id}_{_actor(partner, plan.people)}.mp4"
        videos[path] = key
        entries.append(Entry(path, FAKE, "end_to_end", plan.split_of(person), shows(key)))
    entries.sort()
    texts = {
        f"lists/splits/{split}.txt": lines_bytes([Path(e.path).name for e in entries if e.split == split])
        for split in SPLITS
    }
    # Its reals are the FF++ targets, which the index reaches through ffpp_root (../ffpp beside it):
    # label them too, so the same clip is the same person in both datasets.
    borrowed = tuple(
        (f"../ffpp/original_sequences/youtube/{FFPP_COMPRESSION}/videos/{ffpp_id}.mp4", identity_of(person))
        for person, ffpp_id in sorted(plan.ffpp_ids.items(), key=lambda item: item[1])
        if "ffpp" in config.datasets
    )
    return DatasetLayout("deeperforensics", videos, {}, texts, tuple(entries), borrowed)
