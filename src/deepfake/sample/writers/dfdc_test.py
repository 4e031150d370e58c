"""The DFDC public test set, read by the ``dfdc_test`` layout adapter (``deepfake.media.layouts.dfdc``,
``DFDC_TEST``).

``dfdc_test/``: the test groups' people only, each person's clip and (for a paired person) the swap of
their pair partner's face, under new DFDC-style names, and ``labels.csv`` (``filename,label``,
1 = fake). Like the real set, it names no originals.
"""

from __future__ import annotations

from deepfake.core.vocabulary import FAKE, REAL, TEST
from deepfake.media.layouts.dfdc import LABELS_CSV, TEST_LABELS
from deepfake.sample.plan import SampleConfig, SamplePlan, identity_of
from deepfake.sample.render import RenderKey
from deepfake.sample.writers.base import DatasetLayout, Entry, csv_bytes, real_key, shows, swap_key

TEST_CODE = {label: int(code) for code, label in TEST_LABELS.items()}  # DFDC test's labels.csv: 1 = fake

__all__ = ["dfdc_test_folder"]


def dfdc_test_folder(plan: SamplePlan, config: SampleConfig) -> DatasetLayout:
    """The DFDC test folder: the test people's clips and swaps, and labels.csv."""
    videos: dict[str, RenderKey] = {}
    entries = []
    for person, (real_name, fake_name) in plan.dfdc_test_names.items():
        videos[real_name] = real_key(person)
        entries.append(Entry(real_name, REAL, "", TEST, identity_of(person)))
        partner = plan.partner(person)
        if fake_name is not None and partner is not None:
            key = swap_key(person, partner, config.generator_size)
            videos[fake_name] = key
            entries.append(Entry(fake_name, FAKE, "", TEST, shows(key)))
    entries.sort()
    labels = csv_bytes(["filename", "label"], [[e.path, TEST_CODE[e.label]] for e in entries])
    return DatasetLayout("dfdc_test", videos, {}, {LABELS_CSV: labels}, tuple(entries))
