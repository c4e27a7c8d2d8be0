"""Send throughput and peak memory: the send engine against a raw client loop, same run.

For SendGrid (the loopback v3 Mail Send server), Postmark (the loopback batch Email API),
Resend (the loopback batch API; its raw loop is the plain `resend` SDK), SES (the loopback
SES v2 SendEmail server; its raw loop is a plain boto3 `sesv2` client), Mailgun (the
loopback Messages API; its raw loop is the plain `mailgun` SDK with recipient-variables)
and SMTP (the loopback aiosmtpd server, several connections), 100,000 recipients go through
`newsletter.sending.run` (list streamed, ledger, retries, rate, progress) and, with the
same workers and batch size, through a bare loop over pre-built messages calling the
provider (for Postmark: postmarker's own client, filling in each message and posting
batches of 500 to /email/batch). Then the peak memory of dry runs of
100,000 and 1,000,000 recipients. Servers run in their own processes; each measurement
runs in a fresh process. Memory is the peak of the sending process and the read-ahead
process it forks to read the list (newsletter/sending/readahead.py) together, as PSS sampled every
100 ms, and the peak RSS of each.

Run: python benchmarks/bench_send.py [--recipients 100000] [--dry-run-recipients 1000000]
     [--providers sendgrid,postmark,smtp] [--rounds 1] [--workers N] [--smtp-server HOST:PORT]

--smtp-server sends to a server already running instead of aiosmtpd, e.g. Postfix's
smtp-sink (`apt-get install postfix`, then `/usr/sbin/smtp-sink -u nobody 127.0.0.1:2525
256`): it answers far faster than aiosmtpd, so the client's own cost shows.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEY = "SG.bench-key"
AWS_KEY_ID = "AKIABENCH000000000000"  # the loopback SES server checks its shape
MAILGUN_DOMAIN = "mg.example.org"


def write_workspace(folder: Path, count: int) -> Path:
    root = folder / f"ws-{count}"
    if root.exists():
        return root
    shutil.copytree(REPO / "tests" / "fixtures" / "workspace", root)
    with (root / "subscribers" / "main.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "status", "company"])
        for i in range(count):
            writer.writerow([f"reader{i:07d}@example.org", f"Reader {i}", "subscribed", "Acme"])
    return root


# --- servers, each in a process of its own ------------------------------------------------


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

    def close(self) -> None:
        self.conn.send("stop")
        self.process.join(10)


def environment(kind: str, address: str) -> dict[str, str]:
    if kind == "smtp":
        host, port = address.split(":")
        return {
            "NEWSLETTER_SEND_PROVIDER": "smtp",
            "NEWSLETTER_SMTP_HOST": host,
            "NEWSLETTER_SMTP_PORT": port,
            "NEWSLETTER_SMTP_SECURITY": "none",
        }
    if kind == "ses":
        return {
            "NEWSLETTER_SEND_PROVIDER": "ses",
            "NEWSLETTER_SES_REGION": "eu-west-1",
            "NEWSLETTER_SES_ENDPOINT_URL": address,
            "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": "bench-secret",
        }
    if kind == "mailgun":
        return {
            "NEWSLETTER_SEND_PROVIDER": "mailgun",
            "NEWSLETTER_MAILGUN_BASE_URL": address,
            "NEWSLETTER_MAILGUN_DOMAIN": MAILGUN_DOMAIN,
            "MAILGUN_API_KEY": KEY,
        }
    if kind == "resend":
        return {
            "NEWSLETTER_SEND_PROVIDER": "resend",
            "NEWSLETTER_RESEND_HOST": address,
            "RESEND_API_KEY": KEY,
        }
    if kind == "postmark":
        return {
            "NEWSLETTER_SEND_PROVIDER": "postmark",
            "NEWSLETTER_POSTMARK_HOST": address,
            "POSTMARK_SERVER_TOKEN": KEY,
        }
    return {
        "NEWSLETTER_SEND_PROVIDER": "sendgrid",
        "NEWSLETTER_SENDGRID_HOST": address,
        "SENDGRID_API_KEY": KEY,
    }


# --- measurements, each in a fresh process -------------------------------------------------


def child(mode: str, root: Path) -> dict:
    """Run one measurement in this process; return its figures."""
    from newsletter import sending
    from newsletter.config import load_config
    from newsletter.providers import make_provider
    from newsletter.sending.ledger import Ledger

    env = dict(os.environ)
    config = load_config(root / "newsletter.toml", env=env)
    provider = config.send.provider
    prepared = sending.prepare(config, root / "issues" / "merge.md")
    settings = sending.settings_for(config, provider, dry_run=mode == "dry-run")
    factory = lambda: make_provider(provider, config, env=env)  # noqa: E731
    if mode == "raw":
        campaign = prepared.campaign
        messages = [
            campaign.message(s.email, s.key, s.merge_fields(), s.name)
            for s in prepared.recipients()
        ]
        shares = [messages[i :: settings.workers] for i in range(settings.workers)]
        loop = _raw_loop(provider, config, settings.batch_size)
        if provider == "resend":
            loop = functools.partial(resend_loop, config, env, batch_size=settings.batch_size)
        if provider == "ses":
            loop = functools.partial(ses_loop, config, env)
        if provider == "mailgun":
            loop = functools.partial(mailgun_loop, config, batch_size=settings.batch_size)

        def provider_loop(share) -> None:
            with factory() as client:
                for start in range(0, len(share), settings.batch_size):
                    client.send_batch(share[start : start + settings.batch_size])

        loop = loop or provider_loop
        threads = [threading.Thread(target=loop, args=(share,)) for share in shares]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return {"seconds": time.perf_counter() - started, "sent": len(messages)}
    ledger = Ledger(None) if mode == "dry-run" else Ledger.for_workspace(config.state_dir)
    with ledger:
        started = time.perf_counter()
        plan = sending.plan(prepared, ledger, settings)
        planned = time.perf_counter() - started
        started = time.perf_counter()
        summary = sending.run(prepared, ledger, factory, settings, total=plan.to_send)
        elapsed = time.perf_counter() - started
    # The read-ahead process (forked, reaped by now) has its own peak: KB on Linux.
    reader_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    own_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "seconds": elapsed,
        "plan_seconds": planned,
        "sent": summary.sent,
        "own_mb": own_mb,
        "reader_mb": reader_mb,
    }


def _raw_loop(provider: str, config, batch_size: int):
    """A plain loop with the provider's own client, where there is one here (else None)."""
    if provider != "postmark":
        return None
    from email.utils import formataddr

    from postmarker.core import PostmarkClient

    def loop(share) -> None:
        # What any Postmark client must do per message: fill it in, add its headers.
        client = PostmarkClient(
            server_token=KEY, root_api_url=config.postmark.host.rstrip("/") + "/"
        )
        sender = formataddr((config.from_name or config.name, config.from_email))
        for start in range(0, len(share), batch_size):
            payloads = []
            for message in share[start : start + batch_size]:
                filled = message.personalized()
                campaign = message.campaign
                payloads.append(
                    {
                        "From": sender,
                        "To": formataddr((message.to_name, message.to_email)),
                        "Subject": filled.subject,
                        "HtmlBody": filled.html,
                        "TextBody": filled.text,
                        "MessageStream": "broadcast",
                        "Tag": campaign.issue_slug,
                        "TrackOpens": False,
                        "TrackLinks": "None",
                        "Headers": {
                            "List-Id": campaign.list_id_header,
                            **message.personal_headers(),
                        },  # fmt: skip
                        "Metadata": {"issue": campaign.issue_slug, "list": campaign.list_name},
                    }
                )
            answers = client.emails.send_batch(*payloads)
            assert all(a["ErrorCode"] == 0 for a in answers)
        client.session.close()

    return loop


