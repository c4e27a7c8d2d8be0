"""The studio's live state: the issue kept rendered and checked, re-rendered on change, pages told."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.checks import Problem, compat, run_checks, spam
from newsletter.config import Config, load_config
from newsletter.errors import NewsletterError
from newsletter.render import BUILTIN_TEMPLATES, Renderer
from newsletter.sample import CheckedIssue, check_issue
from newsletter.studio.readers import Readers
from newsletter.tokens import load_secret

KEEPALIVE = 15.0  # seconds between SSE comments, so proxies and browsers keep the stream


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
    config: Config | None = None  # the config this render used, for checking it again


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
        self.readers = Readers(self)
        self._listeners: set[asyncio.Queue] = set()
        self._render_lock = asyncio.Lock()
        self._spam_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._config_stale = False
        self._stop = asyncio.Event()

    def list_name(self, checked: CheckedIssue | None) -> str:
        """The list a render of the issue goes to (the config's when nothing rendered)."""
        return (checked.issue.list if checked else None) or self.config.list

    # Rendering ------------------------------------------------------------------------

    def render_now(self, reload_config: bool = False) -> Snapshot:
        """Render and check the issue (blocking, ~10-30 ms warm); errors become the snapshot."""
        from newsletter.issue import load_issue

        started = time.perf_counter()
        version = self.snapshot.version + 1
        last_good = self.snapshot.checked
        self._config_stale |= reload_config and self.config.path is not None
        try:
            if self._config_stale:
                self.config = load_config(self.config.path)
                self.renderer = Renderer(self.config)
                self._config_stale = False
            issue = load_issue(self.issue_path)
            checked = check_issue(self.config, issue, renderer=self.renderer, secret=self.secret)
            snapshot = Snapshot(version, checked, None, checked.problems, checked.compat)
            snapshot.config = self.config
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
        self.readers.clear()  # the list may have changed along with the rest
        return snapshot

    async def refresh(self, reload_config: bool = False) -> None:
        async with self._render_lock:
            snapshot = await asyncio.to_thread(self.render_now, reload_config)
        self._notify()
        if snapshot.error is None and self.spamassassin:
            self._spawn(self._score_spam(snapshot))

    async def _score_spam(self, snapshot: Snapshot) -> None:
        async with self._spam_lock:  # one spamassassin at a time; stale renders are skipped
            if snapshot is not self.snapshot or snapshot.checked is None:
                return
            try:
                report, problems = await asyncio.to_thread(self._checked_with_spam, snapshot)
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
                snapshot.problems = problems
            if snapshot is self.snapshot:
                self._notify()

    def _checked_with_spam(self, snapshot: Snapshot) -> tuple[spam.SpamReport, list[Problem]]:
        """The spam score of the sample message, and every check again with it counted."""
        checked = snapshot.checked
        report = spam.score(checked.sample.eml, self.spamassassin)
        problems = run_checks(
            snapshot.config or self.config,
            checked.rendered,
            checked.sample,
            compat_reports=snapshot.compat,
            spam_report=report,
        )
        return report, problems

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
