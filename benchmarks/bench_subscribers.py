"""Subscriber lists at scale: count, validate, sendable and one-row edits on a generated list.

Each operation runs in a fresh interpreter so its peak memory (ru_maxrss) is its own; the
"interpreter" row is the baseline of Python plus the imports.

Run: python benchmarks/bench_subscribers.py [--rows 1000000] [--import-rows 100000]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

STATUSES = ["subscribed"] * 8 + ["unsubscribed", "bounced"]
HEADER = ["email", "name", "status", "subscribed_at", "updated_at", "source", "company"]


def address(n: int) -> str:
    """Plain, dotted and tagged local parts, over a hundred domains."""
    local = (f"reader{n}", f"first.last{n}", f"reader+news{n}")[n % 3]
    return f"{local}@example{n % 101}.org"


def generate(folder: Path, rows: int) -> Path:
    """A list shaped like a real one: some quoted names, a custom field, 20% not subscribed."""
    path = folder / "main.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HEADER)
        for n in range(rows):
            name = f"Reader {n}" if n % 7 else f'Reader "{n}", Jr.'
            when = f"2024-{n % 12 + 1:02d}-{n % 28 + 1:02d}T09:{n % 60:02d}:00+00:00"
            writer.writerow(
                [address(n), name, STATUSES[n % 10], when, when, "form"]
                + [f"Company {n % 1000}" if n % 3 else ""]
            )
    (folder / "suppressions.csv").write_text(
        "email,reason,at\n" + "".join(f"{address(n)},bounced,\n" for n in range(0, rows, 1000))
    )
    return path


def generate_import(path: Path, rows: int, offset: int) -> None:
    """A Mailchimp-shaped export: half the addresses are already in the list."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(
            ["Email Address", "First Name", "Last Name", "MEMBER_RATING", "OPTIN_TIME", "LEID"]
        )
        for n in range(offset, offset + rows):
            writer.writerow([address(n), "Reader", str(n), "2", "2023-01-01 10:00:00", n])


def run_operation(operation: str, folder: Path, argument: str) -> dict[str, float]:
    """Run in this (fresh) interpreter; report seconds and peak memory."""
    from newsletter import subscribers as subs

    start, cpu = time.perf_counter(), time.process_time()
    result = ""
    if operation == "count":
        result = sum(subs.count(folder, "main").values())
    elif operation == "validate":
        result = len(subs.validate(folder, "main"))
    elif operation == "sendable":
        result = sum(1 for _ in subs.sendable(folder, "main"))
    elif operation == "set_status":
        result = subs.set_status(folder, "main", argument, "unsubscribed")
    elif operation == "add":
        result = subs.add_subscriber(folder, "main", argument)
    elif operation == "import":
        report = subs.import_file(folder, "main", Path(argument))
        result = f"{report.added} added, {report.unchanged} unchanged"
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"seconds": seconds, "cpu": cpu, "peak_mb": peak, "result": str(result)}


def measure(operation: str, folder: Path, argument: str = "") -> dict[str, float]:
    script = Path(__file__).resolve()
    out = subprocess.run(
        [sys.executable, str(script), "--op", operation, "--dir", str(folder), "--arg", argument],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--import-rows", type=int, default=100_000)
    parser.add_argument("--op", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--arg", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.op:
        print(json.dumps(run_operation(args.op, Path(args.dir), args.arg)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "subscribers"
        folder.mkdir()
        start = time.perf_counter()
        path = generate(folder, args.rows)
        size = path.stat().st_size / 1e6
        print(
            f"{args.rows:,} rows, {size:.0f} MB, generated in {time.perf_counter() - start:.1f} s"
        )
        export = Path(tmp) / "mailchimp_export.csv"
        generate_import(export, args.import_rows, args.rows - args.import_rows // 2)
        last = address(args.rows - 1)
        operations = [
            ("interpreter and imports", "none", ""),
            ("count", "count", ""),
            ("validate", "validate", ""),
            ("sendable (stream all)", "sendable", ""),
            ("set_status, last row", "set_status", last),
            ("add one address", "add", "new.reader@example.org"),
            (f"import {args.import_rows:,} rows", "import", str(export)),
        ]
        load = os.getloadavg()[0]
        print(f"load average {load:.1f} on {os.cpu_count()} CPUs (wall time suffers when busy)")
        print(f"{'operation':<26}{'seconds':>9}{'CPU s':>8}{'peak MB':>10}  result")
        for label, operation, argument in operations:
            figures = measure(operation, folder, argument)
            print(
                f"{label:<26}{figures['seconds']:>9.2f}{figures['cpu']:>8.2f}"
                f"{figures['peak_mb']:>10.0f}  "
                f"{figures['result']}"
            )


if __name__ == "__main__":
    main()
