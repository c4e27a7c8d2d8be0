"""`newsletter preview ISSUE --serve`: the issue in desktop and phone frames, live as files change.

One Studio (live.py) keeps the issue rendered with a warm Renderer. watchfiles reports a
change to the issue, a template or newsletter.toml; the Studio renders again (a render
error becomes part of the page, not a crash) and tells every open page through
Server-Sent Events. readers.py shows the issue as one subscriber gets it; app.py and
pages.py answer the page; server.py runs it; send_test.py is the "Send test" button.

Only this machine can use it: the socket is bound to 127.0.0.1, a request whose Host is
not localhost is refused (DNS rebinding), and the one request that does something (send
test) needs the page's per-session token and, when the browser sends one, a local Origin.
"""

from __future__ import annotations

from newsletter.studio.app import create_app
from newsletter.studio.live import Snapshot, Studio
from newsletter.studio.pages import framed
from newsletter.studio.server import DEFAULT_PORT, StudioError, bind, make_server, serve

__all__ = [
    "DEFAULT_PORT",
    "Snapshot",
    "Studio",
    "StudioError",
    "bind",
    "create_app",
    "framed",
    "make_server",
    "serve",
]