def resend_loop(config, env, share, batch_size: int) -> None:
    """The plain `resend` SDK loop: each batch's emails filled in, sent with a key."""
    import hashlib
    from email.utils import formataddr

    import resend

    from newsletter.providers.resend import api

    api.use(config, env)  # the same kept-alive HTTP session as the provider's
    sender = formataddr((config.from_name or config.name, config.from_email))
    for start in range(0, len(share), batch_size):
        emails = []
        for message in share[start : start + batch_size]:
            filled = message.campaign.rendered.fill_values(message.values)
            emails.append(
                {
                    "from": sender,
                    "to": [message.to_email],
                    "subject": filled.subject,
                    "html": filled.html,
                    "text": filled.text,
                    "headers": message.personal_headers(),
                }
            )
        key = hashlib.sha256("".join(e["to"][0] for e in emails).encode()).hexdigest()
        resend.Batch.send(emails, {"idempotency_key": key})


def ses_loop(config, env, share) -> None:
    """A plain boto3 sesv2 loop: each message's MIME bytes in one SendEmail, no retries."""
    import boto3
    import botocore.config

    client = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    ).client(
        "sesv2",
        region_name=config.ses.region,
        endpoint_url=config.ses.endpoint_url,
        config=botocore.config.Config(retries={"total_max_attempts": 1}),
    )
    for message in share:
        client.send_email(
            FromEmailAddress=config.from_email,
            Destination={"ToAddresses": [message.to_email]},
            Content={"Raw": {"Data": message.as_bytes()}},
        )


