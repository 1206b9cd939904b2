"""A private PostgreSQL server in a folder: for tests, benchmarks and single-machine scale-out runs.

How this works: `initdb` into the folder, `postgres` on a free loopback port with its socket in the same
folder, readiness by `pg_isready`. PostgreSQL refuses to run as root, so as root the server runs as the
`postgres` system user (created by Debian's postgresql package), which is given the folder.

The folder is where the data lives, so a server started again on it (`shouwang cluster` after a restart) finds its
databases. That user must be able to reach it: a folder inside one only root may enter (pytest's `tmp_path`, under
a 0700 folder) is refused with the reason and the fix, unless the server is a `scratch` one (tests, benchmarks),
which then runs in a temporary folder of its own, removed when it is left (`__exit__`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from backend.errors import BackendError
from broker.embedded import free_port

__all__ = ["LocalPostgres", "PostgresFolderUnreachable", "PostgresNotInstalled", "find_pg_bin"]


class PostgresNotInstalled(BackendError, RuntimeError):
    def __init__(self) -> None:
        super().__init__("PostgreSQL server binaries not found: run `apt-get install postgresql` (the test command does this)")


class PostgresFolderUnreachable(BackendError, RuntimeError):
    user_facing = True

    def __init__(self, folder: Path, blocked: Path) -> None:
        self.folder, self.blocked = folder, blocked
        super().__init__(f"PostgreSQL runs as the `postgres` user, which cannot reach its data folder {folder}: {blocked} lets only its "
                         f"owner in. Give the folder a place others may pass through (chmod o+x {blocked}), or choose another data "
                         f"folder (--data-dir)")


def _blocked_parent(folder: Path) -> Path | None:
    """The first existing folder on the way to `folder` that other users may not pass through (no o+x); None if none."""
    for d in reversed([folder, *folder.parents]):
        try:
            mode = d.stat().st_mode
        except FileNotFoundError:
            return None  # made by us below here, 0755
        if not mode & 0o001:
            return d
    return None


def find_pg_bin() -> Path:
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin"):
        for d in sorted(glob.glob(pattern), reverse=True):
            if (Path(d) / "initdb").exists() and (Path(d) / "postgres").exists():
                return Path(d)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise PostgresNotInstalled


class LocalPostgres:
    def __init__(self, workdir: Path, port: int | None = None, database: str = "shouwang", *, scratch: bool = False) -> None:
        """`workdir` holds the data (kept: started again, the server finds it). `scratch`: a throwaway server (tests,
        benchmarks): as root, if the `postgres` user cannot reach `workdir`, a temporary folder instead, removed at
        `__exit__`. Not scratch, such a folder is refused (`PostgresFolderUnreachable`): the data must be where it was
        asked to be, never in a temporary folder that the next start does not find."""
        self._as_root = os.geteuid() == 0
        self._temporary = False
        workdir = workdir.resolve()
        blocked = _blocked_parent(workdir.parent) if self._as_root else None
        if blocked is not None:
            if not scratch:
                raise PostgresFolderUnreachable(workdir, blocked)
            workdir = Path(tempfile.mkdtemp(prefix=f"shouwang-pg-{workdir.name}-"))
            self._temporary = True
        self.workdir = workdir
        self.port = port or free_port()
        self.database = database
        self.user = "shouwang"
        self._bin = find_pg_bin()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if self._as_root else list(args)

    def _run(self, *args: str) -> None:
        subprocess.run(self._cmd(*args), check=True, capture_output=True, timeout=120)  # noqa: S603

    def start(self, timeout_s: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            shutil.chown(self.workdir, "postgres", "postgres")
        fresh = not (self.datadir / "PG_VERSION").exists()
        if fresh:
            self._run(str(self._bin / "initdb"), "-D", str(self.datadir), "-U", self.user, "-A", "trust", "-E", "UTF8", "--no-sync")
        log = (self.workdir / "postgres.log").open("ab")
        self._proc = subprocess.Popen(  # noqa: S603
            self._cmd(str(self._bin / "postgres"), "-D", str(self.datadir), "-p", str(self.port), "-h", "127.0.0.1",
                      "-k", str(self.workdir), "-c", "fsync=off", "-c", "max_connections=200"),
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.workdir / 'postgres.log').read_text(errors='replace')[-2000:]}")
            ready = subprocess.run(  # noqa: S603
                [str(self._bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"], check=False, timeout=10
            )
            if ready.returncode == 0:
                break
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"postgres not ready on port {self.port} within {timeout_s} s")
        if fresh:
            self._run(str(self._bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, self.database)

    def stop(self, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        # Signal the postmaster itself (runuser does not pass signals on): SIGINT is PostgreSQL's
        # "fast shutdown", SIGKILL a crash that the next start recovers from.
        pid = self._postmaster_pid()
        sig = signal.SIGKILL if kill else signal.SIGINT
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid if pid is not None else proc.pid, sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
        if self._temporary:  # a scratch server's own temporary folder (they piled up in /tmp before)
            shutil.rmtree(self.workdir, ignore_errors=True)
