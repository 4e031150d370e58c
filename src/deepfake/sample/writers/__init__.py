"""One writer per dataset layout the sample writes, each named as the layout whose adapter in
``deepfake.media.layouts`` must read what it writes: ``dfdc`` (the DFDC training parts), ``ffpp``,
``celebdf``, ``dfdc_test``, ``dfdcp``, ``deeperforensics``; plus ``identities`` (the identities maps).

A writer plans its folder (:class:`~deepfake.sample.writers.base.DatasetLayout`: which render goes to
which path, the list files, every video's labels); ``deepfake.sample.build`` renders and writes it.
"""

from __future__ import annotations

from collections.abc import Callable

from deepfake.core.params import SAMPLE_DATASETS
from deepfake.sample.plan import SampleConfig, SamplePlan
from deepfake.sample.writers.base import DatasetLayout
from deepfake.sample.writers.celebdf import celebdf_folder
from deepfake.sample.writers.deeperforensics import deeperforensics_folder
from deepfake.sample.writers.dfdc import dfdc_parts
from deepfake.sample.writers.dfdc_test import dfdc_test_folder
from deepfake.sample.writers.dfdcp import dfdcp_folder
from deepfake.sample.writers.ffpp import ffpp_folder
from deepfake.sample.writers.identities import identities_folder

__all__ = ["DATASETS", "WRITERS", "DatasetLayout", "layout_datasets"]

# The extra layouts the sample can write, each into out_root/<name>: the names params accept for
# sample.datasets (a test keeps WRITERS equal to them).
DATASETS = SAMPLE_DATASETS
WRITERS: dict[str, Callable[[SamplePlan, SampleConfig], DatasetLayout]] = {
    "ffpp": ffpp_folder,
    "celebdf": celebdf_folder,
    "dfdc_test": dfdc_test_folder,
    "dfdcp": dfdcp_folder,
    "deeperforensics": deeperforensics_folder,
}


def layout_datasets(plan: SamplePlan, config: SampleConfig) -> list[DatasetLayout]:
    """Every output folder of the sample (``config.folders``), planned but not rendered."""
    layouts = dfdc_parts(plan, config)
    extra = [WRITERS[name](plan, config) for name in config.datasets]
    if extra:
        extra.append(identities_folder(extra))
    return layouts + extra