def mailgun_loop(config, share, batch_size: int) -> None:
    """The plain `mailgun` SDK loop: content once per request, recipient-variables per address."""
    import json
    from email.utils import formataddr

    from mailgun.client import Client
    from mailgun.config import RetryPolicy

    client = Client(
        auth=("api", KEY),
        api_url=config.mailgun.base_url,
        retry_policy=RetryPolicy(max_retries=0),
    )
    sender = formataddr((config.from_name or config.name, config.from_email))
    for start in range(0, len(share), batch_size):
        batch = share[start : start + batch_size]
        rendered = batch[0].campaign.rendered
        _, html, text = rendered.with_tokens("%recipient.h{}%", "%recipient.t{}%")
        variables = {}
        for message in batch:
            html_values, text_values, _ = rendered.part_values(message.values)
            mine = {f"h{i}": v for i, v in html_values.items()}
            mine.update({f"t{i}": v for i, v in text_values.items()})
            mine["unsubscribe"] = message.list_unsubscribe
            variables[message.to_email] = mine
        fields = [
            ("from", sender),
            ("subject", rendered.subject_parts[0]),
            ("html", html),
            ("text", text),
            ("h:List-Unsubscribe", "%recipient.unsubscribe%"),
            *(("to", formataddr((m.to_name, m.to_email))) for m in batch),
            ("recipient-variables", json.dumps(variables)),
        ]
        files = [(name, (None, value)) for name, value in fields]
        answer = client.messages.create(domain=MAILGUN_DOMAIN, files=files)
        assert answer.status_code == 200, answer.text
    client.close()


class PssSampler(threading.Thread):
    """Peak memory of a process and its children together, sampled every 100 ms.

    PSS (proportional set size) counts a page shared by two processes half in each, so the
    sum is what the processes take together: the read-ahead child is forked and shares most
    of its pages with the sending process.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kb = 0
        self.done = threading.Event()

    def run(self) -> None:
        # Light enough not to slow what it measures: children looked up once a second.
        pids, looked = [self.pid], 0.0
        while not self.done.wait(0.1):
            if time.monotonic() - looked > 1.0:
                pids, looked = [self.pid, *_children(self.pid)], time.monotonic()
            self.peak_kb = max(self.peak_kb, sum(_pss_kb(pid) for pid in pids))


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(mode: str, root: Path, env: dict[str, str]) -> dict:
    """Run `child` in a new process; its figures plus peak memory in MB."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    full.update(
        env, PYTHONPATH=str(REPO), NEWSLETTER_SECRET="bench-secret-0123456789abcdef-0123456789"
    )
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", mode, str(root)],
        env=full,
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    sampler = PssSampler(process.pid)
    sampler.start()
    output = process.stdout.read()
    sampler.done.set()
    sampler.join()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{mode} failed ({process.returncode})")
    figures = json.loads(output.strip().splitlines()[-1])
    figures.setdefault("own_mb", usage.ru_maxrss / 1024)  # KB on Linux
    figures.setdefault("reader_mb", 0.0)
    figures["pss_mb"] = sampler.peak_kb / 1024
    return figures


