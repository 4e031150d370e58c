"""What every command shares: the stage scripts' parser, logging, and the exit status of a failure.

Stage scripts (``stages/*.py``) import this module first, not ``deepfake.cli``, so a stage depends
on the code it runs and nothing else (``dvc.yaml`` lists exactly that; a contract test checks it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepfake.core.errors import (
    UserError,
    describe_environment_fault,
    describe_user_error,
    is_environment_fault,
)
from deepfake.core.params import Params, load_params


def _keep_the_stages_folder_off_sys_path() -> None:
    """``python stages/x.py`` puts ``stages/`` first on sys.path, where the scripts named as their stages
    (``evaluate.py``, ``triton.py``) would shadow installed packages (HF evaluate; triton, which torch
    imports). dvc.yaml runs ``python -P``; this makes a plain ``python stages/x.py`` just as safe. It runs
    when a stage script imports this module, before anything imports torch."""
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    if sys.flags.safe_path or not script or not sys.path:
        return
    folder = Path(script).resolve().parent
    if folder.name == "stages" and Path(sys.path[0] or ".").resolve() == folder:
        del sys.path[0]


_keep_the_stages_folder_off_sys_path()

# Errors about the user's input or configuration: reported in one line (exit 2), not as a traceback.
# Only UserError and its subclasses (ParamsError, InputError: MetadataError, VideoError, BoxesFileError,
# CheckpointError; ToolchainError, LeakageError); a bare ValueError or FileNotFoundError is a bug and
# keeps its traceback.
USER_ERRORS: tuple[type[Exception], ...] = (UserError,)
USER_ERROR_EXIT = 2
ENVIRONMENT_FAULT_EXIT = 1


class _Formatter(logging.Formatter):
    """The usual ``time level logger: message`` lines; a record logged with ``extra={"bare": True}``
    (the one ``error:`` line a failed command prints) is its message alone."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "bare", False):
            return record.getMessage()
        return super().format(record)


def setup_logging(verbose: bool = False) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def report_failure(err: BaseException, verbose: bool) -> int | None:
    """Print the one line for a failure a command reports without a traceback; return its exit status.

    ``UserError`` (and ``USER_ERRORS``): ``error: <Class>: <message>``, exit 2. An environment fault
    (an ``OSError`` with an errno in ``ENVIRONMENT_ERRNOS``: disk full, read-only, permission denied):
    ``error: environment fault: <strerror>: <filename> (the previous output is kept)``, exit 1.
    Anything else, or any failure with ``verbose``: None, and the caller re-raises it (a traceback).
    """
    if verbose:
        return None
    if isinstance(err, USER_ERRORS):
        line, status = describe_user_error(err), USER_ERROR_EXIT
    elif isinstance(err, OSError) and is_environment_fault(err):
        line, status = describe_environment_fault(err), ENVIRONMENT_FAULT_EXIT
    else:
        return None
    logging.getLogger("deepfake").error("%s", line, extra={"bare": True})
    return status


def stage_parser(description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def parse_stage_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, Params]:
    """The parsed arguments and the validated params (every section checked before any work)."""
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return args, load_params(args.params)


def run_stage(main: Callable[[], Any]) -> None:
    """Run a stage's ``main``: a user error exits 2 and an environment fault exits 1, each with one
    ``error:`` line (see ``report_failure``); ``-v`` re-raises them for the traceback; anything else
    (a bug) propagates with its traceback and Python's exit status 1."""
    try:
        main()
    except Exception as err:
        status = report_failure(err, verbose="-v" in sys.argv or "--verbose" in sys.argv)
        if status is None:
            raise
        sys.exit(status)
