"""`newsletter preview ISSUE --serve`: the issue in desktop and phone frames, live as files change.

One Studio keeps the issue rendered with a warm Renderer. watchfiles reports a change to
the issue, a template or newsletter.toml; the Studio renders again (a render error becomes
part of the page, not a crash) and tells every open page through Server-Sent Events.

Only this machine can use it: the socket is bound to 127.0.0.1, a request whose Host is
not localhost is refused (DNS rebinding), and the one request that does something (send
test) needs the page's per-session token and, when the browser sends one, a local Origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from newsletter.checks import SAMPLE_RECIPIENT, CheckedIssue, Problem, check_issue, compat, spam
from newsletter.config import Config, load_config
from newsletter.errors import ConfigError, ExitCode, NewsletterError
from newsletter.message import Campaign
from newsletter.render import BUILTIN_TEMPLATES, Personalized, Renderer
from newsletter.tokens import load_secret

DEFAULT_PORT = 8001
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
PAGE = Path(__file__).parent.parent / "templates" / "studio"
STATIC = {"studio.css": "text/css", "studio.js": "text/javascript"}
TOKEN_HEADER = "x-studio-token"
KEEPALIVE = 15.0  # seconds between SSE comments, so proxies and browsers keep the stream
_DARK_QUERY = re.compile(r"\(\s*prefers-color-scheme\s*:\s*(dark|light)\s*\)", re.I)


class StudioError(NewsletterError):
    """The studio cannot start: the port is taken or cannot be bound."""

    exit_code = ExitCode.CONFIG


@dataclass
class Snapshot:
    """One render of the issue, or the error that stopped it (with the last good render)."""

    version: int
    checked: CheckedIssue | None
    error: str | None = None
    problems: list[Problem] = field(default_factory=list)
    compat: list[compat.FeatureReport] = field(default_factory=list)
    spam: dict = field(default_factory=lambda: {"state": "none"})
    render_ms: float = 0.0


class Studio:
    """The issue kept rendered; re-rendered on change; pages notified."""

    def __init__(self, config: Config, issue_path: Path, as_email: str | None = None) -> None:
        self.config = config
        self.issue_path = issue_path
        self.default_as = as_email
        self.renderer = Renderer(config)
        self.secret = load_secret(config.state_dir)
        self.token = secrets.token_urlsafe(24)
        self.spamassassin = spam.find_spamassassin()
        self.snapshot = Snapshot(0, None, "not rendered yet")
        self._listeners: set[asyncio.Queue] = set()
        self._render_lock = asyncio.Lock()
        self._spam_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._recipients: dict[str, tuple[dict[str, str], str]] = {}
        self._config_stale = False
        self._stop = asyncio.Event()

    # Rendering ------------------------------------------------------------------------

    def render_now(self, reload_config: bool = False) -> Snapshot:
        """Render and check the issue (blocking, ~10-30 ms warm); errors become the snapshot."""
        started = time.perf_counter()
        version = self.snapshot.version + 1
        last_good = self.snapshot.checked
        self._config_stale |= reload_config and self.config.path is not None
        try:
            if self._config_stale:
                self.config = load_config(self.config.path)
                self.renderer = Renderer(self.config)
                self._config_stale = False
            checked = check_issue(
                self.config, self.issue_path, self.renderer, None, None, self.secret
            )
            reports = compat.report(checked.sample.html)
            problems = [
                *checked.problems,
                *compat.check_compat(checked.sample.html, reports=reports),
            ]
            snapshot = Snapshot(version, checked, None, problems, reports)
            snapshot.spam = (
                {"state": "scoring"}
                if self.spamassassin
                else {"state": "absent", "message": spam.unavailable()}
            )
        except NewsletterError as exc:
            snapshot = Snapshot(version, last_good, str(exc))
            snapshot.problems = self.snapshot.problems
            snapshot.compat = self.snapshot.compat
            snapshot.spam = self.snapshot.spam
        snapshot.render_ms = (time.perf_counter() - started) * 1000
        self.snapshot = snapshot
        self._recipients.clear()  # the list may have changed along with the rest
        return snapshot

    async def refresh(self, reload_config: bool = False) -> None:
        async with self._render_lock:
            snapshot = await asyncio.to_thread(self.render_now, reload_config)
        self._notify()
        if snapshot.error is None and self.spamassassin:
            self._spawn(self._score_spam(snapshot))

    def sample_eml(self, checked: CheckedIssue) -> bytes:
        campaign = Campaign(self.config, checked.rendered, self._list_name(checked), self.secret)
        email = SAMPLE_RECIPIENT["email"]
        return campaign.message(email, email, dict(SAMPLE_RECIPIENT)).as_bytes()

    async def _score_spam(self, snapshot: Snapshot) -> None:
        async with self._spam_lock:  # one spamassassin at a time; stale renders are skipped
            if snapshot is not self.snapshot or snapshot.checked is None:
                return
            try:
                eml = self.sample_eml(snapshot.checked)
                report = await asyncio.to_thread(spam.score, eml, self.spamassassin)
            except (spam.SpamAssassinError, NewsletterError) as exc:
                snapshot.spam = {"state": "failed", "message": str(exc)}
            else:
                snapshot.spam = {
                    "state": "done",
                    "score": report.score,
                    "required": report.required,
                    "rules": [
                        {"name": r.name, "score": r.score, "description": r.description}
                        for r in report.rules
                    ],
                }
                snapshot.problems = [*snapshot.problems, *spam.spam_problems(report)]
            if snapshot is self.snapshot:
                self._notify()

    def _list_name(self, checked: CheckedIssue) -> str:
        return checked.issue.list or self.config.list

    # Per-recipient views -------------------------------------------------------------

    def personalized(self, as_email: str | None) -> tuple[Personalized, str]:
        """What one subscriber (or the sample reader) gets: (parts, their address)."""
        checked = self.snapshot.checked
        if checked is None:
            raise NewsletterError(self.snapshot.error or "nothing rendered yet")
        if not as_email:
            return checked.sample, SAMPLE_RECIPIENT["email"]
        from newsletter.preview import find_recipient

        list_name = self._list_name(checked)
        key = as_email.strip().lower()
        found = self._recipients.get(key)
        if found is None:
            found = self._recipients[key] = find_recipient(self.config, list_name, as_email)
        fields, _ = found
        campaign = Campaign(self.config, checked.rendered, list_name, self.secret)
        url, mailto = campaign.unsubscribe_links(fields["email"].lower())
        return checked.rendered.personalize(fields, url or mailto), fields["email"]

    def view(self, as_email: str | None) -> tuple[Personalized | None, str | None, str | None]:
        """(parts, address, problem): an unknown subscriber falls back to the sample reader."""
        try:
            part, address = self.personalized(as_email or self.default_as)
            return part, address, None
        except NewsletterError as exc:
            checked = self.snapshot.checked
            if checked is None:
                return None, None, str(exc)
            return checked.sample, SAMPLE_RECIPIENT["email"], str(exc)

    def subscribers(self, query: str, limit: int = 50) -> list[dict[str, str]]:
        """Subscribed members of the issue's list whose address or name contains the query."""
        from newsletter.subscribers import iter_subscribers, list_path

        checked = self.snapshot.checked
        list_name = self._list_name(checked) if checked else self.config.list
        wanted = query.strip().lower()
        found = []
        for subscriber in iter_subscribers(list_path(self.config.subscribers_dir, list_name)):
            if subscriber.status != "subscribed":
                continue
            if wanted in subscriber.email.lower() or wanted in subscriber.name.lower():
                found.append({"email": subscriber.email, "name": subscriber.name})
                if len(found) >= limit:
                    break
        return found

    def send_test(self, as_email: str | None) -> str:
        """A [TEST] copy to [send] test_to through the configured provider; what happened."""
        from newsletter import send as engine
        from newsletter.providers import make_provider

        config = self.config
        test_to = list(config.send.test_to)
        if not test_to:
            raise ConfigError(
                'no test addresses: set [send] test_to = ["you@example.org"] in newsletter.toml'
            )
        prepared = engine.prepare(config, self.issue_path, test_to=test_to, as_email=as_email)
        provider = prepared.provider
        settings = engine.settings_for(config, provider)
        make_provider(provider, config).close()  # settings and secrets, before building
        with engine.open_ledger(config, prepared) as ledger:
            summary = engine.run(
                prepared, ledger, lambda: make_provider(provider, config), settings
            )
        if summary.sent == len(test_to):
            return f"Sent a test to {', '.join(test_to)} via {provider}"
        failures = "; ".join(f"{email}: {reason}" for email, reason in summary.failures)
        return f"Sent {summary.sent} of {len(test_to)} test(s) via {provider}" + (
            f"; failed: {failures}" if failures else ""
        )

    # Change notification ------------------------------------------------------------

    def _notify(self) -> None:
        for queue in list(self._listeners):
            queue.put_nowait(self.snapshot.version)

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def events(self) -> AsyncIterator[str]:
        """Server-Sent Events: the version now, then each new one; a comment as keep-alive."""
        queue: asyncio.Queue = asyncio.Queue()
        self._listeners.add(queue)
        try:
            yield f"retry: 500\nevent: version\ndata: {self.snapshot.version}\n\n"
            while not self._stop.is_set():
                try:
                    version = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: version\ndata: {version}\n\n"
        finally:
            self._listeners.discard(queue)

    def watched(self) -> tuple[list[Path], list[Path]]:
        """(folders watched alone, folders watched with their subfolders)."""
        flat = {self.issue_path.resolve().parent}
        if self.config.path is not None:
            flat.add(self.config.path.resolve().parent)
        deep = {p.resolve() for p in (self.config.templates_dir, BUILTIN_TEMPLATES) if p.is_dir()}
        return sorted(flat), sorted(deep - flat)

    def _relevant(self, path: str) -> str | None:
        """'config' or 'content' when a change to this path matters, else None."""
        changed = Path(path).resolve()
        if self.config.path is not None and changed == self.config.path.resolve():
            return "config"
        if changed == self.issue_path.resolve():
            return "content"
        if changed.suffix == ".j2":
            return "content"
        return None

    async def watch(self) -> None:
        """Re-render on every relevant change until the studio stops."""
        import watchfiles

        flat, deep = self.watched()
        watchers = [
            watchfiles.awatch(*paths, recursive=recursive, stop_event=self._stop, step=30)
            for paths, recursive in ((flat, False), (deep, True))
            if paths
        ]
        await asyncio.gather(*(self._follow(w) for w in watchers))

    async def _follow(self, watcher) -> None:
        async for changes in watcher:
            kinds = {self._relevant(path) for _, path in changes} - {None}
            if kinds:
                await self.refresh(reload_config="config" in kinds)

    @contextlib.asynccontextmanager
    async def running(self, _app=None) -> AsyncIterator[None]:
        """Starlette lifespan: first render, then the watcher, until shutdown."""
        self._stop = asyncio.Event()
        self._render_lock, self._spam_lock = asyncio.Lock(), asyncio.Lock()
        await self.refresh()
        self._spawn(self.watch())
        try:
            yield
        finally:
            self._stop.set()
            for task in list(self._tasks):
                task.cancel()


