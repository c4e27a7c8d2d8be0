"""The studio's HTTP side over a real loopback socket: who may ask, and what it answers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from test_studio import Running, edit

from newsletter.studio import StudioError, bind, framed


@pytest.fixture
def studio(workspace, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SPAMASSASSIN", "off")
    running = Running(workspace, "sample.md")
    yield running
    running.stop()


@pytest.fixture
def client(studio):
    with httpx.Client(base_url=studio.url, timeout=10) as http:
        yield http


def token(client: httpx.Client) -> str:
    page = client.get("/").text
    return page.split('name="studio-token" content="')[1].split('"')[0]


def wait_for(check, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_it_listens_on_loopback_only(studio):
    assert studio.url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8001", "127.0.0.1.nip.io", "[::2]"])
def test_requests_for_another_host_name_are_refused_against_dns_rebinding(client, host):
    for path in ("/", "/api/state", "/email"):
        response = client.get(path, headers={"Host": host})
        assert response.status_code == 403
        assert "answers only to localhost" in response.text


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "localhost:1234", "[::1]:8001"])
def test_local_host_names_are_served(client, host):
    assert client.get("/api/state", headers={"Host": host}).status_code == 200


def test_send_test_needs_the_page_token(client, workspace):
    response = client.post("/api/send-test", json={})
    assert response.status_code == 403
    assert response.json() == {"ok": False, "message": "missing or wrong studio token"}
    wrong = client.post("/api/send-test", json={}, headers={"X-Studio-Token": "guess"})
    assert wrong.status_code == 403
    assert not (workspace / "outbox").exists()


def test_send_test_refuses_another_origin_even_with_the_token(client, workspace):
    response = client.post(
        "/api/send-test",
        json={},
        headers={"X-Studio-Token": token(client), "Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert not (workspace / "outbox").exists()


def test_send_test_as_a_subscriber_goes_to_the_test_addresses(client, workspace):
    response = client.post(
        "/api/send-test",
        json={"as": "ada@example.org"},
        headers={
            "X-Studio-Token": token(client),
            "Origin": client.base_url.scheme + "://127.0.0.1",
        },
    )
    assert response.json() == {
        "ok": True,
        "message": "Sent a test to editor@example.org via outbox",
    }
    assert len(list((workspace / "outbox" / "sample").glob("*.eml"))) == 1


def test_send_test_without_test_addresses_says_what_to_set(client, workspace):
    edit(workspace / "newsletter.toml", 'test_to = ["editor@example.org"]', "test_to = []")
    wait_for(lambda: client.get("/api/state").json()["test_to"] == [])
    response = client.post("/api/send-test", json={}, headers={"X-Studio-Token": token(client)})
    assert response.status_code == 400
    assert response.json()["message"].startswith("no test addresses: set [send] test_to")


def test_a_config_change_re_renders_with_the_new_settings(client, workspace):
    assert "Test Weekly" in client.get("/email").text
    edit(workspace / "newsletter.toml", 'name = "Test Weekly"', 'name = "Renamed Weekly"')
    wait_for(lambda: "Renamed Weekly" in client.get("/email").text)
    edit(workspace / "newsletter.toml", 'name = "Renamed Weekly"', "name = [")
    state = wait_for(lambda: client.get("/api/state").json()["error"])
    assert "invalid TOML" in state
    assert "Renamed Weekly" in client.get("/email").text  # the last good render stays


def test_events_stream_pushes_the_new_version_after_an_edit(client, studio, workspace):
    with client.stream("GET", "/api/events") as events:
        lines = events.iter_lines()
        assert next(lines) == "retry: 500"
        assert next(lines) == "event: version"
        first = int(next(lines).removeprefix("data: "))
        edit(workspace / "issues" / "sample.md", "title: NATO", "title: Pushed NATO")
        for line in lines:
            if line.startswith("data: "):
                assert int(line.removeprefix("data: ")) > first
                break
    assert client.get("/api/state").json()["subject"].startswith("Pushed NATO")


def test_state_for_an_unknown_subscriber_names_the_problem_and_shows_the_sample(client):
    state = client.get("/api/state", params={"as": "nobody@example.org"}).json()
    assert state["as_error"].endswith("nobody@example.org is not in the list 'main'")
    assert state["to"] == "reader@example.com"


def test_subscriber_search_finds_subscribed_people_only(client):
    found = client.get("/api/subscribers", params={"q": "a"}).json()
    assert [p["email"] for p in found] == ["ada@example.org", "grace@example.net"]


def test_dark_frame_turns_on_the_emails_dark_css_and_links_open_outside():
    html = "<html><head></head><style>@media (prefers-color-scheme: dark) { a {} }</style></html>"
    dark = framed(html, dark=True)
    assert "@media (min-width: 0px)" in dark and "prefers-color-scheme" not in dark
    assert '<base target="_blank">' in framed(html)


def test_a_port_in_use_is_a_one_line_error(studio):
    port = int(studio.url.rsplit(":", 1)[1])
    with pytest.raises(StudioError, match=rf"cannot listen on 127.0.0.1:{port} .*pass --port"):
        bind(port)


@pytest.mark.skipif(shutil.which("spamassassin") is None, reason="apt-get install spamassassin")
def test_the_spam_score_arrives_after_the_render(workspace, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SPAMASSASSIN", raising=False)
    running = Running(workspace, "sample.md")
    try:
        with httpx.Client(base_url=running.url, timeout=10) as http:
            spam = wait_for(
                lambda: (
                    http.get("/api/state").json()["spam"]["state"] == "done"
                    and http.get("/api/state").json()["spam"]
                ),
                seconds=60,
            )
    finally:
        running.stop()
    assert spam["score"] < 1.0
    assert "NO_RELAYS" in [r["name"] for r in spam["rules"]]


def test_preview_serve_shows_a_broken_issue_and_stops_on_ctrl_c(workspace):
    env = {**os.environ, "NEWSLETTER_SPAMASSASSIN": "off"}
    command = [sys.executable, "-m", "newsletter", "preview", "issues/bad/bad-yaml.md"]
    process = subprocess.Popen(
        [*command, "--serve", "--port", "0"],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("Serving   http://127.0.0.1:"), line
        url = line.split()[1]
        state = httpx.get(url + "api/state", timeout=10).json()
        assert "invalid front matter" in state["error"]
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert (
        err
        == f"Error: {Path('issues/bad/bad-yaml.md')}:4: invalid front matter: expected ',' or ']', but got ':'\n"
    )
