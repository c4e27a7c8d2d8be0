"""Double opt-in over real HTTP on loopback: only a person's button press confirms, only the
request that sent a link can be confirmed with it, and links are built from base_url only."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from test_serve import (
    ONE_CLICK,
    LiveServer,
    configure,
    confirmations,
    form_token,
    statuses,
    subscribe,
    wait_for,
)

from newsletter.tokens import load_secret, make_token


@pytest.fixture
def live(workspace: Path):
    with LiveServer(configure(workspace)) as server:
        yield server


def confirm_links(root: Path, count: int) -> list[str]:
    """The confirmation links in the outbox (once there are `count`), as paths, in no order."""
    messages = wait_for(lambda: len(found := confirmations(root)) >= count and found)
    links = []
    for message in messages:
        text = message.get_body(("plain",)).get_content()
        links.append(re.search(r"https://news\.example\.org(/confirm/\S+)", text).group(1))
    return links


def press_confirm(client: httpx.Client, link: str) -> httpx.Response:
    page = client.get(link)
    if page.status_code != 200 or "<form" not in page.text:
        return page
    action, token = form_token(page.text)
    assert action == link
    return client.post(action, data={"csrf": token})


# --- item 3: scanners and prefetchers do not confirm -------------------------------------------


def test_opening_a_confirmation_link_changes_nothing_until_the_button_is_pressed(live, workspace):
    with live.client() as client:
        subscribe(client, email="lin@example.com")
        [link] = confirm_links(workspace, 1)
        before = (workspace / "subscribers" / "main.csv").read_bytes()
        with live.client() as scanner:  # a mail scanner: no cookie, follows every link
            pages = [scanner.get(link) for _ in range(3)]
            head = scanner.head(link)
            forged = scanner.post(link, data={"csrf": "x" * 24})
        assert [p.status_code for p in pages] == [200] * 3 and head.status_code in (200, 405)
        assert forged.status_code == 400
        assert (workspace / "subscribers" / "main.csv").read_bytes() == before
        assert statuses(workspace)["lin@example.com"] == "pending"
        assert "<button" in pages[0].text and "lin@example.com" not in pages[0].text
        action, token = form_token(client.get(link).text)
        assert action == link
        done = client.post(action, data={"csrf": token})
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert statuses(workspace)["lin@example.com"] == "subscribed"


# --- item 4: a link is good for the request that produced it -----------------------------------


def test_an_old_confirmation_link_is_void_after_unsubscribing_and_asking_again(live, workspace):
    secret = load_secret(workspace / ".newsletter", env={})
    with live.client() as client:
        subscribe(client, email="lin@example.com")
        [first] = confirm_links(workspace, 1)
        assert "You are subscribed" in press_confirm(client, first).text
        unsubscribe = f"/unsubscribe/{make_token(secret, 'main', 'lin@example.com')}"
        assert client.post(unsubscribe, data=ONE_CLICK).status_code == 200
        # The journal has it at once; the list row follows just after the answer.
        wait_for(lambda: statuses(workspace)["lin@example.com"] == "unsubscribed")
        subscribe(client, email="lin@example.com")
        second = next(link for link in confirm_links(workspace, 2) if link != first)
        reused = press_confirm(client, first)
        assert reused.status_code == 404 and "This link is not valid" in reused.text
        assert statuses(workspace)["lin@example.com"] == "unsubscribed"
        confirmed = press_confirm(client, second)
    assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
    assert statuses(workspace)["lin@example.com"] == "subscribed"


def test_a_newer_request_voids_the_link_of_an_older_one(live, workspace):
    with live.client() as client:
        subscribe(client, email="lin@example.com")
        [first] = confirm_links(workspace, 1)
        subscribe(client, email="lin@example.com")
        second = next(link for link in confirm_links(workspace, 2) if link != first)
        assert press_confirm(client, first).status_code == 404
        assert statuses(workspace)["lin@example.com"] == "pending"
        assert "You are subscribed" in press_confirm(client, second).text


def test_a_pending_address_that_unsubscribes_cannot_be_confirmed_with_its_link(live, workspace):
    secret = load_secret(workspace / ".newsletter", env={})
    with live.client() as client:
        subscribe(client, email="wait@example.com")
        [link] = confirm_links(workspace, 1)
        unsubscribe = f"/unsubscribe/{make_token(secret, 'main', 'wait@example.com')}"
        assert client.post(unsubscribe, data=ONE_CLICK).status_code == 200
        assert press_confirm(client, link).status_code == 404
    wait_for(lambda: statuses(workspace)["wait@example.com"] == "unsubscribed")


# --- item 6: the form never changes an unsubscribed row by itself -------------------------------


def test_the_form_leaves_an_unsubscribed_address_unsubscribed_until_it_confirms(live, workspace):
    assert statuses(workspace)["alan@example.com"] == "unsubscribed"
    before = (workspace / "subscribers" / "main.csv").read_bytes()
    with live.client() as client:
        subscribe(client, email="Alan@example.com", name="Someone Else")
        [link] = confirm_links(workspace, 1)
        assert (workspace / "subscribers" / "main.csv").read_bytes() == before
        assert "You are subscribed" in press_confirm(client, link).text
    assert statuses(workspace)["alan@example.com"] == "subscribed"


# --- item 7: every confirmation message is kept ------------------------------------------------


def test_three_requests_for_one_address_are_three_confirmation_messages(live, workspace):
    with live.client() as client:
        for _ in range(3):
            assert subscribe(client, email="lin@example.com").status_code == 200
        messages = wait_for(lambda: len(found := confirmations(workspace)) >= 3 and found)
        time.sleep(0.2)
    assert len(confirmations(workspace)) == 3
    assert len({m["Message-ID"] for m in messages}) == 3


# --- item 5: links come from base_url, and only its host is answered ----------------------------


def test_a_request_for_another_host_is_refused_and_mails_nothing(live, workspace):
    before = (workspace / "subscribers" / "main.csv").read_bytes()
    with live.client() as ours, live.client(headers={"Host": "evil.example"}) as evil:
        _, token = form_token(ours.get("/subscribe").text)
        evil.cookies.update(ours.cookies)
        posted = evil.post("/subscribe", data={"csrf": token, "email": "lin@example.com"})
        page = evil.get("/subscribe")
        health = evil.get("/healthz")  # monitors may call it by any name
    assert posted.status_code == page.status_code == 421
    assert "evil.example" not in posted.text
    assert health.status_code == 200
    time.sleep(0.3)
    assert (workspace / "subscribers" / "main.csv").read_bytes() == before
    assert not (workspace / "outbox").exists()


def test_without_base_url_only_loopback_hosts_are_answered(workspace):
    toml = workspace / "newsletter.toml"
    toml.write_text(toml.read_text().replace('base_url = "https://news.example.org"\n', ""))
    with LiveServer(configure(workspace)) as server:
        with server.client(headers={"Host": "evil.example"}) as evil:
            assert evil.get("/subscribe").status_code == 421
        with server.client(headers={"Host": f"localhost:{server.port}"}) as local:
            assert subscribe(local, email="lin@example.com").status_code == 200
            [message] = wait_for(lambda: confirmations(workspace))
    text = message.get_body(("plain",)).get_content()
    assert f"http://localhost:{server.port}/confirm/" in text
