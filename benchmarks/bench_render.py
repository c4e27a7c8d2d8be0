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
    """The `newsletter preview` process beside the tools it is measured against (issue 15):
    with the spam check, against SpamAssassin alone on the same message (target <= 1.1x);
    without it, against npm mjml compiling the same MJML (target <= 0.9x); and, when spamd
    and spamc are installed, with a running spamd (NEWSLETTER_SPAMD, a private one started
    here) against SpamAssassin alone and against `spamc` alone. The two sides run in
    alternation and the ratio is the median of the pairs' ratios, so a change in the
    machine's load hits both sides alike. Templates are compiled once before measuring, as
    they are after an author's first preview (Jinja's bytecode cache)."""
    import os
    import resource

    from newsletter.checks import spam

    command = [sys.executable, "-m", "newsletter", "preview", str(SAMPLE.relative_to(REPO))]
    env = {k: v for k, v in os.environ.items() if k not in (spam.ENV, spam.SPAMD_ENV)}
    built = REPO / "build" / SAMPLE.stem

    def once(argv: list[str], stdin: bytes | None = None, **kw) -> tuple[float, float]:
        """(wall, CPU of the process and its children) of one run, in seconds."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, input=stdin, check=True, capture_output=True, **kw)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime

    def compare(name: str, ours, theirs, target: float | None, count: int) -> None:
        pairs = [(ours(), theirs()) for _ in range(count)]
        for label, side in (("`newsletter preview`" + name, 0), ("  " + theirs.__doc__, 1)):
            wall = statistics.median(p[side][0] for p in pairs)
            cpu = statistics.median(p[side][1] for p in pairs)
            print(f"{label:<46} {wall * 1000:8.1f} ms (CPU {cpu * 1000:6.1f} ms)")
        ratios = [a[0] / b[0] for a, b in pairs]
        cpu_ratios = [a[1] / b[1] for a, b in pairs]
        print(
            f"  ratio, median of {count} pairs:{'':<16} {statistics.median(ratios):8.2f}x "
            f"(CPU {statistics.median(cpu_ratios):.2f}x; "
            + (f"target <= {target})" if target else "no target: for scale)")
        )

    def preview_no_spam():
        return once(command, cwd=REPO, env={**env, spam.ENV: "off"})

    preview_no_spam()  # writes build/<slug>/email.mjml and .eml for the others
    mjml = REPO / "tools" / "mjml-reference" / "node_modules" / ".bin" / "mjml"
    if mjml.exists():
        source = (built / "email.mjml").read_bytes()

        def npm_mjml():
            """npm mjml on the same MJML"""
            return once([str(mjml), "-i", "-s", "--config.validationLevel", "skip"], source)

        compare(", no spam check", preview_no_spam, npm_mjml, 0.9, runs)
    executable = spam.find_spamassassin(env)
    if executable:
        eml = (built / "email.eml").read_bytes()

        def spamassassin_alone():
            """SpamAssassin alone on the same message"""
            return once([executable, *spam.COMMAND], eml)

        def preview_with_spam():
            return once(command, cwd=REPO, env=env)

        compare(", with SpamAssassin", preview_with_spam, spamassassin_alone, 1.1, runs)
        sys.path.insert(0, str(REPO / "tests"))  # spamd_server, as the tests start theirs
        from spamd_server import find_spamd

        if find_spamd() and shutil.which("spamc"):
            with_spamd(command, env, eml, spamassassin_alone, compare, once, runs)
    print(f"(load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")


def with_spamd(command, env, eml, spamassassin_alone, compare, once, runs: int) -> None:
    """preview with a spamd running, against SpamAssassin alone and against spamc alone."""
    import tempfile

    from spamd_server import Spamd

    from newsletter.checks import spam

    with tempfile.TemporaryDirectory() as folder:
        spamd = Spamd(Path(folder)).start()
        try:
            spamc = [shutil.which("spamc"), "-d", "127.0.0.1", "-p", str(spamd.port), "-R"]

            def preview_with_spamd():
                return once(command, cwd=REPO, env={**env, spam.SPAMD_ENV: spamd.address})

            def spamc_alone():
                """spamc alone (spamd running)"""
                return once(spamc, eml)

            compare(", with spamd", preview_with_spamd, spamassassin_alone, 1.1, runs)
            compare(", with spamd", preview_with_spamd, spamc_alone, None, runs)
        finally:
            spamd.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--process-runs", type=int, default=10)
    args = parser.parse_args()
    in_process(args.runs)
    whole_process(args.process_runs)
