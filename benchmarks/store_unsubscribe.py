"""Unsubscribe latency under load, on each store: 200 concurrent one-click unsubscribes against
a big list while an import into that list is running; none may be lost.

For each store a real `newsletter serve` process answers on a loopback port; the 200 POSTs go
out at once from an asyncio client (uvloop, bare protocols: it costs ~0.07 ms of CPU per
request, on the same two cores as serve) and each is timed from send to answer. The import is a real
`newsletter subscribers import` of 200,000 new addresses into the same list (on PostgreSQL,
when this checkout has no PostgreSQL import yet, the same merge the lists component runs: COPY
into a temporary table, then one INSERT ... ON CONFLICT, in one transaction). Afterwards the
list is read back: every one of the 200 must show `unsubscribed`.

Before the burst, serve has indexed the list's link ids (it does so at start, in the
background); that time is printed too.

Run alone: python benchmarks/store_unsubscribe.py [--rows 1000000]
Or from benchmarks/bench_store.py, which calls run(pg=..., rows=..., workdir=...).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib.util
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

LIST = "big"
CONCURRENT = 200
ALONE = 20  # then one at a time: what one costs when nothing queues
IMPORTED = 200_000
HOST = "news.example.org"  # the fixture workspace's base_url
POOL_SIZE = 0  # [store] pool_size for serve on PostgreSQL (0: the default); --pool-size
LISTS_SQL = """
CREATE TABLE IF NOT EXISTS subscribers (
    list text NOT NULL, key text NOT NULL, email text NOT NULL, name text NOT NULL DEFAULT '',
    status text NOT NULL DEFAULT 'subscribed', subscribed_at text NOT NULL DEFAULT '',
    updated_at text NOT NULL DEFAULT '', source text NOT NULL DEFAULT '',
    fields jsonb NOT NULL DEFAULT '{}', tags text[] NOT NULL DEFAULT '{}',
    position bigint NOT NULL, PRIMARY KEY (list, key)
);
CREATE TABLE IF NOT EXISTS suppressions (
    key text PRIMARY KEY, email text NOT NULL, reason text NOT NULL DEFAULT '',
    at text NOT NULL DEFAULT '', position bigserial NOT NULL
);
"""


def address(i: int) -> str:
    return f"reader{i:07d}@example.org"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workspace(folder: Path, name: str) -> Path:
    root = folder / name
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(REPO / "tests" / "fixtures" / "workspace", root)
    toml = root / "newsletter.toml"
    toml.write_text(f'list = "{LIST}"\n' + toml.read_text())  # a top-level key: first
    return root


def write_import(folder: Path, rows: int) -> Path:
    path = folder / "import.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["email", "name"])
        for i in range(rows, rows + IMPORTED):
            out.writerow([address(i), f"New {i}"])
    return path


def environment(url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    if POOL_SIZE:
        env["NEWSLETTER_STORE_POOL_SIZE"] = str(POOL_SIZE)
    env["PYTHONPATH"] = str(REPO)
    env["NEWSLETTER_SPAMASSASSIN"] = "off"
    if url:
        env["NEWSLETTER_STORE_URL"] = url
    return env


def start_serve(root: Path, env: dict[str, str], workers: int = 1) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(port)]
        + (["--workers", str(workers)] if workers > 1 else []),
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("serve did not start")


def one_click(token: str) -> bytes:
    body = b"List-Unsubscribe=One-Click"
    return (
        f"POST /unsubscribe/{token} HTTP/1.1\r\nHost: {HOST}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


HEALTHZ = f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()


def run_client(requests):
    """Run the client on uvloop, as serve runs: on the standard loop the client spends as much
    CPU per request as serve (0.17 ms), on the same two cores, which would be timed too."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(requests)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(requests)


class _Exchange(asyncio.Protocol):
    """One request on one connection: its answer gathered, the time from the request written
    to the connection closed after the whole answer (Connection: close). asyncio's streams
    cost the client as much CPU per request as serve spends answering it."""

    def __init__(self) -> None:
        self.answer = bytearray()
        self.began = 0.0
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, request: bytes) -> None:
        self.began = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.answer += data

    def eof_received(self) -> None:
        self._finish()

    def connection_lost(self, exc) -> None:
        self._finish()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(time.perf_counter() - self.began)


