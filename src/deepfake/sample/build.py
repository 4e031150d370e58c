"""Building the sample: plan it, render every video once, write each folder and swap it in whole.

Each REAL clip and each (clip, manipulation) fake is rendered once and its bytes copied wherever it
appears: DFDC's partner swaps are FF++'s Deepfakes, DFDCP's method_A and DFDC test's fakes; the
higher-quality swaps are Celeb-DF's synthesis, DFDCP's method_B and DeeperForensics' videos. Each folder
is built beside its place and renamed into it (``deepfake.core.fileio.atomic_dir``), so a failure leaves
the previous version of that folder whole; the sample never touches anything else under its output root.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from deepfake.core.fileio import atomic_dir
from deepfake.core.vocabulary import SPLITS
from deepfake.sample.annotations import faces_dir, load_annotations, read_photo
from deepfake.sample.plan import IDENTITIES, SampleConfig, identity_of, plan_sample
from deepfake.sample.render import cache_name, render_all, render_cache
from deepfake.sample.writers import DatasetLayout, layout_datasets

__all__ = ["build_sample"]

logger = logging.getLogger(__name__)


def _write_layout(out_root: Path, layout: DatasetLayout, cache: Path, people: tuple[str, ...]) -> int:
    """Copy the layout's renders and write its list files into ``out_root/<name>``, all or nothing;
    return its size in bytes."""
    # Built beside its final place, then swapped in: a crash never leaves a half-written dataset.
    with atomic_dir(out_root / layout.name) as tmp:
        copies = [(path, cache_name(key, people)) for path, key in layout.videos.items()]
        copies += [(path, cache_name(key, people, mask=True)) for path, key in layout.masks.items()]
        for path, name in copies:
            (tmp / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cache / name, tmp / path)
        for path, data in layout.texts.items():
            (tmp / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp / path).write_bytes(data)
        return sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())


def build_sample(out_root: Path, config: SampleConfig, faces: Path | None = None) -> dict:
    """Write the sample's folders (``config.folders``) under ``out_root``; return a summary."""
    faces = Path(faces) if faces is not None else faces_dir()
    out_root = Path(out_root)
    annotations = load_annotations(faces)
    plan = plan_sample(config, annotations, faces)
    layouts = layout_datasets(plan, config)
    photos = {photo: read_photo(faces / photo) for photo in plan.people}
    summary: dict[str, Any] = {
        "parts": {},
        "datasets": {},
        "identities": {},
        "videos": 0,
        "masks": 0,
        "bytes": 0,
        "frames": config.frames,
        "people": {split: [identity_of(p) for p in plan.people_in(split)] for split in SPLITS},
        "roles": {clip.role: f"{clip.part}/{clip.name}" for clip in plan.clips if clip.role != "plain"},
    }
    out_root.mkdir(parents=True, exist_ok=True)
    with render_cache(out_root) as cache:
        videos = {key for layout in layouts for key in layout.videos.values()}
        masks = {key for layout in layouts for key in layout.masks.values()}
        summary["renders"] = render_all(cache, videos, masks, plan, photos, annotations, config)
        for layout in layouts:
            summary["bytes"] += _write_layout(out_root, layout, cache, plan.people)
            if layout.name == IDENTITIES:
                summary["identities"] = {Path(p).stem: data.count(b"\n") - 1 for p, data in layout.texts.items()}
                continue
            counts = layout.counts()
            summary["datasets"][layout.name] = counts
            summary["videos"] += len(layout.videos)
            summary["masks"] += len(layout.masks)
            if layout.name in config.parts:
                summary["parts"][layout.name] = {"real": counts["real"], "fake": counts["fake"]}
            logger.info(
                "%s: %d real, %d fake videos%s",
                layout.name,
                counts["real"],
                counts["fake"],
                f", {len(layout.masks)} masks" if layout.masks else "",
            )
    return summary
