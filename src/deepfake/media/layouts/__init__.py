"""Dataset layouts and the canonical index (docs/datasets.md).

``ingest(name, layout, root, options)`` lists a dataset root in one of the supported layouts as a
``DatasetIndex``; ``write_index`` / ``read_index_csv`` store it as ``data/index/<dataset>.csv``, and
``load_dataset`` reads it as the stages' view of the dataset (``deepfake.media.metadata.PartMetadata``);
``deepfake.media.metadata.path_problem`` checks that an index path stays inside the root. One module per layout:
``dfdc`` (dfdc, dfdc_test), ``dfdcp``, ``ffpp``, ``celebdf``, ``deeperforensics``. Imports ``core``
and ``media`` only; ``deepfake.media.metadata`` never imports the layouts (one way, no cycle). The
labels, splits, compressions and layout names are ``deepfake.core.vocabulary``'s.
"""

from deepfake.media.layouts import celebdf, deeperforensics, dfdc, dfdcp, ffpp  # noqa: F401  (register)
from deepfake.media.layouts.base import (
    INDEX_COLUMNS,
    INDEX_COMPRESSIONS,
    INDEX_SPLITS,
    LAYOUTS,
    REQUIRED,
    DatasetIndex,
    IndexRow,
    Layout,
    LayoutError,
    Problem,
    extra_roots,
    ingest,
    load_dataset,
    read_index_csv,
    write_index,
)

__all__ = [
    "INDEX_COLUMNS",
    "INDEX_COMPRESSIONS",
    "INDEX_SPLITS",
    "LAYOUTS",
    "REQUIRED",
    "DatasetIndex",
    "IndexRow",
    "Layout",
    "LayoutError",
    "Problem",
    "extra_roots",
    "ingest",
    "load_dataset",
    "read_index_csv",
    "write_index",
]
