"""The error classes every layer shares, and what each means to a command.

- ``UserError``: the user's configuration, input file or environment setup is wrong (bad params, a
  malformed metadata.json, a missing toolchain). A command prints one line naming the file or key and
  exits 2. Never a per-video skip by itself.
- ``InputError``: one input item (a video, a boxes file, a metadata entry, a checkpoint) is bad. Inside a
  per-item loop it becomes that item's recorded status (a skip with the reason); outside one it is a
  ``UserError`` like any other.
- An ``OSError`` whose errno is in ``ENVIRONMENT_ERRNOS`` is an environment fault (disk full,
  permission denied, read-only output, I/O error): never a skip, wherever it is raised; the stage stops
  with one line, exit 1, and the previous complete output stays (see ``deepfake.core.fileio.atomic_dir``).
- Any other ``OSError`` met while reading one input item (the file is missing, is a folder, is a
  dangling link) is turned into that item's ``InputError`` at the reading site (``reading_input``).
- Anything else (``ValueError``, ``KeyError``, another ``OSError``, ...) is a bug: a traceback and a
  non-zero exit, never a skip.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A mistake in the configuration or input that the user can fix; reported in one line."""


class ParamsError(UserError):
    """params.yaml is missing, malformed, or has a missing, unknown or out-of-range key."""


class InputError(UserError):
    """One input item is bad; per-item loops record it as that item's status and go on."""


class ToolchainError(UserError):
    """A vendor toolchain or runtime the command needs is not installed here; nothing was written."""


class LeakageError(UserError):
    """Folds would leak an original or an identity across the holdout boundary."""


class CheckpointError(InputError):
    """A checkpoint that is missing, not a checkpoint, or of another architecture."""


# errno values that mean "the machine, not the data": they stop a stage instead of skipping a video
ENVIRONMENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.EMFILE, errno.ENFILE}
)


def is_environment_fault(err: BaseException) -> bool:
    """An OSError that says the disk, permissions or the system failed, not the input."""
    return isinstance(err, OSError) and err.errno in ENVIRONMENT_ERRNOS


def one_line(text: object) -> str:
    """``text`` with its lines joined by "; " (a ParamsError lists one problem a line), so a command's
    error message is always one line."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def describe_user_error(err: Exception) -> str:
    """The one line a command prints for a ``UserError``: ``error: <Class>: <message>``."""
    return f"error: {type(err).__name__}: {one_line(err)}"


def describe_environment_fault(err: OSError) -> str:
    """The one line a command prints when the environment stops a stage (see ``is_environment_fault``)."""
    what = err.strerror or one_line(err) or type(err).__name__
    where = f": {err.filename}" if err.filename is not None else ""
    if err.filename2 is not None:
        where += f" -> {err.filename2}"
    return f"error: environment fault: {what}{where} (the previous output is kept)"


@contextmanager
def reading_input(what: object, error: type[InputError] = InputError) -> Iterator[None]:
    """Around the read of one input item: an OSError that is not an environment fault (the file is
    missing, is a folder, is a dangling link) becomes ``error`` naming ``what``, so a per-item loop
    records it; an environment fault (disk, permissions, I/O) propagates and stops the stage.
    """
    try:
        yield
    except OSError as err:
        if is_environment_fault(err):
            raise
        reason = err.strerror or one_line(err) or type(err).__name__
        raise error(f"{what}: cannot be read: {reason}") from err
