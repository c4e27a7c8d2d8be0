"""`newsletter serve --workers N`: several worker processes on one port, on PostgreSQL only.

Real `newsletter serve` processes over loopback HTTP against the session's PostgreSQL server;
on the files store the option is refused with one line that says why.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from test_serve_pg import ONE_CLICK, link, row, seed

HOST = "news.example.org"  # the fixture workspace's base_url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workers_of(pid: int) -> list[int]:
    """The worker processes uvicorn started (multiprocessing's, not its resource tracker)."""
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"spawn_main" in cmdline:
            found.append(int(child))
    return found


def wait_up(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("serve did not start")


def test_two_workers_on_postgres_answer_one_click_unsubscribes_from_two_processes(
    pg_workspace, pg_url
):
    seed(pg_url)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(port), "--workers", "2"],
        cwd=pg_workspace,
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_up(port, proc)
        deadline = time.monotonic() + 30
        while len(workers_of(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(workers_of(proc.pid)) == 2
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Host": HOST}) as client:
            for address in ("ada@example.org", "grace@example.net"):
                answer = client.post(link(pg_workspace, address), data=ONE_CLICK)
                assert answer.status_code == 200 and "You are unsubscribed" in answer.text
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert row(pg_url, "ada@example.org") == ("unsubscribed", "web:one-click")
    assert row(pg_url, "grace@example.net") == ("unsubscribed", "web:one-click")
    assert b"with 2 worker processes" in err
    assert pg_url.encode() not in err and b"Traceback" not in err


def test_workers_on_the_files_store_are_refused_in_one_line(workspace):
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(free_port()), "--workers", "2"],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--workers 2" in done.stderr and "PostgreSQL store" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
