"""`newsletter serve` over real HTTP on loopback: unsubscribe, subscribe, confirm, archive."""

from __future__ import annotations

import concurrent.futures
import csv
import email
import email.policy
import re
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from conftest import free_port
from typer.testing import CliRunner

from newsletter import optouts
from newsletter import subscribers as subs
from newsletter.cli import app as cli_app
from newsletter.config import Config, load_config
from newsletter.tokens import load_secret, make_expiring_token, make_token
from newsletter.web.app import create_app, uvicorn_config
from newsletter.web.events import EventStore

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


class LiveServer:
    """The application under uvicorn in a thread, on a free loopback port."""

    def __init__(self, config: Config, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.app = create_app(config, env)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The address a browser uses when base_url's host is mapped to loopback.
        public = urlsplit(config.base_url).hostname if config.base_url else "127.0.0.1"
        self.public_url = f"http://{public}:{self.port}"
        settings = uvicorn_config(config, "127.0.0.1", self.port, app=self.app)
        settings.log_level = "warning"
        self.server = uvicorn.Server(settings)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def client(self, **kwargs) -> httpx.Client:
        """A client that calls the service by its public name (base_url's host), as a proxy would."""
        headers = {"Host": urlsplit(self.config.base_url).netloc} if self.config.base_url else {}
        headers.update(kwargs.pop("headers", {}))
        return httpx.Client(
            base_url=self.url, follow_redirects=False, timeout=30, headers=headers, **kwargs
        )

    def local(self, url: str) -> str:
        """A link from a message (https://news.example.org/...) as a path on this server."""
        parts = urlsplit(url)
        return parts.path + (f"?{parts.query}" if parts.query else "")


def configure(root: Path, serve: str = "") -> Config:
    """Append a [serve] section to the workspace's newsletter.toml and load it."""
    path = root / "newsletter.toml"
    if serve:
        path.write_text(path.read_text() + "\n[serve]\n" + serve + "\n")
    return load_config(path, env={})


@pytest.fixture
def live(workspace: Path):
    with LiveServer(configure(workspace)) as server:
        yield server


def statuses(root: Path, list_name: str = "main") -> dict[str, str]:
    """Each row's status as `subscribers list` shows it: the file, seen through the opt-outs
    `serve` keeps in the journal until a command writes the list."""
    config = load_config(root / "newsletter.toml", env={})
    seen = optouts.view(config, list_name)
    found = subs.page(root / "subscribers", list_name, per_page=10**9, withdrawn=seen)
    return {row.email: row.status for row in found.subscribers}


def file_statuses(root: Path, list_name: str = "main") -> dict[str, str]:
    """Each row's status as the list file says (what serve must not rewrite)."""
    path = subs.list_path(root / "subscribers", list_name)
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["email"]: row["status"] for row in csv.DictReader(handle)}


