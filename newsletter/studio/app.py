"""The studio's web app: the page, its JSON API and event stream, for this machine only."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from newsletter.errors import NewsletterError
from newsletter.studio.live import Studio
from newsletter.studio.pages import error_page, framed, state_json
from newsletter.studio.send_test import send_test

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
PAGE = Path(__file__).parent.parent / "templates" / "studio"
STATIC = {"studio.css": "text/css", "studio.js": "text/javascript"}
TOKEN_HEADER = "x-studio-token"


def create_app(studio: Studio):
    """The Starlette app over a Studio, behind the localhost-only guard."""
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
        body = state_json(studio, studio.snapshot)
        part, address, problem = studio.readers.view(request.query_params.get("as"))
        if problem:
            body["as_error"] = problem
        if part is not None:
            body.update(subject=part.subject, text=part.text, html=part.html, to=address)
            body["html_bytes"] = len(part.html.encode())
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    def email(request: Request) -> Response:
        part, _, problem = studio.readers.view(request.query_params.get("as"))
        if part is None:
            html = error_page(problem or "nothing rendered yet")
        else:
            html = framed(part.html, dark=request.query_params.get("dark") == "1")
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    def subscribers(request: Request) -> Response:
        try:
            return JSONResponse(studio.readers.subscribers(request.query_params.get("q", "")))
        except NewsletterError as exc:
            return JSONResponse({"error": str(exc)}, 404)

    async def events(request: Request) -> Response:
        return StreamingResponse(
            studio.events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def send_test_route(request: Request) -> Response:
        if not secrets.compare_digest(request.headers.get(TOKEN_HEADER, ""), studio.token):
            return JSONResponse({"ok": False, "message": "missing or wrong studio token"}, 403)
        origin = request.headers.get("origin")
        if origin and not is_local(urlsplit(origin).netloc):
            return JSONResponse(
                {"ok": False, "message": f"cross-origin request from {origin}"}, 403
            )
        try:
            payload = await request.json()
        except ValueError:
            payload = {}
        as_email = (payload.get("as") if isinstance(payload, dict) else None) or None
        try:
            message = await asyncio.to_thread(send_test, studio.config, studio.issue_path, as_email)
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
            Route("/api/send-test", send_test_route, methods=["POST"]),
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
            if not is_local(host):
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


def is_local(netloc: str) -> bool:
    """Whether a Host or Origin netloc names this machine."""
    host = netloc.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host
    else:
        host = host.rpartition(":")[0] if host.count(":") == 1 else host
    return host in LOCAL_HOSTS
