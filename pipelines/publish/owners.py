"""Which process owns a job's run or staging folder, and whether that process is gone.

A job killed by SIGKILL (OOM killer, ``kubectl delete --force``, a lost node) cleans nothing up; the
next job recognises what it left by the host name and pid recorded with it.
"""

from __future__ import annotations

import os
import socket


def host() -> str:
    return socket.gethostname()


def gone(owner_host: str, pid: str | int) -> bool:
    """True when ``pid`` on ``owner_host`` surely no longer runs: same host and no such process.

    A process of another host cannot be checked from here: callers fall back to an age limit.
    """
    if owner_host != host() or not str(pid).isdigit():
        return False
    pid = int(pid)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False
