"""Send throughput: `newsletter send` against each provider's own raw client loop, same run.

For SendGrid, Postmark, Resend, Mailgun and SES (each against its loopback server from
tests/, run in a process of its own) and SMTP (Postfix's smtp-sink, started here unless
--smtp-server names one: it answers faster than any client sends, unlike aiosmtpd), the
same list of recipients goes out twice, back to back:

- the raw loop (raw_loops.py): the provider's own client, with the same workers and batch
  size, sending requests checked byte for byte against ours before the clock starts; the
  per-recipient data that is not transport (merge values, tokens, MIME bytes) is built
  before the clock starts too. Timed: from the first request built to the last answer.
- the whole `python -m newsletter send issues/merge.md --yes` process: wall time from its
  start to its exit, interpreter start-up, imports, rendering, the list and the ledger
  included.

Each provider's pair runs `--rounds` times; the ratio (send rate / raw rate) of each pair is
printed, then the range per provider against the 0.8 target. Then the peak memory of dry
runs of --recipients and --dry-run-recipients (0 to skip).

Run: python benchmarks/bench_send.py [--recipients 100000] [--rounds 2]
     [--providers sendgrid,postmark,resend,mailgun,ses,smtp] [--dry-run-recipients 0]
     [--workers N] [--smtp-server HOST:PORT]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))  # raw_loops and bench_servers, run as a child

from bench_servers import AWS_KEY_ID, KEY, MAILGUN_DOMAIN, Server, smtp_sink  # noqa: E402

TARGET = 0.8  # issue 14: newsletter send reaches 0.8x of each provider's raw client loop
PROVIDERS = ("sendgrid", "postmark", "resend", "mailgun", "ses", "smtp")


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
    """Run one raw loop or dry run in this process; return its figures."""
    from newsletter import sending
    from newsletter.config import load_config
    from newsletter.providers import make_provider
    from newsletter.sending.ledger import Ledger

    env = dict(os.environ)
    config = load_config(root / "newsletter.toml", env=env)
    provider = config.send.provider
    prepared = sending.prepare(config, root / "issues" / "merge.md")
    settings = sending.settings_for(config, provider, dry_run=mode == "dry-run")
    if mode == "raw":
        import raw_loops

        campaign = prepared.campaign
        messages = [
            campaign.message(s.email, s.key, s.merge_fields(), s.name)
            for s in prepared.recipients()
        ]
        if provider in ("ses", "smtp"):  # the same MIME bytes, built before the clock starts
            data = {m.key: m.as_bytes() for m in messages}
        else:
            data = raw_loops.recipient_ids(messages)
        with make_provider(provider, config, env=env) as ours:
            raw_loops.same_as_ours(ours, config, messages[: settings.batch_size], data)
        loop = getattr(raw_loops, f"loop_{provider}")
        shares = [messages[i :: settings.workers] for i in range(settings.workers)]
        threads = [
            threading.Thread(target=loop, args=(config, env, share, settings.batch_size, data))
            for share in shares
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return {"seconds": time.perf_counter() - started, "sent": len(messages)}
    with Ledger(None) as ledger:
        started = time.perf_counter()
        plan = sending.plan(prepared, ledger, settings)
        planned = time.perf_counter() - started
        started = time.perf_counter()
        factory = lambda: make_provider(provider, config, env=env)  # noqa: E731
        summary = sending.run(prepared, ledger, factory, settings, total=plan.to_send)
        elapsed = time.perf_counter() - started
    own_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": elapsed, "plan_seconds": planned, "sent": summary.sent, "own_mb": own_mb}


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
    """Run a raw loop or dry run (`child`) or the whole `newsletter send` in a new process;
    its figures plus peak memory in MB. For `send` the seconds are the process's wall time,
    from start to exit: interpreter start-up, imports, rendering and the ledger included."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    full.update(
        env, PYTHONPATH=str(REPO), NEWSLETTER_SECRET="bench-secret-0123456789abcdef-0123456789"
    )
    command = [sys.executable, __file__, "--child", mode, str(root)]
    if mode == "send":
        command = [sys.executable, "-m", "newsletter", "send", "issues/merge.md", "--yes"]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=full, cwd=root, stdout=subprocess.PIPE, text=True)
    sampler = PssSampler(process.pid)
    sampler.start()
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{mode} failed ({process.returncode}): {output[-2000:]}")
    if mode == "send":
        sent = re.search(r"^Sent ([\d,]+) in", output, re.MULTILINE)
        if sent is None:
            raise SystemExit(f"no count in the output of newsletter send: {output[-2000:]}")
        figures = {"seconds": wall, "sent": int(sent.group(1).replace(",", ""))}
    else:
        figures = json.loads(output.strip().splitlines()[-1])
    figures.setdefault("own_mb", usage.ru_maxrss / 1024)  # KB on Linux
    figures["pss_mb"] = sampler.peak_kb / 1024
    return figures