def memory(figures: dict) -> str:
    """Peak memory of the sending process and its read-ahead child together (PSS), then the
    peak RSS of each: RSS counts the pages they share in both."""
    own, reader, pss = figures["own_mb"], figures["reader_mb"], figures["pss_mb"]
    if not reader:  # dry runs read the list in-thread
        return f"peak {own:.0f} MB"
    return f"peak {pss:.0f} MB together (RSS {own:.0f} MB + read-ahead {reader:.0f} MB)"


def compare(
    kind: str,
    folder: Path,
    count: int,
    workers: int | None = None,
    rounds: int = 1,
    smtp_server: str | None = None,
) -> None:
    """Raw loop then engine, `rounds` times in turn: the machine's load drifts, so each
    engine run is set against the raw run just before it, and the median ratio reported."""
    root = write_workspace(folder, count)
    server = Server(kind) if not (kind == "smtp" and smtp_server) else None
    pairs = []
    try:
        env = environment(kind, server.address if server else smtp_server)
        if workers:
            env["NEWSLETTER_SEND_WORKERS"] = str(workers)
        for _ in range(rounds):
            raw = measure("raw", root, env)
            shutil.rmtree(root / ".newsletter", ignore_errors=True)
            sent = measure("send", root, env)
            shutil.rmtree(root / ".newsletter", ignore_errors=True)
            pairs.append((raw["sent"] / raw["seconds"], sent["sent"] / sent["seconds"], sent))
    finally:
        if server:
            server.close()
    print(f"{kind}: {count:,} recipients" + (f" (server {smtp_server})" if server is None else ""))
    for raw_rate, rate, sent in pairs:
        print(f"  raw client loop, pre-built messages: {raw_rate:9,.0f} /s")
        print(
            f"  newsletter send (engine):            {rate:9,.0f} /s  = {rate / raw_rate:.0%} "
            f"of raw, {memory(sent)}"
        )
    if rounds > 1:
        ratios = sorted(rate / raw_rate for raw_rate, rate, _ in pairs)
        print(f"  median of {rounds} rounds:               {ratios[len(ratios) // 2]:9.0%} of raw")
    print(f"  counting pass before confirming:     {pairs[-1][2]['plan_seconds']:9.2f} s")


def dry_run(folder: Path, count: int) -> None:
    root = write_workspace(folder, count)
    figures = measure("dry-run", root, {"NEWSLETTER_SEND_PROVIDER": "outbox"})
    rate = figures["sent"] / figures["seconds"]
    print(
        f"dry run, {count:>9,} recipients: {memory(figures)}, "
        f"{rate:,.0f} /s (+ {figures['plan_seconds']:.1f} s counting)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--dry-run-recipients", type=int, default=1_000_000)
    parser.add_argument("--providers", default="sendgrid,postmark,smtp")
    parser.add_argument("--workers", type=int, help="default: each provider's own")
    parser.add_argument("--rounds", type=int, default=1, help="raw/engine pairs per provider")
    parser.add_argument("--smtp-server", metavar="HOST:PORT", help="default: aiosmtpd")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "WORKSPACE"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for kind in filter(None, args.providers.split(",")):
            compare(kind, folder, args.recipients, args.workers, args.rounds, args.smtp_server)
        for count in sorted({args.recipients, args.dry_run_recipients}):
            dry_run(folder, count)


if __name__ == "__main__":
    main()
