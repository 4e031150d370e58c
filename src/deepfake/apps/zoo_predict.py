"""Prediction with a zoo package whose manifest names another pipeline than the project's own.

A package converted from the DFDC winner's release records ``pipeline: dfdc1st`` and the winner's
inference numbers (``pipeline_settings``, from params' ``zoo.dfdc1st``). ``deepfake predict`` then scores
each video as the winner's ``predict_folder.py`` does (``deepfake.zoo.dfdc1st``: its frames, its MTCNN on
torch, its crops and resizing, its confident strategy per model, the mean over models), through any
backend's ``logits``, and writes the usual records (CSV, JSON, JSON Lines); their verdicts come from the
package's own operating points when it has been calibrated (``deepfake calibrate``), as every package's do.
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from deepfake.backends.base import Backend
from deepfake.core.errors import InputError
from deepfake.modeling.scoring import Aggregation
from deepfake.modeling.store import ModelStore

logger = logging.getLogger(__name__)

PROJECT_PIPELINE = "project"
DFDC1ST_PIPELINE = "dfdc1st"


def package_pipeline(store: ModelStore) -> tuple[str, Mapping[str, Any] | None]:
    """The pipeline a package's manifest names (``project`` when it names none) and its settings."""
    manifest = store.read_manifest("onnx")
    pipeline = manifest.get("pipeline", PROJECT_PIPELINE)
    if pipeline not in (PROJECT_PIPELINE, DFDC1ST_PIPELINE):
        raise InputError(f"{store.folder('onnx')}/manifest.json: unknown pipeline {pipeline!r}")
    settings = manifest.get("pipeline_settings")
    if pipeline == DFDC1ST_PIPELINE and not isinstance(settings, Mapping):
        raise InputError(f"{store.folder('onnx')}/manifest.json: pipeline dfdc1st without its pipeline_settings")
    return pipeline, settings


def package_stream(store: ModelStore, backend: Backend, aggregation: Aggregation) -> Callable[..., Any] | None:
    """The record stream of the pipeline a zoo package names, for ``predict_videos(stream=...)``; None for
    the project's own pipeline (and for a checkpoint-only store, always the project's own)."""
    if not (store.folder("onnx") / "manifest.json").is_file():
        return None
    pipeline, settings = package_pipeline(store)
    if pipeline != DFDC1ST_PIPELINE or settings is None:
        return None
    logger.info("the package names the DFDC winner's own inference (pipeline dfdc1st)")
    return dfdc1st_stream(backend, dfdc1st_config(settings, backend.face_input.image_size), aggregation)


def dfdc1st_config(settings: Mapping[str, Any], image_size: int) -> Any:
    """The winner's inference config from a package's recorded settings (params' ``zoo.dfdc1st``)."""
    from deepfake.core.params import Dfdc1stParams
    from deepfake.zoo.dfdc1st import Dfdc1stConfig

    try:
        spec = Dfdc1stParams.model_validate(dict(settings))
    except ValueError as err:
        raise InputError(f"the package's dfdc1st pipeline_settings are not valid: {err}") from err
    return Dfdc1stConfig.from_params(spec, image_size)


def dfdc1st_stream(
    backend: Backend, config: Any, aggregation: Aggregation, device: str = "cpu"
) -> Callable[[Sequence[Path], Callable[[Iterable[Path]], Iterable[Path]] | None], Iterator[dict[str, Any]]]:
    """A record stream for ``predict_videos``: the detector is built once, each video scored in turn."""
    from deepfake.apps.predict import base_record
    from deepfake.zoo import dfdc1st

    detector = dfdc1st.build_detector(config, device)

    def stream(
        videos: Sequence[Path], progress: Callable[[Iterable[Path]], Iterable[Path]] | None
    ) -> Iterator[dict[str, Any]]:
        for path in progress(videos) if progress else videos:
            record = base_record(path)
            try:
                result = dfdc1st.predict_video(path, backend.logits, detector, config)
            except InputError as err:
                yield {**record, "status": f"unreadable: {err}"}
                continue
            except OSError:
                raise  # an environment fault stops the run; the JSON Lines keep what was scored
            except Exception as err:  # noqa: BLE001 - a bug in one video is its recorded error, the batch goes on
                trace = "".join(traceback.format_exception(err))
                logger.error("%s: failed:\n%s", path, trace)
                yield {**record, "status": f"error: {type(err).__name__}: {err}", "traceback": trace}
                continue
            yield {**record, **_record_fields(result, aggregation)}

    return stream


def _record_fields(result: Mapping[str, Any], aggregation: Aggregation) -> dict[str, Any]:
    status = result["status"]
    fields: dict[str, Any] = {
        "pipeline": DFDC1ST_PIPELINE,
        "sampled_frames": result["frames"],
        "crops": result["faces"],
    }
    if status != "ok":
        name = {"no_faces": "no_face"}.get(status, status)
        return {**fields, "status": f"{name}: {result['reason']}"}
    probability = float(result["probability"])
    if not math.isfinite(probability):
        return {**fields, "status": "error: the models returned a non-finite score"}
    return {
        **fields,
        "probability": probability,
        "members": {m: round(float(v["probability"]), 5) for m, v in result["members"].items()},
    }
