"""The embedded server's shared state file, and its idle watcher.

Standard library and filelock only: this file also runs as a script (by path, so that the
package, SQLAlchemy and pytest are not imported), started in the background by the last
process to release the server::

    python .../_embedded_idle.py CLUSTER_DIRECTORY IDLE_SECONDS

It stops the server once no process has held a lease for ``IDLE_SECONDS``, and exits when
the server is gone, when ``--db-reuse`` asked to keep it, or when another watcher replaced it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from filelock import FileLock

__all__ = ("alive", "command_line", "read_state", "signal_stop", "watch", "write_state")

#: seconds between two looks of the watcher at the state file (and so at most this much
#: longer than the idle timeout before it stops the server, or exits once the server is gone).
POLL = 5.0


def alive(pid: int) -> bool:
    """``True`` if process ``pid`` exists (a zombie counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def command_line(pid: int) -> list[str]:
    """The command line of process ``pid`` (``[]`` if it is gone or cannot be read); where
    there is no ``/proc`` (macOS), only its executable (``ps -o comm=``)."""
    with contextlib.suppress(OSError):
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [os.fsdecode(part) for part in raw.split(b"\0") if part]
    if sys.platform == "linux":
        return []
    try:
        output = subprocess.run(
            ["ps", "-o", "comm=", "-p", str(pid)], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return []
    return [output] if output else []


def read_state(path: Path) -> dict[str, Any]:
    """The state file: ``leases`` (token -> pid, only live processes kept), ``released``
    (when the last lease was given up, seconds since the epoch), ``watcher`` (its pid) and
    ``keep`` (``--db-reuse``: no idle stop)."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        state = {}
    if not isinstance(state, dict):
        state = {}
    leases = state.get("leases")
    state["leases"] = {
        str(token): pid
        for token, pid in (leases.items() if isinstance(leases, dict) else ())
        if isinstance(pid, int) and alive(pid)
    }
    return state


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Replace the state file at once (readers never see half of it)."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(state))
    os.replace(temporary, path)


def postmaster(data: Path) -> tuple[int, str] | None:
    """``(pid, status)`` of the server ``data/postmaster.pid`` names if it runs (its first
    argument is a ``postgres`` binary), else ``None``; the file is left as it is."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 8 or not lines[0].strip().isdigit():
        return None
    pid = int(lines[0])
    if not alive(pid):
        return None
    command = command_line(pid)
    if command and not Path(command[0]).name.startswith("postgres"):
        return None
    return pid, lines[7].strip()


def signal_stop(data: Path, pid: int, timeout: float) -> bool:
    """Ask server ``pid`` for a fast shutdown and wait until it says it is stopping (or is
    gone); ``False`` if it still says ``ready`` after ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while (found := postmaster(data)) is not None and found[1] == "ready":
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def watch(directory: Path, idle: float) -> None:
    """Stop the server of ``directory`` once it has been without leases for ``idle`` s."""
    state_path = directory / "leases.json"
    lock = FileLock(str(directory / "lock"))
    while True:
        with lock:
            state = read_state(state_path)
            found = postmaster(directory / "data")
            if state.get("watcher") != os.getpid():
                return  # another watcher took over
            if found is None or state.get("keep"):
                state["watcher"] = None
                write_state(state_path, state)
                return
            wait = idle - (time.time() - float(state.get("released") or 0))
            if state["leases"]:
                wait = POLL  # in use: look again later
            elif wait <= 0:
                signal_stop(directory / "data", found[0], 60.0)
                state["watcher"] = None
                write_state(state_path, state)
                return
        time.sleep(min(max(wait, 0.05), POLL))


if __name__ == "__main__":
    watch(Path(sys.argv[1]), float(sys.argv[2]))