async def burst(port: int, tokens: list[str] | None = None, raw: list[bytes] | None = None):
    """Every token's one-click POST (or every raw request) at once, each on its own connection
    opened beforehand; each one's latency (s), from its request written to its whole answer
    read. A bare asyncio client in its own process (serve is another): an HTTP library's own
    cost would be timed too on a busy machine."""
    requests = raw if raw is not None else [one_click(t) for t in tokens or []]
    loop = asyncio.get_running_loop()
    exchanges = []
    for _ in requests:
        _, exchange = await loop.create_connection(_Exchange, "127.0.0.1", port)
        exchanges.append(exchange)
    await asyncio.sleep(0.2)  # the connections are accepted and settled
    for exchange, request in zip(exchanges, requests, strict=True):
        exchange.send(request)
    took = await asyncio.gather(*(e.done for e in exchanges))
    for exchange in exchanges:
        exchange.transport.close()
        answer = bytes(exchange.answer)
        status = answer.split(b" ", 2)[1] if answer.startswith(b"HTTP/") else b"?"
        if status != b"200":
            raise RuntimeError(f"answered {status.decode()}")
    return took


def in_process(root: Path, env: dict[str, str], tokens: list[str]) -> list[float]:
    """What one unsubscribe costs the store, without HTTP: 200 threads at once, each doing
    what the one-click handler's worker thread does (find the link's row, record it)."""
    from concurrent.futures import ThreadPoolExecutor

    from newsletter.config import load_config
    from newsletter.web import unsubscribe
    from newsletter.web.app import make_service

    logging.getLogger("newsletter").setLevel(logging.ERROR)  # its start-up indexing's notes
    config = load_config(root / "newsletter.toml", env=env)
    service = make_service(config, env)
    service.subscriber_key(tokens[0])  # the link index is built (as serve has it by now)
    gate = threading.Barrier(len(tokens))

    def one(token: str) -> float:
        gate.wait()
        began = time.perf_counter()
        if not unsubscribe.unsubscribe_now(service, token, "one-click"):
            raise RuntimeError("unsubscribe not recorded")
        return time.perf_counter() - began

    try:
        with ThreadPoolExecutor(len(tokens)) as pool:
            return list(pool.map(one, tokens))
    finally:
        if service.pg is not None:
            service.pg.db.close()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of serve: the process and its worker processes, if any."""
    total, pids = 0.0, [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        for each in pids:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return float("nan")
    return total


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def measure(
    root: Path, env: dict[str, str], rows: int, start_import, check, workers: int = 1
) -> list[str]:
    from newsletter.tokens import load_secret, make_token

    secret = load_secret(root / ".newsletter", env={})
    picked = random.Random(13).sample(range(1, rows), 2 * CONCURRENT + ALONE)
    picked = [i if i % 50 else i + 1 for i in picked]  # i % 50 == 0 start out unsubscribed
    over_http, direct = picked[:CONCURRENT], picked[CONCURRENT : 2 * CONCURRENT]
    alone = picked[2 * CONCURRENT :]
    tokens = {i: make_token(secret, LIST, address(i)) for i in picked}
    started = time.monotonic()
    proc, port = start_serve(root, env, workers)
    try:
        warm = warmed(port, tokens[over_http[0]]) + settled(proc.pid)
        warm_s = time.monotonic() - started
        importing = start_import()
        time.sleep(1.5)  # the import is under way (past its start-up) before the burst
        running = [importing.poll() is None]
        marks, client = [cpu_seconds(proc.pid)], time.process_time()
        http = run_client(burst(port, [tokens[i] for i in over_http]))
        client = time.process_time() - client  # this process: the load generator
        time.sleep(0.2)  # serve's work after the last answer is counted too
        marks.append(cpu_seconds(proc.pid))
        floor = run_client(burst(port, raw=[HEALTHZ] * CONCURRENT))
        time.sleep(0.2)
        marks.append(cpu_seconds(proc.pid))
        one = [run_client(burst(port, [tokens[i]]))[0] for i in alone]
        running.append(importing.poll() is None)
        store = in_process(root, env, [tokens[i] for i in direct])
        running.append(importing.poll() is None)
        importing.wait(timeout=900)
        if importing.returncode:
            raise RuntimeError(f"the import failed ({importing.returncode})")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    lost = check([address(i) for i in picked])
    during = {3: "throughout", 0: "no"}.get(sum(running), "partly")
    return [
        f"over HTTP, {CONCURRENT} at once{f' ({workers} workers)' if workers > 1 else ''}: "
        f"{figures(http)}; serve CPU {cpu_each(marks[0], marks[1])} each "
        f"(the client's: {cpu_each(0, client)})",
        f"GET /healthz, {CONCURRENT} at once (serve's HTTP floor): {figures(floor)}; "
        f"serve CPU {cpu_each(marks[1], marks[2])} each",
        f"over HTTP, one at a time: {figures(one)}",
        f"in the store (no HTTP), {CONCURRENT} threads at once: {figures(store)}",
        f"lost {lost} of {len(picked)}; import running: {during}; "
        f"serve start + link index {warm_s:.1f} s{warm}",
    ]


def cpu_each(before: float, after: float) -> str:
    """serve's CPU time per request of a burst: what no amount of waiting less can remove
    (on one core, the last of 200 is answered no sooner than 200 times this)."""
    return f"{(after - before) / CONCURRENT * 1000:.2f} ms"


def figures(latencies: list[float]) -> str:
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    return f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"


def settled(pid: int) -> str:
    """Wait until serve is idle: on PostgreSQL a row's link can be found while the rest of the
    list is still being indexed (by every worker), which would be timed with the burst."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(1)
        if cpu_seconds(pid) - before < 0.05:
            return ""
    return " (serve still busy after 600 s)"