# The web app --------------------------------------------------------------------------


def create_app(studio: Studio):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    def page(request: Request) -> Response:
        html = (PAGE / "studio.html").read_text(encoding="utf-8")
        html = html.replace("{{ token }}", studio.token)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found", 404)
        return Response((PAGE / name).read_bytes(), media_type=STATIC[name])

    def state(request: Request) -> Response:
        body = _state_json(studio, studio.snapshot)
        part, address, problem = studio.view(request.query_params.get("as"))
        if problem:
            body["as_error"] = problem
        if part is not None:
            body.update(subject=part.subject, text=part.text, html=part.html, to=address)
            body["html_bytes"] = len(part.html.encode())
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def email(request: Request) -> Response:
        part, _, problem = studio.view(request.query_params.get("as"))
        if part is None:
            html = _error_page(problem or "nothing rendered yet")
        else:
            html = framed(part.html, dark=request.query_params.get("dark") == "1")
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    def subscribers(request: Request) -> Response:
        try:
            return JSONResponse(studio.subscribers(request.query_params.get("q", "")))
        except NewsletterError as exc:
            return JSONResponse({"error": str(exc)}, 404)

    async def events(request: Request) -> Response:
        return StreamingResponse(
            studio.events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def send_test(request: Request) -> Response:
        if not secrets.compare_digest(request.headers.get(TOKEN_HEADER, ""), studio.token):
            return JSONResponse({"ok": False, "message": "missing or wrong studio token"}, 403)
        origin = request.headers.get("origin")
        if origin and not _local(urlsplit(origin).netloc):
            return JSONResponse(
                {"ok": False, "message": f"cross-origin request from {origin}"}, 403
            )
        try:
            payload = await request.json()
        except ValueError:
            payload = {}
        as_email = (payload.get("as") if isinstance(payload, dict) else None) or None
        try:
            message = await asyncio.to_thread(studio.send_test, as_email)
        except NewsletterError as exc:
            return JSONResponse({"ok": False, "message": str(exc)}, 400)
        return JSONResponse({"ok": True, "message": message})

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/static/{name}", static),
            Route("/api/state", state),
            Route("/api/subscribers", subscribers),
            Route("/api/events", events),
            Route("/api/send-test", send_test, methods=["POST"]),
            Route("/email", email),
        ],
        lifespan=studio.running,
    )
    return LocalOnly(app)


