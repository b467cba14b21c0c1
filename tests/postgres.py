"""A throwaway PostgreSQL cluster for tests: Debian's server binaries (installed if missing, as `make test`
does), `initdb` into a temporary directory, `pg_ctl` on a loopback port, password authentication.

```python
def test_reads(postgres: Postgres) -> None:
    with psycopg.connect(postgres.url) as connection: ...
```

A test that takes the `postgres` fixture skips only where the server cannot be installed (and fails
instead on CI, `CI=true`).

The PostgreSQL pass of `make test`: with `TESSERA_TEST_DATABASE=postgresql` the harness gives the broker
and every connector a fresh database on the process's one server (`database_url_for`) instead of a SQLite
file; `TESSERA_TEST_BROKER_DATABASE` (default: the same) chooses the broker's alone. Such a pass fails
where no server can be installed: it was asked for.
"""

import atexit
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.utils import unused_port

USER = "tessera"
PASSWORD = "pg-secret-7f3a"  # tests look for it where it must never appear
SYSTEM_USER = "postgres"  # initdb refuses to run as root: the cluster runs as Debian's postgres user
_numbers = itertools.count(1)  # names of the databases `create_database` makes
DATABASES = ("sqlite", "postgresql")  # what `TESSERA_TEST_DATABASE` may say


@dataclass
class Postgres:
    directory: Path
    port: int

    @property
    def url(self) -> str:
        return self.url_of("postgres")

    def url_of(self, database: str, driver: str = "") -> str:
        """The libpq URL of a database; `driver="asyncpg"` gives the SQLAlchemy URL our services take."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its SQLAlchemy URL (asyncpg), as `database_url` of a connector or broker."""
        name = f"t{next(_numbers)}_{os.getpid()}"
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url_of(name, "asyncpg")

    def start(self) -> None:
        data = self.directory / "data"
        password_file = self.directory / "password"
        password_file.write_text(PASSWORD)
        _chown(self.directory)
        _run("initdb", "-D", str(data), "-U", USER, "--auth=scram-sha-256", f"--pwfile={password_file}", "-E", "UTF8")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run("pg_ctl", "-D", str(data), "-o", options, "-l", str(self.directory / "log"), "-w", "start")

    def stop(self) -> None:
        _run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "-w", "stop")


def binaries() -> Path | None:
    """The newest installed server's bin directory, installing Debian's package if there is none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=False, capture_output=True)
        return binaries() if glob.glob("/usr/lib/postgresql/*/bin/initdb") else None
    return Path(found[-1]).parent if found else None


def _as_system_user() -> list[str]:
    return ["runuser", "-u", SYSTEM_USER, "--"] if os.geteuid() == 0 else []


def _chown(directory: Path) -> None:
    if os.geteuid() == 0:
        account = pwd.getpwnam(SYSTEM_USER)
        os.chown(directory, account.pw_uid, account.pw_gid)
        for path in directory.iterdir():
            os.chown(path, account.pw_uid, account.pw_gid)


def _run(tool: str, *args: str) -> None:
    found = binaries()
    assert found is not None
    subprocess.run([*_as_system_user(), str(found / tool), *args], check=True, capture_output=True)


_server: Postgres | None = None


def shared_server() -> Postgres:
    """This process's one server, started on first use and stopped when the process exits."""
    global _server
    if _server is None:
        if binaries() is None:
            raise RuntimeError("PostgreSQL is not installed and cannot be installed here (apt-get install postgresql)")
        server = Postgres(Path(tempfile.mkdtemp(prefix="tessera-pg-")), unused_port())
        server.start()
        atexit.register(shutil.rmtree, server.directory, ignore_errors=True)
        atexit.register(server.stop)
        _server = server
    return _server


def chosen_database(variable: str = "TESSERA_TEST_DATABASE", default: str = "sqlite") -> str:
    chosen = os.environ.get(variable, default) or default
    if chosen not in DATABASES:
        raise RuntimeError(f"{variable} must be one of {DATABASES}, not {chosen!r}")
    return chosen


def on_postgres() -> bool:
    """Whether this run keeps the connectors' state in PostgreSQL (`TESSERA_TEST_DATABASE=postgresql`)."""
    return chosen_database() == "postgresql"


def database_url_for(directory: Path, *, broker: bool = False) -> str:
    """The `database_url` of a connector (or the broker) kept in `directory`: empty for the default SQLite
    file there, a fresh PostgreSQL database on the PostgreSQL pass."""
    chosen = chosen_database("TESSERA_TEST_BROKER_DATABASE", chosen_database()) if broker else chosen_database()
    return shared_server().create_database() if chosen == "postgresql" else ""


@pytest.fixture(scope="session")
def postgres() -> Postgres:
    """A running PostgreSQL server for the session; skipped where none can be installed, except on CI."""
    if binaries() is None:
        message = "PostgreSQL is not installed and cannot be installed here"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: the PostgreSQL tests must run)")
        pytest.skip(message)
    return shared_server()
