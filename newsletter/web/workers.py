"""`newsletter serve --workers N`: N uvicorn worker processes answering on one port.

Only on the PostgreSQL store, where every process already shares everything through the
database (as several instances behind a proxy do). On the files store each process would keep
its own subscribe rate limits and Mailgun replay guard in memory, so N processes would let N
times the limit through and a replayed webhook in: refused there.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from newsletter.config import Config, load_config
from newsletter.errors import ConfigError
from newsletter.store import uses_postgres
from newsletter.web.oneclick import OneClick

CONFIG_PATH = "NEWSLETTER_SERVE_WORKER_CONFIG"  # the workspace file, for each worker's app


def check(config: Config, workers: int) -> None:
    """ConfigError unless `workers` processes can serve this workspace safely."""
    if workers > 1 and not uses_postgres(config):
        raise ConfigError(
            f"--workers {workers}: several serve processes need the PostgreSQL store ([store] "
            "url): on the files store each would keep its own rate limits and webhook replay "
            "guard; run one process (--workers 1)"
        )
    if workers > 1 and config.path is None:
        raise ConfigError(f"--workers {workers}: the workspace has no newsletter.toml to load")


def app() -> OneClick:
    """uvicorn's app factory, in each worker process: the workspace's app, as `run` makes it."""
    from newsletter.web.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    return create_app(load_config(Path(os.environ[CONFIG_PATH])))


def run(config: Config, host: str, port: int, workers: int) -> None:
    """Serve with `workers` processes until interrupted (check() first)."""
    import uvicorn

    from newsletter.store.open import open_checked
    from newsletter.web import app as web_app

    check(config, workers)
    web_app.check(config)
    open_checked(config).close()  # a wrong URL or an old schema: said once, before forking
    os.environ[CONFIG_PATH] = str(Path(config.path).resolve())
    settings = web_app.uvicorn_settings(config, host, port)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    logging.getLogger("newsletter.serve").info(
        "serving %s on http://%s:%d with %d worker processes", config.name, host, port, workers
    )
    uvicorn.run(f"{__name__}:app", factory=True, workers=workers, **settings)