class LocalOnly:
    """ASGI middleware: refuse any request whose Host header is not this machine."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            host = headers.get(b"host", b"").decode("latin-1")
            if not _local(host):
                body = f"Refused: this preview answers only to localhost, not {host!r}\n".encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _local(netloc: str) -> bool:
    host = netloc.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    else:
        host = host.rpartition(":")[0] if host.count(":") == 1 else host
    return host in LOCAL_HOSTS


def framed(html: str, dark: bool = False) -> str:
    """The email as a frame shows it: links open a new tab; `dark` applies its dark-mode CSS."""
    if dark:
        # As a client that honours prefers-color-scheme (Apple Mail) shows it in dark mode.
        html = _DARK_QUERY.sub(
            lambda m: "(min-width: 0px)" if m.group(1).lower() == "dark" else "(max-width: 0px)",
            html,
        )
        html = html.replace("<head>", '<head><meta name="color-scheme" content="dark">', 1)
    return html.replace("<head>", '<head><base target="_blank">', 1)


def _error_page(message: str) -> str:
    from html import escape

    return (
        '<!doctype html><meta charset="utf-8"><body style="font:15px system-ui;padding:24px;'
        f'color:#8a1c1c;background:#fff5f5"><strong>Render error</strong><pre '
        f'style="white-space:pre-wrap">{escape(message)}</pre>'
    )


def _state_json(studio: Studio, snapshot: Snapshot) -> dict:
    checked = snapshot.checked
    data = compat.load_data()
    return {
        "version": snapshot.version,
        "error": snapshot.error,
        "issue": str(studio.issue_path),
        "preheader": checked.rendered.preheader if checked else None,
        "render_ms": round(snapshot.render_ms, 1),
        "test_to": list(studio.config.send.test_to),
        "provider": studio.config.send.provider,
        "problems": [
            {"code": p.code, "severity": p.severity, "where": p.where, "message": p.message}
            for p in snapshot.problems
        ],
        "spam": snapshot.spam,
        "compat": [
            {
                "title": r.feature.title,
                "url": r.feature.url,
                "example": r.example,
                "enhancement": r.enhancement,
                "warns": r.warns,
                "unsupported": [
                    data.client_name(f, p) for f, p in compat.grouped(r.unsupported).items()
                ],
                "partial": _partial(data, r.partial),
            }
            for r in snapshot.compat
        ],
    }


def _partial(data: compat.SupportData, partial: list[tuple[str, str, str]]) -> list[dict]:
    """Partial support grouped: one entry per client family and note."""
    groups: dict[tuple[str, str], list[str]] = {}
    for family, platform, notes in partial:
        groups.setdefault((family, notes), []).append(platform)
    return [
        {"client": data.client_name(family, platforms), "notes": notes}
        for (family, notes), platforms in groups.items()
    ]


# Running ------------------------------------------------------------------------------


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1 (port 0: any free one); StudioError when taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise StudioError(
            f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); pass --port with a free port"
        ) from None
    sock.listen(64)
    return sock


def make_server(studio: Studio, sock: socket.socket):
    import uvicorn

    config = uvicorn.Config(
        create_app(studio),
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config)


def serve(
    config: Config,
    issue_path: Path,
    *,
    port: int = DEFAULT_PORT,
    as_email: str | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the studio until Ctrl-C; on_ready gets its URL once it answers."""
    studio = Studio(config, issue_path, as_email)
    sock = bind(port)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server = make_server(studio, sock)
    if on_ready is not None:
        threading.Thread(target=_when_started, args=(server, on_ready, url), daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])


def _when_started(server, on_ready: Callable[[str], None], url: str) -> None:
    for _ in range(600):
        if server.started:
            on_ready(url)
            return
        time.sleep(0.05)
