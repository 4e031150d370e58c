"""The datasets' vocabulary: labels, official splits, compressions, layout names, and what a video key
and an identity label look like.

Every layer names these: the params schema (``core.params``), the layouts and the canonical index
(``media``), folds, training and scoring (``modeling``), the stages and predict. They live in ``core``,
the one layer all of those may import, so each is defined once, here. A dataset's own spelling (Celeb-DF's
``1`` = real, DFDC test's ``1`` = fake, DFDC preview's ``real``/``fake``) is that layout's to translate
into these.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

REAL = "REAL"
FAKE = "FAKE"
LABELS = (REAL, FAKE)  # in the order of the model's target: 0 = REAL, 1 = FAKE (P(fake) is the positive class)

# The closed sets are Literal types, so the params schema and a type checker see the same names; the tuples
# are read from them (a Literal's arguments must be written out for a type checker to see them).
Split = Literal["train", "val", "test"]  # official splits (a video without one has "" in the index)
SPLITS: Final[tuple[Split, ...]] = get_args(Split)
TRAIN: Final[Split] = "train"
VAL: Final[Split] = "val"
TEST: Final[Split] = "test"
Compression = Literal["raw", "c23", "c40"]  # FaceForensics++'s (a video of another dataset has "" in the index)
COMPRESSIONS: Final[tuple[Compression, ...]] = get_args(Compression)

# The layouts deepfake.media.layouts registers, one adapter each (a test keeps the registry equal to this).
LayoutName = Literal["dfdc", "dfdc_test", "dfdcp", "ffpp", "celebdf", "deeperforensics"]
LAYOUT_NAMES: Final[tuple[LayoutName, ...]] = get_args(LayoutName)

# A video key: a plain file name, no folders, no leading dot, .mp4 (DFDC names are 10 letters + .mp4).
# Always used with fullmatch: with match, '$' also matches before a trailing newline ("a.mp4\n").
VIDEO_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}\.mp4$")
# An identity: a short plain label of the person (or cluster of look-alikes) whose face a video shows.
IDENTITY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")
# A dataset name's trailing number: a DFDC part's number (folds.strategy: part).
PART_NUMBER = re.compile(r"(\d+)$")


def is_video_name(name: object) -> bool:
    """Whether ``name`` is a plain ``.mp4`` file name (``VIDEO_NAME``, and no ``..`` anywhere)."""
    return isinstance(name, str) and VIDEO_NAME.fullmatch(name) is not None and ".." not in name


def is_identity(label: object) -> bool:
    """Whether ``label`` is a short plain identity label (``IDENTITY``)."""
    return isinstance(label, str) and IDENTITY.fullmatch(label) is not None
