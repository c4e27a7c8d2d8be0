"""Running the studio: a socket on 127.0.0.1, uvicorn, and the URL once it answers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from newsletter.config import Config
from newsletter.errors import ExitCode, NewsletterError
from newsletter.studio.app import create_app
from newsletter.studio.live import Studio

DEFAULT_PORT = 8001


class StudioError(NewsletterError):
    """The studio cannot start: the port is taken or cannot be bound."""

    exit_code = ExitCode.CONFIG


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
    """A uvicorn server for the studio's app (run it with sockets=[sock])."""
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
