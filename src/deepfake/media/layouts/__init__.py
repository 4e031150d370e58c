"""Dataset layouts and the canonical index (docs/datasets.md).

``ingest(name, layout, root, options)`` lists a dataset root in one of the supported layouts as a
``DatasetIndex``; ``write_index`` / ``read_index_csv`` store it as ``data/index/<dataset>.csv``;
``path_problem`` checks that an index path stays inside the root. One module per layout:
``dfdc`` (dfdc, dfdc_test), ``dfdcp``, ``ffpp``, ``celebdf``, ``deeperforensics``. Imports ``core``
and ``media`` only.
"""

from deepfake.media.layouts import celebdf, deeperforensics, dfdc, dfdcp, ffpp  # noqa: F401  (register)
from deepfake.media.layouts.base import (
    COMPRESSIONS,
    INDEX_COLUMNS,
    LABELS,
    LAYOUTS,
    REQUIRED,
    SPLITS,
    DatasetIndex,
    IndexRow,
    Layout,
    LayoutError,
    Problem,
    extra_roots,
    ingest,
    path_problem,
    read_index_csv,
    write_index,
)

__all__ = [
    "COMPRESSIONS",
    "INDEX_COLUMNS",
    "LABELS",
    "LAYOUTS",
    "REQUIRED",
    "SPLITS",
    "DatasetIndex",
    "IndexRow",
    "Layout",
    "LayoutError",
    "Problem",
    "extra_roots",
    "ingest",
    "path_problem",
    "read_index_csv",
    "write_index",
]
