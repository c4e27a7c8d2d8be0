"""The servers bench_send.py sends to: the loopback provider servers of the tests, each in a
process of its own, and Postfix's smtp-sink."""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEY = "SG.bench-key"
AWS_KEY_ID = "AKIABENCH000000000000"  # the loopback SES server checks its shape
MAILGUN_DOMAIN = "mg.example.org"
SMTP_SINK = "/usr/sbin/smtp-sink"


class _Count:
    """Stands in for a server's list of what it received: counts, keeps nothing."""

    def __init__(self) -> None:
        self.n = 0

    def append(self, _item) -> None:
        self.n += 1

    def extend(self, items) -> None:
        self.n += len(items)

    def __len__(self) -> int:
        return self.n


def _serve(kind: str, conn) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from loopback import SendgridServer, SmtpServer
    from loopback_postmark import PostmarkServer
    from loopback_resend import ResendServer
    from loopback_ses import SesServer

    if kind == "ses":
        server = SesServer(key_id=AWS_KEY_ID)
    elif kind == "mailgun":
        from loopback_mailgun import MailgunServer

        server = MailgunServer(api_key=KEY, domain=MAILGUN_DOMAIN)
        server.tested = _Count()
    elif kind == "resend":
        server = ResendServer(api_key=KEY)
        server.sent, server.answers, server.keep_requests = _Count(), _Count(), False
    elif kind == "postmark":
        server = PostmarkServer(token=KEY)
        server.tested = _Count()
    else:
        server = SmtpServer() if kind == "smtp" else SendgridServer(api_key=KEY)
    server.messages = _Count()
    server.requests, server.headers, server.attempts = _Count(), _Count(), _Count()
    server.start()
    conn.send(f"{server.host}:{server.port}" if kind == "smtp" else server.url)
    conn.recv()  # until told to stop
    server.stop()


class Server:
    def __init__(self, kind: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(kind, child), daemon=True)
        self.process.start()
        self.address = self.conn.recv()

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (user + system)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.conn.send("stop")
        self.process.join(10)


def smtp_sink() -> tuple[subprocess.Popen, str]:
    """Postfix's smtp-sink on a free port: it answers faster than any client sends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    sink = subprocess.Popen([SMTP_SINK, "-u", os.environ.get("USER", "nobody"), address, "256"])
    for _ in range(50):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return sink, address
        time.sleep(0.1)
    sink.terminate()
    raise SystemExit(f"{SMTP_SINK} did not start on {address}")