def send_issue(
    root: Path, issue: str = "issues/sample.md"
) -> dict[str, email.message.EmailMessage]:
    """`newsletter send ISSUE --yes` to the outbox; the messages by recipient."""
    result = CliRunner().invoke(cli_app, ["send", issue, "--yes"])
    assert result.exit_code == 0, result.output
    messages = {}
    for path in (root / "outbox").glob("*/*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        messages[str(message["To"].addresses[0].addr_spec)] = message
    return messages


def unsubscribe_url(message) -> str:
    header = " ".join(str(message["List-Unsubscribe"]).split())
    return re.search(r"<(https?://[^>]+)>", header).group(1)


def form_token(html: str) -> tuple[str, str]:
    """(action, csrf value) of the first form on a page."""
    action = re.search(r'<form method="post" action="([^"]+)"', html).group(1)
    token = re.search(r'name="csrf" value="([^"]+)"', html).group(1)
    return action, token


# --- one-click unsubscribe ------------------------------------------------------------------


def test_one_click_post_from_a_sent_message_unsubscribes_at_once(live, workspace):
    messages = send_issue(workspace)
    ada = messages["ada@example.org"]
    assert ada["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with live.client() as client:
        # Exactly what a mailbox provider sends: a form-encoded POST, no cookie, no CSRF token.
        response = client.post(live.local(unsubscribe_url(ada)), data=ONE_CLICK)
    assert response.status_code == 200
    assert "ada@example.org" not in response.text
    # The answer comes first; the list row changes right after it.
    wait_for(lambda: statuses(workspace)["ada@example.org"] == "unsubscribed")
    assert statuses(workspace)["grace@example.net"] == "subscribed"
    [event] = EventStore.for_workspace(workspace / ".newsletter").for_email("ada@example.org")
    assert (event.source, event.event, event.payload) == (
        "web",
        "unsubscribe",
        {"via": "one-click"},
    )


def test_one_click_post_as_multipart_is_accepted_too(live, workspace):
    grace = send_issue(workspace)["grace@example.net"]
    with live.client() as client:
        response = client.post(
            live.local(unsubscribe_url(grace)), files={"List-Unsubscribe": (None, "One-Click")}
        )
    assert response.status_code == 200
    wait_for(lambda: statuses(workspace)["grace@example.net"] == "unsubscribed")


def test_one_click_post_without_a_content_type_is_accepted(live, workspace):
    secret = load_secret(workspace / ".newsletter", env={})
    path = f"/unsubscribe/{make_token(secret, 'main', 'ada@example.org')}"
    with live.client() as client:
        response = client.post(path, content=b"List-Unsubscribe=One-Click")
    assert response.status_code == 200
    wait_for(lambda: statuses(workspace)["ada@example.org"] == "unsubscribed")


def test_get_shows_a_button_and_changes_nothing(live, workspace):
    ada = send_issue(workspace)["ada@example.org"]
    before = (workspace / "subscribers" / "main.csv").read_bytes()
    with live.client() as client:
        for _ in range(3):  # a link scanner may fetch it several times
            page = client.get(live.local(unsubscribe_url(ada)))
            assert page.status_code == 200
        head = client.head(live.local(unsubscribe_url(ada)))
    assert head.status_code in (200, 405)
    assert "<button" in page.text and "Unsubscribe" in page.text
    assert "ada@example.org" not in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert (workspace / "subscribers" / "main.csv").read_bytes() == before


def test_the_page_button_unsubscribes_and_resubscribe_undoes_it(live, workspace):
    ada = send_issue(workspace)["ada@example.org"]
    path = live.local(unsubscribe_url(ada))
    with live.client() as client:
        action, token = form_token(client.get(path).text)
        assert action == path
        done = client.post(action, data={"csrf": token})
        assert done.status_code == 200 and "You are unsubscribed" in done.text
        wait_for(lambda: statuses(workspace)["ada@example.org"] == "unsubscribed")
        action, token = form_token(done.text)
        assert action.startswith("/resubscribe/")
        back = client.post(action, data={"csrf": token})
    assert back.status_code == 200 and "Welcome back" in back.text
    assert statuses(workspace)["ada@example.org"] == "subscribed"


def test_page_form_without_its_csrf_token_changes_nothing(live, workspace):
    ada = send_issue(workspace)["ada@example.org"]
    path = live.local(unsubscribe_url(ada))
    with live.client() as client:
        _, token = form_token(client.get(path).text)
    with live.client() as stranger:  # another browser: no cookie, a token that is not its own
        refused = stranger.post(path, data={"csrf": token})
        stranger.cookies.set("nl_csrf", "y" * 32)
        forged = stranger.post(path, data={"csrf": "x" * 24})
    assert refused.status_code == forged.status_code == 400
    assert "press the button again" in refused.text
    assert statuses(workspace)["ada@example.org"] == "subscribed"


def test_forged_truncated_and_unknown_tokens_get_the_same_neutral_page(live, workspace):
    secret = load_secret(workspace / ".newsletter", env={})
    good = make_token(secret, "main", "ada@example.org")
    flipped = good[:-1] + ("A" if good[-1] != "A" else "B")
    bad = [
        flipped,
        good[:-3],
        good.rsplit(".", 1)[0],
        good.replace("main.", "other.", 1),
        make_token(b"another secret" * 3, "main", "ada@example.org"),
        make_token(secret, "main", "nobody@example.org"),  # genuine, but not on the list
        make_token(secret, "nolist", "ada@example.org"),
        "....",
    ]
    before = (workspace / "subscribers" / "main.csv").read_bytes()
    with live.client() as client:
        answers = [client.get(f"/unsubscribe/{t}") for t in bad]
        answers += [client.post(f"/unsubscribe/{t}", data=ONE_CLICK) for t in bad]
    assert {a.status_code for a in answers} == {404}
    assert len({a.text for a in answers}) == 1
    assert "This link is not valid" in answers[0].text
    assert (workspace / "subscribers" / "main.csv").read_bytes() == before


def test_two_hundred_unsubscribes_at_once_during_an_import_are_all_kept(workspace):
    folder = workspace / "subscribers"
    people = [f"reader{i:03d}@example.org" for i in range(200)]
    with (folder / "main.csv").open("a", encoding="utf-8") as handle:
        for address in people:
            handle.write(f"{address},,subscribed,,,import,\n")
    newcomers = folder / "newcomers.csv"
    newcomers.write_text(
        "email\n" + "".join(f"new{i:03d}@example.net\n" for i in range(300)), encoding="utf-8"
    )
    secret = load_secret(workspace / ".newsletter", env={})
    paths = [f"/unsubscribe/{make_token(secret, 'main', a)}" for a in people]
    with LiveServer(configure(workspace)) as live:
        # An import (and single additions) rewriting the same file while the POSTs arrive.
        def importing():
            subs.import_file(folder, "main", newcomers)
            for i in range(20):
                subs.add_subscriber(folder, "main", f"late{i}@example.com")

        with (
            live.client(limits=httpx.Limits(max_connections=200)) as client,
            concurrent.futures.ThreadPoolExecutor(max_workers=201) as pool,
        ):
            importer = pool.submit(importing)
            answers = list(pool.map(lambda p: client.post(p, data=ONE_CLICK), paths))
            importer.result()
    assert [a.status_code for a in answers] == [200] * 200
    final = statuses(workspace)
    assert all(final[a] == "unsubscribed" for a in people)
    assert sum(1 for a in final if a.startswith("new")) == 300
    assert sum(1 for a in final if a.startswith("late")) == 20
    assert final["ada@example.org"] == "subscribed"


# --- subscribe and confirm ------------------------------------------------------------------


def confirmations(root: Path) -> list[email.message.EmailMessage]:
    folder = root / "outbox" / "_confirmations"
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(folder.glob("*.eml"))
    ]


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")


def subscribe(client: httpx.Client, **fields: str) -> httpx.Response:
    _, token = form_token(client.get("/subscribe").text)
    return client.post("/subscribe", data={"csrf": token, **fields})


def test_subscribe_mails_a_confirmation_link_that_makes_the_address_subscribed(live, workspace):
    with live.client() as client:
        answer = subscribe(client, email="Lin@Example.com", name="Lin Yu")
        assert answer.status_code == 200 and "Check your inbox" in answer.text
        [message] = wait_for(lambda: confirmations(workspace))
        assert statuses(workspace)["Lin@Example.com"] == "pending"
        assert message["To"].addresses[0].addr_spec == "Lin@Example.com"
        assert message["Subject"] == "Confirm your subscription to Test Weekly"
        text = message.get_body(("plain",)).get_content()
        link = re.search(r"https://news\.example\.org(/confirm/\S+)", text).group(1)
        opened = client.get(link)
        assert statuses(workspace)["Lin@Example.com"] == "pending"  # opening alone does nothing
        action, token = form_token(opened.text)
        confirmed = client.post(action, data={"csrf": token})
        again = client.get(link)
    assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
    assert again.status_code == 200 and "You are subscribed" in again.text
    assert statuses(workspace)["Lin@Example.com"] == "subscribed"
    kinds = [
        e.event
        for e in EventStore.for_workspace(workspace / ".newsletter").for_email("lin@example.com")
    ]
    assert kinds == ["confirmation_sent", "confirm"]


def test_subscribe_answers_the_same_for_known_and_unknown_addresses(live, workspace):
    with live.client() as client:
        known = subscribe(client, email="ada@example.org")
        unknown = subscribe(client, email="new@example.com")
        wait_for(lambda: confirmations(workspace))
        time.sleep(0.2)  # let the known address's background task finish too
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text
    assert "ada@example.org" not in known.text and "new@example.com" not in unknown.text
    [message] = confirmations(workspace)
    assert message["To"].addresses[0].addr_spec == "new@example.com"
    assert statuses(workspace)["ada@example.org"] == "subscribed"


def test_expired_or_forged_confirmation_links_change_nothing(live, workspace):
    secret = load_secret(workspace / ".newsletter", env={})
    subs.add_subscriber(workspace / "subscribers", "main", "wait@example.com", status="pending")
    expired = make_expiring_token(secret, "main", "wait@example.com", "c", int(time.time()) - 1)
    valid = make_expiring_token(secret, "main", "wait@example.com", "c", int(time.time()) + 60)
    unsubscribe = make_token(secret, "main", "wait@example.com")
    later = valid.replace(valid.split(".")[2], str(int(valid.split(".")[2]) + 3600))
    with live.client() as client:
        answers = [client.get(f"/confirm/{t}") for t in (expired, valid[:-2], later, unsubscribe)]
    assert {a.status_code for a in answers} == {404}
    assert len({a.text for a in answers}) == 1
    assert statuses(workspace)["wait@example.com"] == "pending"


def test_an_unsubscribed_address_cannot_be_confirmed_with_an_old_link(live, workspace):
    secret = load_secret(workspace / ".newsletter", env={})
    subs.add_subscriber(workspace / "subscribers", "main", "wait@example.com", status="pending")
    link = make_expiring_token(secret, "main", "wait@example.com", "c", int(time.time()) + 60)
    with live.client() as client:
        unsubscribe = f"/unsubscribe/{make_token(secret, 'main', 'wait@example.com')}"
        assert client.post(unsubscribe, data=ONE_CLICK).status_code == 200
        assert client.get(f"/confirm/{link}").status_code == 404
    wait_for(lambda: statuses(workspace)["wait@example.com"] == "unsubscribed")


def test_honeypot_invalid_input_and_missing_csrf_store_nothing(live, workspace):
    before = (workspace / "subscribers" / "main.csv").read_bytes()
    with live.client() as client:
        trapped = subscribe(client, email="bot@example.com", website="http://spam.example")
        invalid = subscribe(client, email="not an address")
        bad_list = subscribe(client, email="x@example.com", list="secret-list")
        no_csrf = client.post("/subscribe", data={"email": "x@example.com"})
        control = subscribe(client, email="x@example.com", name="Eve\x00")
    assert trapped.status_code == 200 and "Check your inbox" in trapped.text
    assert invalid.status_code == 400 and "valid email address" in invalid.text
    assert bad_list.status_code == no_csrf.status_code == control.status_code == 400
    time.sleep(0.2)
    assert (workspace / "subscribers" / "main.csv").read_bytes() == before
    assert not (workspace / "outbox").exists()


def test_subscribe_is_rate_limited_per_client_and_per_address(workspace):
    config = configure(
        workspace, "subscribe_per_ip_per_hour = 4\nconfirmations_per_address_per_day = 2"
    )
    with LiveServer(config) as live, live.client() as client:
        answers = [subscribe(client, email="same@example.com") for _ in range(4)]
        limited = subscribe(client, email="other@example.com")
        with live.client(headers={"X-Forwarded-For": "203.0.113.9"}) as proxied:
            # Behind a trusted proxy (loopback here) the client address comes from the proxy.
            elsewhere = subscribe(proxied, email="other@example.com")
        store = EventStore.for_workspace(workspace / ".newsletter")
        wait_for(lambda: store.counts("web").get("confirmation_sent", 0) >= 3)
        time.sleep(0.3)
    assert [a.status_code for a in answers] == [200] * 4
    assert limited.status_code == 429 and "other@example.com" not in limited.text
    assert elsewhere.status_code == 200
    assert store.counts("web") == {"confirmation_sent": 3}
    assert len(store.for_email("same@example.com")) == 2


def test_oversized_requests_are_refused(live, workspace):
    with live.client() as client:
        big = client.post(
            "/subscribe",
            content=b"email=" + b"a" * 100_000,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

        def chunks():
            for _ in range(40):
                yield b"a" * 1024

        streamed = client.post(
            "/subscribe",
            content=chunks(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert big.status_code == streamed.status_code == 413


# --- web version of issues, health --------------------------------------------------------------


def test_sent_issues_are_served_without_personal_data(live, workspace):
    shutil.copy(workspace / "issues" / "merge.md", workspace / "issues" / "merged.md")
    send_issue(workspace, "issues/merged.md")
    with live.client() as client:
        page = client.get("/issues/merged.html")
        draft = client.get("/issues/sample.html")  # in issues/, never sent
        missing = client.get("/issues/nothing-here.html")
        sneaky = client.get("/issues/..%2fnewsletter.toml")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Hi there from nowhere" in page.text
    assert "@example" not in page.text.replace("news@example.org", "")
    assert "/unsubscribe/" not in page.text
    assert 'href="https://news.example.org/subscribe"' in page.text
    assert draft.status_code == missing.status_code == sneaky.status_code == 404


def test_healthz_and_unknown_paths(live):
    with live.client() as client:
        health = client.get("/healthz")
        unknown = client.get("/wp-login.php")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert unknown.status_code == 404 and "Not found" in unknown.text


def test_cli_serve_runs_the_service_and_logs_no_tokens(workspace):
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    secret = load_secret(workspace / ".newsletter", env={})
    token = make_token(secret, "main", "ada@example.org")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(port)],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Host": "news.example.org"}, timeout=5
        ) as client:
            health = wait_for(lambda: _try(client.get, "/healthz"))
            assert health.status_code == 200
            assert client.get(f"/unsubscribe/{token}").status_code == 200
            assert client.post(f"/unsubscribe/{token}", data=ONE_CLICK).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=10)[0]
    assert "GET /unsubscribe/… 200" in output
    assert token not in output and token.split(".")[1] not in output
    assert "ada@example.org" not in output
    assert statuses(workspace)["ada@example.org"] == "unsubscribed"


def _try(call, *args):
    try:
        return call(*args)
    except httpx.TransportError:
        return None


def test_cli_serve_refuses_a_bad_setting_in_one_line(workspace):
    configure(workspace, 'archive = "everything"')
    result = CliRunner().invoke(cli_app, ["serve"])
    assert result.exit_code == 3
    assert result.output.strip() == (
        "Error: [serve] archive = 'everything': use one of sent, all, off"
    )
