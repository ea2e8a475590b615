"""A node process of the cluster tests dies with the test run that started it.

``watch_parent(name)`` starts a daemon thread that checks every 0.5 s whether the pid
in ``CLUSTER_PARENT_PID`` is alive; when the test run is gone it SIGKILLs the node's
whole process group, so no node outlives a killed pytest.
"""

from __future__ import annotations

import os
import signal
import threading
import time


def _watch() -> None:
    parent = int(os.environ.get("CLUSTER_PARENT_PID") or 0)
    if not parent:
        return
    while True:
        time.sleep(0.5)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:  # the test run is gone: take the whole node with us
            os.killpg(os.getpgrp(), signal.SIGKILL)
        except PermissionError:
            pass


def watch_parent(name: str) -> None:
    threading.Thread(target=_watch, name=name, daemon=True).start()
