"""The files store and PostgreSQL side by side: import, count, streaming the sendable
subscribers, and the peak memory of a dry-run send, at two list sizes.

Each step runs in a fresh `python` process, timed from outside (process start-up included,
~0.5 s), its peak memory read from the process's own rusage (ru_maxrss, which also covers
any child it waited for, such as the send's read-ahead process). PostgreSQL is a private
server started the way the tests start theirs (tests/pg_server.py), with fsync off, so its
figures are of the work, not of a disk.

Two more figures come from other modules when they are present, each with a `run(...)`
called with whichever of these keyword arguments it accepts: pg (the PgServer), rows,
workdir (a scratch folder), repo; it returns a line or a list of lines to print:
  - benchmarks/store_unsubscribe.py: unsubscribe p50/p99 under 200 concurrent one-click
    unsubscribes, on each store, with an import running;
  - benchmarks/store_senders.py: throughput of one, two and three senders on one send.

Run: python benchmarks/bench_store.py [--rows 1000000] [--small 100000]
"""

from __future__ import annotations

import argparse
import csv
import importlib
import inspect
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # pg_server
sys.path.insert(0, str(REPO / "benchmarks"))  # the optional store_* modules

LIST = "big"
ISSUE = "issues/merge.md"


def write_export(folder: Path, rows: int) -> Path:
    path = folder / f"export-{rows}.csv"
    if not path.exists():
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["email", "name", "status", "company"])
            for i in range(rows):
                status = "unsubscribed" if i % 50 == 0 else "subscribed"
                writer.writerow([f"reader{i:07d}@example.org", f"Reader {i}", status, "Acme"])
    return path


def workspace(folder: Path, name: str) -> Path:
    root = folder / name
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(REPO / "tests" / "fixtures" / "workspace", root)
    return root


def timed(args: list[str], root: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds, peak MB, stdout) of one process run in the workspace."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        args, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out, err = "", ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.stdout.read(), proc.stderr.read()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {err.strip()[-400:]}")
    return seconds, usage.ru_maxrss / 1024, out


def newsletter(*args: str) -> list[str]:
    return [sys.executable, "-m", "newsletter", *args]


def child_sendable() -> None:
    """In a child process: stream the sendable subscribers of LIST, report count and peak."""
    from newsletter.config import load_config
    from newsletter.store import lists

    config = load_config(Path("newsletter.toml"))
    start = time.perf_counter()
    count = sum(1 for _ in lists.sendable(config, LIST))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"count": count, "seconds": seconds, "peak_mb": peak}))


def measure_store(kind: str, folder: Path, rows: int, env: dict[str, str]) -> dict:
    root = workspace(folder, f"{kind}-{rows}")
    export = write_export(folder, rows)
    figures: dict = {}
    if kind == "postgres":
        timed(newsletter("store", "migrate"), root, env)
    figures["import"] = timed(
        newsletter("subscribers", "import", str(export), "--list", LIST), root, env
    )
    figures["count"] = timed(newsletter("subscribers", "count", LIST), root, env)
    _, _, out = timed([sys.executable, __file__, "--child-sendable"], root, env)
    figures["sendable"] = json.loads(out)
    figures["dry_run"] = timed(
        newsletter("send", ISSUE, "--list", LIST, "--dry-run", "--yes"), root, env
    )
    return figures


def row(label: str, files: str, postgres: str) -> str:
    return f"{label:<44} {files:>22} {postgres:>22}"


def report(rows: int, by_store: dict[str, dict]) -> list[str]:
    f, p = by_store["files"], by_store["postgres"]
    lines = [row(f"{rows:,} rows", "files", "PostgreSQL")]
    lines.append(row("import (s)", f"{f['import'][0]:.1f}", f"{p['import'][0]:.1f}"))
    lines.append(row("count (s)", f"{f['count'][0]:.2f}", f"{p['count'][0]:.2f}"))
    fs, ps = f["sendable"], p["sendable"]
    lines.append(
        row(
            "stream sendable (s, rows/s, peak MB)",
            f"{fs['seconds']:.1f}, {fs['count'] / fs['seconds']:,.0f}, {fs['peak_mb']:.0f}",
            f"{ps['seconds']:.1f}, {ps['count'] / ps['seconds']:,.0f}, {ps['peak_mb']:.0f}",
        )
    )
    lines.append(
        row(
            "dry-run send (s, peak MB)",
            f"{f['dry_run'][0]:.1f}, {f['dry_run'][1]:.0f}",
            f"{p['dry_run'][0]:.1f}, {p['dry_run'][1]:.0f}",
        )
    )
    return lines


def optional(name: str, **available) -> list[str]:
    """Lines from benchmarks/<name>.py's run(...), or a note that it is not there yet."""
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError:
        return [f"({name}.py not present: no figures)"]
    wanted = inspect.signature(module.run).parameters
    got = module.run(**{k: v for k, v in available.items() if k in wanted})
    return [got] if isinstance(got, str) else [str(line) for line in got or ()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000, help="the second list size")
    parser.add_argument("--child-sendable", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_sendable:
        child_sendable()
        return
    from pg_server import PgServer

    folder = Path(tempfile.mkdtemp(prefix="bench-store-"))
    server = PgServer().start()
    try:
        base = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        base["PYTHONPATH"] = str(REPO)
        base["NEWSLETTER_SPAMASSASSIN"] = "off"
        for rows in sorted({args.small, args.rows}):
            by_store = {
                "files": measure_store("files", folder, rows, base),
                "postgres": measure_store(
                    "postgres",
                    folder,
                    rows,
                    {**base, "NEWSLETTER_STORE_URL": server.fresh_database()},
                ),
            }
            print("\n".join(report(rows, by_store)), flush=True)
            print(flush=True)
        # --- hooks: figures other parts of issue 13 add -------------------------------------
        extra = {"pg": server, "rows": args.rows, "workdir": folder, "repo": REPO}
        print("unsubscribe p50/p99 under 200 concurrent one-click unsubscribes:")
        print("\n".join(optional("store_unsubscribe", **extra)), flush=True)
        print("one, two and three senders on one send:")
        print("\n".join(optional("store_senders", **extra)), flush=True)
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
