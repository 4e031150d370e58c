"""Who is who in the sample: its settings, people, identity groups, official splits, clips and names.

People are split at random (from ``seed``) into ``identity_groups`` groups; with the 9 photos and 5 groups
that is four groups of two and one person alone. Within a group people are paired in order (a, b),
(c, d), ...; a pair is one FF++ pair, and every fake of the extra layouts is made within its pair, so no
face leaves its group. Whole groups are assigned to the official splits, again from ``seed``: in a random
order, groups with a person left unpaired first (they hold Celeb-DF's YouTube-real people, which its test
list includes; it also keeps a pair in val), the first ``test_groups`` go to test, the next ``val_groups``
to val, the rest to train. Every layout's official split follows that assignment (deepfake.sample.writers).

Everything here is drawn from one ``numpy.random.default_rng(seed)`` in a fixed order, so the same
config gives the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from deepfake.core.errors import InputError, ParamsError
from deepfake.core.params import SAMPLE_IDENTITIES, Params
from deepfake.core.vocabulary import TEST, TRAIN, VAL
from deepfake.sample.annotations import faces_dir, read_photo
from deepfake.sample.motion import animate_clip

__all__ = [
    "IDENTITIES",
    "ClipPlan",
    "FakePlan",
    "SampleConfig",
    "SamplePlan",
    "identity_of",
    "plan_sample",
]

IDENTITIES = SAMPLE_IDENTITIES  # out_root/identities/<dataset>.csv

# Fixed roles, so the special clips never depend on the seed.
TWO_FACE_PHOTO = "t1_person2.jpg"  # two full faces; both stay in view, only the subject is swapped
LEAVING_PHOTO = "astronaut.jpg"  # nothing face-like beside her, so the off-screen frames hold no face
PORTRAIT_PHOTO = "grace_hopper.jpg"  # a tall photo, so the portrait canvas suits it


@dataclass(frozen=True)
class SampleConfig:
    """What the sample looks like: the ``sample`` section of params.yaml.

    Validated once, by the params schema (``deepfake.core.params.SampleParams``), never here; only what
    depends on the packaged photos (enough people for the parts and groups) is checked by
    :func:`plan_sample`.
    """

    seed: int
    parts: tuple[str, ...]
    frames: int
    fps: int
    width: int
    height: int
    fakes_per_real: int
    identity_groups: int
    generator_size: int
    hq_generator_size: int
    test_groups: int
    val_groups: int
    datasets: tuple[str, ...]

    @classmethod
    def from_params(cls, params: Params) -> SampleConfig:
        """From the validated ``sample`` section."""
        sect = params.sample
        return cls(
            seed=sect.seed,
            parts=tuple(sect.parts),
            frames=sect.frames,
            fps=sect.fps,
            width=sect.width,
            height=sect.height,
            fakes_per_real=sect.fakes_per_real,
            identity_groups=sect.identity_groups,
            generator_size=sect.generator_size,
            hq_generator_size=sect.hq_generator_size,
            test_groups=sect.test_groups,
            val_groups=sect.val_groups,
            datasets=tuple(sect.datasets),
        )

    @property
    def folders(self) -> tuple[str, ...]:
        """Every folder the sample writes under its output root (the DVC stage's outs)."""
        return (*self.parts, *self.datasets, *((IDENTITIES,) if self.datasets else ()))


def identity_of(photo: str) -> str:
    """The identity label of the person in ``photo`` (its file stem), as in metadata.json and identities/*.csv."""
    return Path(photo).stem


@dataclass(frozen=True)
class FakePlan:
    """One fake clip: its file name and the photo whose face is swapped in."""

    name: str
    donor: str


@dataclass(frozen=True)
class ClipPlan:
    """One real clip (and its fakes): everything needed to render it, known before rendering."""

    name: str
    person: str
    part: str
    role: str  # "plain", "two_faces", "leaves_frame" or "portrait"
    size: tuple[int, int]  # (width, height) of the canvas
    transforms: np.ndarray = field(repr=False)  # (frames, 2, 3): photo -> canvas, per frame
    gains: np.ndarray = field(repr=False)  # (frames,)
    gammas: np.ndarray = field(repr=False)  # (frames,)
    landmarks: np.ndarray = field(repr=False)  # (frames, 5, 2): the subject's landmarks on the canvas
    visible: np.ndarray = field(repr=False)  # (frames,) bool: the subject's box overlaps the canvas
    fakes: tuple[FakePlan, ...] = ()


def _draw_name(rng: np.random.Generator, taken: set[str]) -> str:
    """A DFDC-like name: 10 random lowercase letters + .mp4, unique within the sample."""
    while True:
        name = "".join(chr(ord("a") + int(k)) for k in rng.integers(0, 26, size=10)) + ".mp4"
        if name not in taken:
            taken.add(name)
            return name


def _role(photo: str) -> str:
    return {TWO_FACE_PHOTO: "two_faces", LEAVING_PHOTO: "leaves_frame", PORTRAIT_PHOTO: "portrait"}.get(photo, "plain")


@dataclass(frozen=True)
class SamplePlan:
    """Who is who: every person's clip, identity group, pair, official split and ids in each layout."""

    people: tuple[str, ...]  # photo file names, sorted
    clips: tuple[ClipPlan, ...]  # one per person, in ``people`` order
    groups: tuple[tuple[str, ...], ...]  # identity groups (members in draw order)
    group_splits: tuple[str, ...]  # the official split of each group
    pairs: tuple[tuple[str, str], ...]  # FF++ pairs: consecutive members of a group
    ffpp_ids: dict[str, str] = field(repr=False)  # paired person -> "000", ...
    celebdf_ids: dict[str, str] = field(repr=False)  # paired person outside val -> "id<k>"
    youtube_ids: dict[str, str] = field(repr=False)  # unpaired person outside val -> "00000", ...
    dfdcp_ids: dict[str, str] = field(repr=False)  # person outside val -> 7 digits
    dfdc_test_names: dict[str, tuple[str, str | None]] = field(repr=False)  # test person -> (real, fake)

    def clip(self, person: str) -> ClipPlan:
        return self.clips[self.people.index(person)]

    def group_of(self, person: str) -> int:
        return next(k for k, members in enumerate(self.groups) if person in members)

    def split_of(self, person: str) -> str:
        return self.group_splits[self.group_of(person)]

    def partner(self, person: str) -> str | None:
        """The other member of the person's pair, or None for a person without one."""
        for a, b in self.pairs:
            if person in (a, b):
                return b if person == a else a
        return None

    def people_in(self, *splits: str) -> list[str]:
        return [p for p in self.people if self.split_of(p) in splits]


def plan_sample(config: SampleConfig, annotations: dict, faces: Path | None = None) -> SamplePlan:
    """Every clip's name, part, motion, landmarks and donors, and every layout's people and names,
    drawn from ``config.seed`` only."""
    faces = Path(faces) if faces is not None else faces_dir()
    people = sorted(annotations)  # sorted: the RNG is consumed in a fixed order
    for photo in (TWO_FACE_PHOTO, LEAVING_PHOTO, PORTRAIT_PHOTO):
        if photo not in annotations:
            raise InputError(f"the sample needs {photo} in {faces}")
    # The schema cannot know how many photos ship: these checks need them.
    if len(config.parts) > len(people):
        raise ParamsError(f"{len(config.parts)} parts but only {len(people)} people to spread over them")
    if config.identity_groups > len(people):
        raise ParamsError(f"identity_groups={config.identity_groups} but only {len(people)} people")
    largest = -(-len(people) // config.identity_groups)
    if config.fakes_per_real > largest:
        raise ParamsError(
            f"fakes_per_real={config.fakes_per_real} but the largest of {config.identity_groups} identity groups "
            f"of {len(people)} people has only {largest} donors per person (the person included: a self-swap)"
        )
    rng = np.random.default_rng(config.seed)
    groups = np.array_split(rng.permutation(len(people)), len(config.parts))
    part_of = {people[int(j)]: config.parts[k] for k, group in enumerate(groups) for j in group}
    members = tuple(
        tuple(people[int(j)] for j in group)
        for group in np.array_split(rng.permutation(len(people)), config.identity_groups)
    )
    group_of = {person: k for k, group in enumerate(members) for person in group}
    taken: set[str] = set()
    clips = []
    for photo in people:
        clip = _plan_clip(rng, config, annotations, faces, photo, part_of[photo], taken)
        # Donors from the same identity group only: with folds keeping a group together, no face
        # seen in a training fake belongs to a person whose real clip is validated or tested on.
        # The person is a candidate too: a self-swap keeps the identity and changes only the
        # rendering (generator resolution, colour, blend), as reenactment-style methods do. A
        # person in a group smaller than fakes_per_real gets one fake per member.
        candidates = [p for p in people if group_of[p] == group_of[photo]]
        count = min(config.fakes_per_real, len(candidates))
        donors = rng.choice(candidates, size=count, replace=False)
        fakes = tuple(FakePlan(_draw_name(rng, taken), str(donor)) for donor in donors)
        clips.append(replace(clip, fakes=fakes))
    # Whole groups to the official splits: the first test_groups of a random order to test, the
    # next val_groups to val, the rest to train. Groups with a person left unpaired come first:
    # they hold Celeb-DF's YouTube-real people, which its test list includes, and val keeps pairs.
    unpaired = [len(group) % 2 for group in members]
    order = sorted((int(k) for k in rng.permutation(config.identity_groups)), key=lambda k: -unpaired[k])
    rank = {group: i for i, group in enumerate(order)}
    group_splits = tuple(
        TEST if rank[k] < config.test_groups else VAL if rank[k] < config.test_groups + config.val_groups else TRAIN
        for k in range(config.identity_groups)
    )
    pairs = tuple((group[i], group[i + 1]) for group in members for i in range(0, len(group) - 1, 2))
    paired = [person for pair in pairs for person in pair]
    split_of = {person: group_splits[group_of[person]] for person in people}
    no_val = [p for p in people if split_of[p] != VAL]  # Celeb-DF and DFDCP have no val split
    ffpp_ids = _numbered(rng, paired, "{:03d}")
    celebdf_ids = _numbered(rng, [p for p in paired if p in no_val], "id{}")
    youtube_ids = _numbered(rng, [p for p in no_val if p not in paired], "{:05d}")
    dfdcp_numbers = rng.choice(900_000, size=len(no_val), replace=False) + 1_000_000
    dfdcp_ids = {person: str(int(n)) for person, n in zip(no_val, dfdcp_numbers, strict=True)}
    dfdc_test_names = {
        person: (_draw_name(rng, taken), _draw_name(rng, taken) if person in paired else None)
        for person in people
        if split_of[person] == TEST
    }
    return SamplePlan(
        people=tuple(people),
        clips=tuple(clips),
        groups=members,
        group_splits=group_splits,
        pairs=pairs,
        ffpp_ids=ffpp_ids,
        celebdf_ids=celebdf_ids,
        youtube_ids=youtube_ids,
        dfdcp_ids=dfdcp_ids,
        dfdc_test_names=dfdc_test_names,
    )


def _numbered(rng: np.random.Generator, people: list[str], pattern: str) -> dict[str, str]:
    """Number ``people`` 0, 1, ... in a random order, formatted by ``pattern``."""
    order = rng.permutation(len(people))
    return {people[int(j)]: pattern.format(k) for k, j in enumerate(order)}


def _plan_clip(
    rng: np.random.Generator,
    config: SampleConfig,
    annotations: dict,
    faces: Path,
    photo: str,
    part: str,
    taken: set[str],
) -> ClipPlan:
    role = _role(photo)
    size = (config.height, config.width) if role == "portrait" else (config.width, config.height)
    shape = read_photo(faces / photo).shape
    motion = animate_clip(rng, annotations, photo, role, size, shape, config.frames)  # draws before the name
    return ClipPlan(
        name=_draw_name(rng, taken),
        person=photo,
        part=part,
        role=role,
        size=size,
        transforms=motion.transforms,
        gains=motion.gains,
        gammas=motion.gammas,
        landmarks=motion.landmarks,
        visible=motion.visible,
    )
