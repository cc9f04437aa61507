"""The end of a run in a process of its own (ini ``db_spare_clones_detach``).

When a run's database cannot become the next run's spare (see ``TestDatabase._recycle``),
its end is a ``DROP DATABASE`` and a copy of the template for the next run: 0.2-0.6 s on
MariaDB at 200 tables, the process waiting for both. :func:`spawn` hands both to a new
process in a session of its own, which outlives the run, so the run's process exits at once.
It is as safe as the thread it replaces: a spare is marked one only once its copy is
complete (a run that starts meanwhile copies the template itself, or takes an older spare);
a copy cut short by a kill is a clone of this run to the sweep (PostgreSQL cancels it at
once, ``client_connection_check_interval``); the drop checks the ownership mark first.

Run as ``python -m pytest_ctxdb.provision._detached``: the :class:`TestDatabase` comes on
standard input, pickled (never through the command line, where its URL's password would be
visible), from the run's own process. Failures are lost with the process: at worst, no spare
is ready and the next run copies the template (its sweep drops a database left behind).
"""

from __future__ import annotations

import os
import pickle
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._database import TestDatabase

__all__ = ("main", "spawn")


def spawn(database: TestDatabase, spares: int) -> bool:
    """Start a detached process that drops ``database`` (if the run created it) and then
    makes ``spares`` spare clones of its template.

    :returns: ``True`` once the process has the work (the caller then does none of it);
        ``False`` if it could not be started (the caller does it itself).
    """
    try:
        payload = pickle.dumps((database, spares))
    except (pickle.PicklingError, TypeError, AttributeError):
        return False
    spawn_process = getattr(os, "posix_spawn", None)
    if spawn_process is None:  # Windows: the run does it itself
        return False
    # posix_spawn rather than subprocess.Popen: no Popen object warns, when collected, that
    # its process still runs (it is meant to), and nothing waits for it.
    read, write = os.pipe()
    try:
        spawn_process(
            sys.executable,
            [sys.executable, "-m", __name__],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, read, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_CLOSE, write),
            ],
            setsid=True,  # not ended with the run's terminal or process group
        )
    except OSError:
        os.close(read)
        os.close(write)
        return False
    os.close(read)
    try:
        with os.fdopen(write, "wb") as pipe:
            pipe.write(payload)
    except OSError:
        return False  # it reads nothing and ends; the run does the work itself
    return True


def main() -> None:
    """Do what :func:`spawn` handed over (read from standard input)."""
    database, spares = pickle.loads(sys.stdin.buffer.read())  # from our own run
    try:
        database.drop()
    finally:
        if spares > 0 and database.template is not None:
            database._make_spares(spares)


if __name__ == "__main__":
    main()
