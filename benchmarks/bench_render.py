"""Render time of the sample issue in-process (warm) and of a whole `newsletter preview` process.

Run: python benchmarks/bench_render.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "issues" / "2022-01-21-nato-weekly-roundup-week-of-january-21st.md"


def in_process(runs: int) -> None:
    from newsletter.config import load_config
    from newsletter.issue import load_issue
    from newsletter.render import Renderer

    config = load_config(REPO / "newsletter.toml")
    renderer = Renderer(config)
    start = time.perf_counter()
    renderer.render(load_issue(SAMPLE))
    cold = time.perf_counter() - start
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        rendered = renderer.render(load_issue(SAMPLE))  # re-reads and re-parses the file too
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    for n in range(1000):
        rendered.personalize({"email": f"r{n}@example.org"}, f"https://u/{n}")
    per_recipient = (time.perf_counter() - start) / 1000
    print(f"render, first in process:   {cold * 1000:8.2f} ms")
    print(f"render, warm median of {runs}: {statistics.median(times) * 1000:8.2f} ms "
          f"(p90 {sorted(times)[int(runs * 0.9)] * 1000:.2f} ms)")  # fmt: skip
    print(f"personalize one recipient:  {per_recipient * 1e6:8.1f} µs")


def whole_process(runs: int) -> None:
    import os

    command = [sys.executable, "-m", "newsletter", "preview", str(SAMPLE.relative_to(REPO))]

    def timed(spam: str, count: int) -> float:
        env = {k: v for k, v in os.environ.items() if k != "NEWSLETTER_SPAMASSASSIN"}
        if spam:
            env["NEWSLETTER_SPAMASSASSIN"] = spam
        times = []
        for _ in range(count):
            start = time.perf_counter()
            subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    without_spam = timed("off", runs)
    with_spam = timed("", max(1, runs // 3)) if shutil.which("spamassassin") else None
    baseline = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        baseline.append(time.perf_counter() - start)
    print(
        f"`newsletter preview` process, median of {runs}: {without_spam * 1000:8.1f} ms (no spam check)"
    )
    if with_spam is not None:
        print(f"  with the SpamAssassin check:             {with_spam * 1000:8.1f} ms")
    print(
        f"  (bare `python -c pass` on this machine:   {statistics.median(baseline) * 1000:8.1f} ms)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--process-runs", type=int, default=10)
    args = parser.parse_args()
    in_process(args.runs)
    whole_process(args.process_runs)
