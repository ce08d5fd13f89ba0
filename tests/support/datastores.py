"""Real PostgreSQL, MariaDB, Redis and Memcached servers for the tests, from Debian's packages.

Each server runs as a plain child process on a free 127.0.0.1 port with its data in a
temporary directory, started once per test session (all four in parallel, a few
seconds) and stopped at the end. A server whose binary is not installed is reported
with the reason (``apt-get install ...``) and the tests that need it are skipped;
``scripts/test.sh`` installs them so CI runs everything.

PostgreSQL refuses to run as root, so under root it runs as the ``postgres`` user
(created by the Debian package).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.fixtures import free_port

__all__ = ["Store", "StoreSet", "datastores"]


def _find(*candidates: str) -> str | None:
    for c in candidates:
        if os.sep in c:
            for path in sorted(glob.glob(c), reverse=True):  # newest PostgreSQL first
                if os.access(path, os.X_OK):
                    return path
        elif found := shutil.which(c):
            return found
    return None


@dataclass
class Store:
    """One running server (or why it is not running)."""

    name: str
    port: int = 0
    skip_reason: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def require(self) -> Store:
        if self.skip_reason:
            pytest.skip(f"{self.name}: {self.skip_reason}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class StoreSet:
    redis: Store
    memcached: Store
    postgres: Store
    mariadb: Store


def _wait_port(store: Store, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.proc is not None and store.proc.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", store.port), 0.5):
            return
        time.sleep(0.05)
    log = store.log.read_text(errors="replace")[-2000:] if store.log and store.log.exists() else ""
    store.stop()
    store.skip_reason = f"did not start listening within {timeout:.0f}s:\n{log}"


def _popen(argv: list[str], log: Path, *, user: str | None = None) -> subprocess.Popen[bytes]:
    kwargs: dict[str, Any] = {}
    if user is not None:
        kwargs.update(user=user, group=pwd.getpwnam(user).pw_gid, extra_groups=[])
    with open(log, "wb") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs
        )


def _start_redis(tmp: Path) -> Store:
    store = Store("redis")
    binary = _find("redis-server")
    if binary is None:
        store.skip_reason = "redis-server not installed (apt-get install redis-server)"
        return store
    store.port, store.log = free_port(), tmp / "redis.log"
    store.proc = _popen(
        [binary, "--port", str(store.port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp), "--daemonize", "no"],
        store.log,
    )  # fmt: skip
    _wait_port(store, 10)
    return store


def _start_memcached(tmp: Path) -> Store:
    store = Store("memcached")
    binary = _find("memcached")
    if binary is None:
        store.skip_reason = "memcached not installed (apt-get install memcached)"
        return store
    store.port, store.log = free_port(), tmp / "memcached.log"
    argv = [binary, "-l", "127.0.0.1", "-p", str(store.port), "-U", "0", "-m", "16"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    store.proc = _popen(argv, store.log)
    _wait_port(store, 10)
    return store


def _start_postgres(tmp: Path) -> Store:
    store = Store("postgres")
    bindir_initdb = _find("/usr/lib/postgresql/*/bin/initdb", "initdb")
    if bindir_initdb is None:
        store.skip_reason = "PostgreSQL not installed (apt-get install postgresql)"
        return store
    bindir = Path(bindir_initdb).parent
    user = None
    data = tmp / "pgdata"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            store.skip_reason = "running as root and there is no 'postgres' user to run PostgreSQL"
            return store
        user = "postgres"
        pgroot = Path(tempfile.mkdtemp(prefix="potel-pg-"))
        store.extra["cleanup"] = pgroot
        data = pgroot / "data"
        os.chown(pgroot, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
        tmp = pgroot
    store.log = tmp / "postgres.log"
    init = subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
         "--no-sync", "-E", "UTF8", "--locale", "C"],
        capture_output=True, text=True, timeout=60,
        **({"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []} if user else {}),
    )  # fmt: skip
    if init.returncode != 0:
        store.skip_reason = f"initdb failed: {init.stderr[-1500:]}"
        return store
    store.port = free_port()
    store.proc = _popen(
        [str(bindir / "postgres"), "-D", str(data), "-p", str(store.port), "-h", "127.0.0.1",
         "-k", str(tmp), "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off"],
        store.log,
        user=user,
    )  # fmt: skip
    _wait_port(store, 20)
    store.extra["dsn"] = f"postgresql://postgres@127.0.0.1:{store.port}/postgres"
    return store


def _start_mariadb(tmp: Path) -> Store:
    store = Store("mariadb")
    server = _find("mariadbd", "/usr/sbin/mariadbd", "mysqld", "/usr/sbin/mysqld")
    install = _find("mariadb-install-db", "mysql_install_db")
    if server is None or install is None:
        store.skip_reason = "MariaDB not installed (apt-get install mariadb-server)"
        return store
    data = tmp / "mariadb"
    store.log = tmp / "mariadb.log"
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    init = subprocess.run(
        [install, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
         "--skip-test-db", "--skip-name-resolve", *as_root],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if init.returncode != 0:
        store.skip_reason = f"mariadb-install-db failed: {(init.stdout + init.stderr)[-1500:]}"
        return store
    store.port = free_port()
    store.proc = _popen(
        [server, "--no-defaults", f"--datadir={data}", f"--port={store.port}",
         "--bind-address=127.0.0.1", f"--socket={tmp}/mariadb.sock", f"--pid-file={tmp}/mariadb.pid",
         "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=16M",
         "--innodb-flush-log-at-trx-commit=0", "--skip-grant-tables", *as_root],
        store.log,
    )  # fmt: skip
    _wait_port(store, 30)
    return store


def _start_all(tmp: Path) -> StoreSet:
    starters: dict[str, Callable[[Path], Store]] = {
        "redis": _start_redis,
        "memcached": _start_memcached,
        "postgres": _start_postgres,
        "mariadb": _start_mariadb,
    }
    results: dict[str, Store] = {}

    def run(name: str, start: Callable[[Path], Store]) -> None:
        sub = tmp / name
        sub.mkdir()
        try:
            results[name] = start(sub)
        except Exception as exc:  # a broken server install skips its tests, with the reason
            results[name] = Store(name, skip_reason=f"could not start: {exc!r}")

    threads = [threading.Thread(target=run, args=item) for item in starters.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return StoreSet(**results)


@pytest.fixture(scope="session")
def datastores() -> Iterator[StoreSet]:
    """All four servers, started once per session; each ``.require()`` skips when unavailable."""
    with tempfile.TemporaryDirectory(prefix="potel-stores-") as tmp:
        os.chmod(tmp, 0o755)
        stores = _start_all(Path(tmp))
        try:
            yield stores
        finally:
            for store in (stores.redis, stores.memcached, stores.postgres, stores.mariadb):
                store.stop()
                cleanup = store.extra.get("cleanup")
                if cleanup:
                    shutil.rmtree(cleanup, ignore_errors=True)