def warmed(port: int, token: str) -> str:
    """Wait until serve has indexed the list's links (one page view finds a row quickly)."""
    import httpx

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        began = time.perf_counter()
        page = httpx.get(
            f"http://127.0.0.1:{port}/unsubscribe/{token}", headers={"Host": HOST}, timeout=600
        )
        if page.status_code == 200 and time.perf_counter() - began < 0.05:
            return ""
        time.sleep(0.5)
    return " (index not warm after 600 s)"


# --- files store ---------------------------------------------------------------------------


def files(folder: Path, rows: int) -> list[str]:
    root = workspace(folder, "files")
    path = root / "subscribers" / f"{LIST}.csv"
    write_list(path, rows)
    env = environment(None)
    incoming = write_import(folder, rows)

    def start_import() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "newsletter", "subscribers", "import", str(incoming)],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def check(addresses: list[str]) -> int:
        from newsletter import optouts
        from newsletter import subscribers as subs
        from newsletter.config import load_config

        config = load_config(root / "newsletter.toml", env={})
        seen = optouts.view(config, LIST)
        wanted = set(addresses)
        shown = {
            s.email
            for s in subs.page(
                root / "subscribers", LIST, status="unsubscribed", per_page=10**9, withdrawn=seen
            ).subscribers
            if s.email in wanted
        }
        return len(wanted - shown)

    return measure(root, env, rows, start_import, check)


def write_list(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["email", "name", "status", "subscribed_at", "updated_at", "source"])
        for i in range(rows):
            status = "unsubscribed" if i % 50 == 0 else "subscribed"
            out.writerow([address(i), f"Reader {i}", status, "", "", "import"])


# --- PostgreSQL ----------------------------------------------------------------------------


