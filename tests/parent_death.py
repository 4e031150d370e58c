"""The spawned child of tests/test_serve_api.py's parent-death check, in a module of its own: a spawned
process imports the module its target lives in, and this one imports only what the check needs (the test
module would bring FastAPI, PyAV and tests.conftest with it)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

CHILD_LIFETIME_S = 60  # far longer than the check: the child ends by a signal or the test's kill


def sleep_with_parent_death_signal(parent: int, armed: str) -> None:
    """A worker's parent-death signal (SIGKILL here), then ``armed`` touched, then a long sleep."""
    from deepfake.apps.predict import init_worker

    init_worker(parent, 1, on_parent_death=signal.SIGKILL)
    Path(armed).touch()
    time.sleep(CHILD_LIFETIME_S)
