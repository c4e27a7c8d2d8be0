"""A real PostgreSQL server for the tests: a private cluster in a temp folder, on a free port.

Debian's `postgresql` package provides the binaries (`.ci/run` installs it). initdb refuses to
run as root, so under root the cluster belongs to the `postgres` user the package creates.
Each test gets a throwaway database (`fresh_database`); the server stops with the session.
No test is skipped for want of it: a machine without PostgreSQL fails them, loudly.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

PASSWORD = "pg-test-secret-9f3b"  # the `newsletter` role's; tests check it never leaks


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (see .ci/run)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self) -> None:
        self.bindir = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="newsletter-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> PgServer:
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        pwfile = self.root / "pw"
        pwfile.write_text("postgres-superuser-pw\n")
        if self.as_root:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "scram-sha-256",
            f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        log = str(self.root / "server.log")  # the server's output: not a pipe it would hold open
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", log, "-w", "-t", "60", "start")
        self.admin = f"postgresql://postgres:postgres-superuser-pw@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE newsletter LOGIN PASSWORD '{PASSWORD}' CREATEDB")
        return self

    def fresh_database(self) -> str:
        """A new empty database owned by the `newsletter` role; its URL (password included)."""
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER newsletter TEMPLATE template0")
        return f"postgresql://newsletter:{PASSWORD}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        finally:
            time.sleep(0)
            shutil.rmtree(self.root, ignore_errors=True)


def push_files(root: Path) -> None:
    """`newsletter store push` of the workspace at root into NEWSLETTER_STORE_URL's database:
    for tests that write a list file and then work on the PostgreSQL store."""
    from newsletter.config import load_config
    from newsletter.store import push

    with psycopg.connect(os.environ["NEWSLETTER_STORE_URL"]) as conn:
        push.push(conn, load_config(root / "newsletter.toml"))


def write_list(root: Path, count: int, **options) -> list[str]:
    """subscribers/main.csv as test_send.write_list writes it, in place of the list in the
    PostgreSQL store (a push keeps rows only in the store: the list's rows are dropped first)."""
    from test_send import write_list as write_file

    emails = write_file(root, count, **options)
    with psycopg.connect(os.environ["NEWSLETTER_STORE_URL"]) as conn:
        conn.execute("DELETE FROM subscribers WHERE list = 'main'")
    push_files(root)
    return emails