def postgres(folder: Path, rows: int, url: str, workers: int = 1) -> list[str]:
    import psycopg

    from newsletter.store import migrations

    root = workspace(folder, "postgres")
    (root / "subscribers" / "main.csv").unlink()
    with psycopg.connect(url) as conn:
        migrations.migrate(conn)
        conn.execute(LISTS_SQL)
        if conn.execute("SELECT to_regclass('subscriber_lists')").fetchone()[0]:
            conn.execute(
                "INSERT INTO subscriber_lists (name, columns) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (LIST, ["email", "name", "status", "subscribed_at", "updated_at", "source"]),
            )
        with conn.cursor().copy(
            "COPY subscribers (list, key, email, name, status, source, position) FROM STDIN"
        ) as copy:
            for i in range(rows):
                status = "unsubscribed" if i % 50 == 0 else "subscribed"
                copy.write_row((LIST, address(i), address(i), f"Reader {i}", status, "import", i))
        conn.execute("ANALYZE subscribers")
    env = environment(url)
    incoming = write_import(folder, rows)
    real = importlib.util.find_spec("newsletter.store.pg_import") is not None

    def start_import() -> subprocess.Popen:
        command = ["-m", "newsletter", "subscribers", "import", str(incoming)]
        if not real:
            command = [str(Path(__file__)), "--pg-import", url, str(incoming), str(rows)]
        return subprocess.Popen(
            [sys.executable, *command],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def check(addresses: list[str]) -> int:
        with psycopg.connect(url) as conn:
            shown = conn.execute(
                "SELECT count(*) FROM subscribers WHERE list = %s AND key = ANY(%s) "
                "AND status = 'unsubscribed'",
                (LIST, addresses),
            ).fetchone()[0]
        return len(addresses) - shown

    lines = measure(root, env, rows, start_import, check, workers)
    if not real:
        lines.append("(import: the lists component's COPY + INSERT ... ON CONFLICT, run here)")
    return lines


def pg_import(url: str, incoming: Path, base: int) -> None:
    """The PostgreSQL import's shape where this checkout lacks it: COPY into a temporary
    table, one INSERT ... ON CONFLICT, one transaction."""
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TEMP TABLE import_rows (n bigint, key text, email text, name text) "
            "ON COMMIT DROP"
        )
        with incoming.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            next(reader)
            with conn.cursor().copy("COPY import_rows FROM STDIN") as copy:
                for n, (email, name) in enumerate(reader):
                    copy.write_row((n, email.lower(), email, name))
        conn.execute(
            "INSERT INTO subscribers AS x (list, key, email, name, status, source, position) "
            "SELECT %s, key, email, name, 'subscribed', 'import', %s + n FROM import_rows "
            "ORDER BY n ON CONFLICT (list, key) DO UPDATE SET updated_at = x.updated_at "
            "WHERE false",
            (LIST, base),
        )


def run(
    pg=None,
    rows: int = 1_000_000,
    workdir: Path | None = None,
    repo=None,
    workers: int = 1,
    stores: tuple[str, ...] = ("files", "postgres"),
) -> list[str]:
    """The figures of both stores; `workers`: serve processes on PostgreSQL (the files store
    serves from one)."""
    folder = Path(workdir or tempfile.mkdtemp(prefix="bench-unsub-")) / "unsubscribe"
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    own = None
    try:
        if "files" in stores:
            lines += [f"  files ({rows:,} rows):"]
            lines += [f"    {line}" for line in files(folder, rows)]
        if "postgres" in stores:
            if pg is None:
                from pg_server import PgServer

                pg = own = PgServer().start()
            url = pg.fresh_database()
            lines.append(f"  postgres ({rows:,} rows):")
            lines += [f"    {line}" for line in postgres(folder, rows, url, workers)]
    finally:
        if own is not None:
            own.stop()
        if workdir is None:
            shutil.rmtree(folder.parent, ignore_errors=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--workers", type=int, default=1, help="serve processes on PostgreSQL (default 1)"
    )
    parser.add_argument("--store", choices=("files", "postgres"), help="one store only")
    parser.add_argument("--pool-size", type=int, default=0, help="[store] pool_size for serve")
    parser.add_argument("--pg-import", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global POOL_SIZE
    POOL_SIZE = args.pool_size
    if args.pg_import:
        url, incoming, base = args.pg_import
        pg_import(url, Path(incoming), int(base))
        return
    print(f"{CONCURRENT} concurrent one-click unsubscribes while {IMPORTED:,} rows are imported:")
    stores = (args.store,) if args.store else ("files", "postgres")
    for line in run(rows=args.rows, workers=args.workers, stores=stores):
        print(line, flush=True)


if __name__ == "__main__":
    main()
