"""Render time of the sample issue in-process (warm) and of a whole `newsletter preview` process.

Run: python benchmarks/bench_render.py [--runs N]
"""

from __future__ import annotations

import argparse
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
    """The `newsletter preview` process beside the tools it is measured against (issue 15):
    with the spam check, against SpamAssassin alone on the same message (target <= 1.1x);
    without it, against npm mjml compiling the same MJML (target <= 0.9x)."""
    import os

    from newsletter.checks import spam

    command = [sys.executable, "-m", "newsletter", "preview", str(SAMPLE.relative_to(REPO))]
    env = {k: v for k, v in os.environ.items() if k != spam.ENV}

    # (wall, CPU) medians: on a busy machine the wall clock mostly measures other processes;
    # the CPU time (the process and its children) says what ours cost.
    def median_of(count: int, argv: list[str], stdin: bytes | None = None, **kw):
        import resource

        times, cpus = [], []
        for _ in range(count):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(argv, input=stdin, check=True, capture_output=True, **kw)
            times.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        return statistics.median(times), statistics.median(cpus)

    def ms(value: tuple[float, float]) -> str:
        return f"{value[0] * 1000:8.1f} ms (CPU {value[1] * 1000:6.1f} ms)"

    without_spam = median_of(runs, command, cwd=REPO, env={**env, spam.ENV: "off"})
    built = REPO / "build" / SAMPLE.stem
    print(f"`newsletter preview` process, median of {runs}: {ms(without_spam)} (no spam check)")
    mjml = REPO / "tools" / "mjml-reference" / "node_modules" / ".bin" / "mjml"
    if mjml.exists():
        source = (built / "email.mjml").read_bytes()
        npm = median_of(runs, [str(mjml), "-i", "-s", "--config.validationLevel", "skip"], source)
        print(f"  npm mjml on the same MJML:               {ms(npm)}")
        print(
            f"  ratio preview / npm mjml:                {without_spam[0] / npm[0]:8.2f}x (target <= 0.9)"
        )
    executable = spam.find_spamassassin(env)
    if executable:
        spam_runs = max(1, runs // 2)
        with_spam = median_of(spam_runs, command, cwd=REPO, env=env)
        eml = (built / "email.eml").read_bytes()
        alone = median_of(spam_runs, [executable, *spam.COMMAND], eml)
        print(f"  with the SpamAssassin check:             {ms(with_spam)}")
        print(f"  SpamAssassin alone on the same message:  {ms(alone)}")
        print(
            f"  ratio preview / SpamAssassin:            {with_spam[0] / alone[0]:8.2f}x (target <= 1.1)"
        )
    baseline = median_of(runs, [sys.executable, "-c", "pass"])
    print(f"  (bare `python -c pass` on this machine:   {ms(baseline)})")
    print(f"  (load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--process-runs", type=int, default=10)
    args = parser.parse_args()
    in_process(args.runs)
    whole_process(args.process_runs)