def compare(
    kind: str,
    folder: Path,
    count: int,
    workers: int | None = None,
    rounds: int = 1,
    smtp_server: str | None = None,
) -> tuple[float, float]:
    """Raw loop then `newsletter send`, `rounds` times in turn: the machine's load drifts, so
    each send is set against the raw run just before it. Returns the (lowest, highest) ratio."""
    root = write_workspace(folder, count)
    server = Server(kind) if not (kind == "smtp" and smtp_server) else None
    pairs = []
    try:
        env = environment(kind, server.address if server else smtp_server)
        if workers:
            env["NEWSLETTER_SEND_WORKERS"] = str(workers)
        for _ in range(rounds):
            before = server.cpu_seconds() if server else 0.0
            raw = measure("raw", root, env)
            middle = server.cpu_seconds() if server else 0.0
            shutil.rmtree(root / ".newsletter", ignore_errors=True)
            sent = measure("send", root, env)
            shutil.rmtree(root / ".newsletter", ignore_errors=True)
            # The server's CPU per side: it must be as busy for both, and not the limit.
            raw["server_cpu"] = middle - before
            sent["server_cpu"] = (server.cpu_seconds() if server else 0.0) - middle
            if sent["sent"] != count:
                raise SystemExit(f"{kind}: newsletter send sent {sent['sent']} of {count}")
            pairs.append((raw["sent"] / raw["seconds"], sent["sent"] / sent["seconds"], raw, sent))
    finally:
        if server:
            server.close()
    print(f"{kind}: {count:,} recipients" + (f" (server {smtp_server})" if server is None else ""))
    for raw_rate, rate, raw, sent in pairs:
        print(
            f"  raw {raw_rate:8,.0f}/s  newsletter send {rate:8,.0f}/s  ratio {rate / raw_rate:.2f}"
            f"  (target {TARGET:.2f}; send peak {sent['pss_mb']:.0f} MB with its read-ahead)"
        )
        if server:
            print(
                f"    timed: raw {raw['seconds']:.1f} s, send {sent['seconds']:.1f} s; "
                f"server CPU: {raw['server_cpu']:.1f} s, {sent['server_cpu']:.1f} s"
            )
    ratios = [rate / raw_rate for raw_rate, rate, _, _ in pairs]
    return min(ratios), max(ratios)


def dry_run(folder: Path, count: int) -> None:
    root = write_workspace(folder, count)
    figures = measure("dry-run", root, {"NEWSLETTER_SEND_PROVIDER": "outbox"})
    rate = figures["sent"] / figures["seconds"]
    print(
        f"dry run, {count:>9,} recipients: peak {figures['own_mb']:.0f} MB, "
        f"{rate:,.0f} /s (+ {figures['plan_seconds']:.1f} s counting)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--dry-run-recipients", type=int, default=1_000_000)
    parser.add_argument("--providers", default=",".join(PROVIDERS))
    parser.add_argument("--workers", type=int, help="default: each provider's own")
    parser.add_argument("--rounds", type=int, default=1, help="raw/engine pairs per provider")
    parser.add_argument("--smtp-server", metavar="HOST:PORT", help="default: a smtp-sink of ours")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "WORKSPACE"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return
    sink = None
    if "smtp" in args.providers.split(",") and not args.smtp_server:
        sink, args.smtp_server = smtp_sink()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            ranges = {}
            for kind in filter(None, args.providers.split(",")):
                ranges[kind] = compare(
                    kind, folder, args.recipients, args.workers, args.rounds, args.smtp_server
                )
            print(f"ratio newsletter send / raw loop, {args.recipients:,} recipients:")
            for kind, (low, high) in ranges.items():
                verdict = "ok" if low >= TARGET else ("mixed" if high >= TARGET else "below")
                print(f"  {kind:9} {low:.2f}-{high:.2f}  (target {TARGET:.2f}: {verdict})")
            for count in sorted({args.recipients, args.dry_run_recipients} - {0}):
                dry_run(folder, count)
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait()


if __name__ == "__main__":
    main()
