"""Every link and image of the final HTML, requested (HEAD, then GET) to find the broken ones."""

from __future__ import annotations

import concurrent.futures
import http.client
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from newsletter.checks.model import WARNING, Problem

TIMEOUT = 5.0
WORKERS = 8
TIMED_OUT = "timed out"
USER_AGENT = "Mozilla/5.0 (compatible; newsletter-linkcheck/1.0)"
# Servers that refuse HEAD (or bots) answer these; GET tells what a reader would get.
RETRY_WITH_GET = {400, 403, 404, 405, 406, 429, 500, 501, 503}


@dataclass(frozen=True)
class LinkResult:
    url: str
    status: int | None  # the final HTTP status, None when no answer came
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 400


def collect_links(html: str, skip: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """http(s) URLs of every <a href> and <img src>, each once, in order of appearance."""
    import lxml.html

    try:
        doc = lxml.html.document_fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return []
    seen: dict[str, None] = {}
    for element, attribute in [(a, "href") for a in doc.iter("a")] + [
        (img, "src") for img in doc.iter("img")
    ]:
        url = (element.get(attribute) or "").strip()
        if url.lower().startswith(("http://", "https://")) and url not in skip:
            seen.setdefault(url, None)
    return list(seen)


def check_links(
    urls: list[str], timeout: float = TIMEOUT, workers: int = WORKERS
) -> list[LinkResult]:
    """Request each URL with at most `workers` in flight; results in the order given."""
    if not urls:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(workers, len(urls))) as pool:
        return list(pool.map(lambda url: check_link(url, timeout), urls))


def check_link(url: str, timeout: float = TIMEOUT) -> LinkResult:
    """HEAD (redirects followed), then GET when HEAD is refused or fails."""
    result = _request(url, "HEAD", timeout)
    if result.ok or (result.status is not None and result.status not in RETRY_WITH_GET):
        return result
    if result.error in (TIMED_OUT, _waited(timeout)):
        return result  # a server that does not answer HEAD in time will not answer GET either
    return _request(url, "GET", timeout)


def _waited(timeout: float) -> str:
    return f"no answer within {timeout:g} s"


def _request(url: str, method: str, timeout: float) -> LinkResult:
    request = urllib.request.Request(url, method=method, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if method == "GET":
                response.read(1024)  # the status line alone can precede a failure
            return LinkResult(url, response.status)
    except urllib.error.HTTPError as exc:
        return LinkResult(url, exc.code, exc.reason if isinstance(exc.reason, str) else "")
    except urllib.error.URLError as exc:
        return LinkResult(url, None, _reason(exc.reason))
    except TimeoutError:
        return LinkResult(url, None, _waited(timeout))
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return LinkResult(url, None, _reason(exc))


def _reason(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return TIMED_OUT
    if isinstance(reason, socket.gaierror):
        return "host not found"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    return str(reason) or type(reason).__name__


def check_html(
    html: str, skip: set[str] | frozenset[str] = frozenset(), issue_path: Path | None = None
) -> tuple[int, list[Problem]]:
    """(links checked, a warning per broken one) for the final HTML."""
    urls = collect_links(html, skip)
    return len(urls), link_problems(check_links(urls), issue_path)


def link_problems(results: list[LinkResult], issue_path: Path | None = None) -> list[Problem]:
    """A `broken-link` warning per link that failed, placed at its line in the issue file."""
    lines = _lines(issue_path)
    problems = []
    for result in results:
        if result.ok:
            continue
        what = f"HTTP {result.status}" if result.status is not None else result.error
        if result.status is not None and result.error:
            what += f" {result.error}"
        problems.append(
            Problem(
                "broken-link",
                WARNING,
                _where(result.url, issue_path, lines),
                f"{result.url}: {what}",
            )
        )
    return problems


def _lines(path: Path | None) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").split("\n") if path else []
    except OSError:
        return []


def _where(url: str, path: Path | None, lines: list[str]) -> str:
    for number, line in enumerate(lines, 1):
        if url in line:
            return f"{path}:{number}"
    return "email.html"
