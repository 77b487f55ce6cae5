"""A private, throw-away PostgreSQL cluster for tests that stop and restart the server.

The shared server on 127.0.0.1:5432 serves every other test, so it must never be restarted;
``PgCluster`` runs its own ``initdb`` + ``pg_ctl`` in a temporary directory instead: trust
authentication, a free port on 127.0.0.1, the unix socket inside the directory, fsync off (the
tests restart with ``-m fast``, a clean shutdown, so nothing needs to survive a power cut).

initdb and postgres refuse to run as root, so when the tests run as root the directory belongs
to the ``postgres`` user and every command runs through ``runuser -u postgres --``.

    with PgCluster() as pg:        # initdb (~1 s) and start
        url = pg.url               # postgresql+psycopg://postgres@127.0.0.1:<port>/postgres
        pg.restart()               # pg_ctl restart -m fast
        pg.stop(); pg.start()

The ``pg_cluster`` fixture yields a started cluster and removes it afterwards; without the
PostgreSQL server binaries it skips, or fails when ``CI=true``.
"""
from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from servers import LOOPBACK, free_port

_LIVE: set["PgCluster"] = set()


def pg_bindir() -> Path | None:
    """The folder with initdb and pg_ctl: Debian's /usr/lib/postgresql/<newest>/bin, else PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def require_pg_cluster() -> Path:
    """The binaries' folder, or skip the test (fail it when ``CI=true``)."""
    bindir = pg_bindir()
    reason = None
    if bindir is None or not (bindir / "pg_ctl").exists():
        reason = ("the PostgreSQL server binaries (initdb, pg_ctl) are not installed; "
                  "apt-get install postgresql")
    elif os.geteuid() == 0 and not (_has_postgres_user() and shutil.which("runuser")):
        reason = "running as root, initdb needs the `postgres` user and `runuser` to run as it"
    if reason is None:
        return bindir
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def _has_postgres_user() -> bool:
    try:
        pwd.getpwnam("postgres")
        return True
    except KeyError:
        return False


class PgCluster:
    def __init__(self, *, bindir: Path | None = None):
        self.bindir = bindir or pg_bindir()
        if self.bindir is None:
            raise RuntimeError("PostgreSQL server binaries are not installed")
        self.as_postgres = os.geteuid() == 0
        # Unix socket paths are limited to 107 bytes: keep the directory short.
        self.root = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        if self.as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.root.chmod(0o755)
        _LIVE.add(self)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        self._configure()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{LOOPBACK}:{self.port}/postgres"

    def _configure(self) -> None:
        settings = {"port": self.port, "listen_addresses": f"'{LOOPBACK}'",
                    "unix_socket_directories": f"'{self.root}'", "fsync": "off",
                    "synchronous_commit": "off", "full_page_writes": "off", "shared_buffers": "'16MB'",
                    "max_connections": 50, "logging_collector": "off"}
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:  # appending keeps the owner
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _run(self, program: str, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        command = [str(self.bindir / program), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd="/")
        if check and done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
                               f"\n{self.log_tail()}")
        return done

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self) -> None:
        for _ in range(3):  # another process may have taken the port since free_port()
            done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "60",
                             "start", check=False, timeout=90)
            if done.returncode == 0:
                return
            if "could not bind" not in self.log_tail(5):
                break
            self.port = free_port()
            self._configure()  # the later line wins in postgresql.conf
        raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()}\n{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` disconnects every client (their next query fails), as a real restart does."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", timeout=90)

    def restart(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-m", mode, "-w", "-t", "60",
                  "restart", timeout=120)

    def is_running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def close(self) -> None:
        _LIVE.discard(self)
        if self.data.exists() and self.is_running():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PgCluster":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@atexit.register
def _close_leftovers() -> None:
    for cluster in list(_LIVE):
        try:
            cluster.close()
        except Exception:  # pragma: no cover - best effort at interpreter exit
            pass


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A started private cluster; the test may stop, restart and start it at will."""
    bindir = require_pg_cluster()
    with PgCluster(bindir=bindir) as cluster:
        yield cluster
