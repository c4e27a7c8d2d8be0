"""Unsubscribe tokens: signed, opaque, and verifiable."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.errors import ConfigError
from newsletter.tokens import address_id, load_secret, make_token, verify_token

REPO = Path(__file__).resolve().parent.parent

SECRET = b"k" * 32


def test_token_names_the_list_and_not_the_address():
    token = make_token(SECRET, "main", "ada@example.org")
    assert "ada" not in token and "example" not in token
    claims = verify_token(SECRET, token)
    assert claims and claims.list_name == "main"
    assert claims.address_id == address_id(SECRET, "main", "ada@example.org")


@given(st.text(min_size=1, max_size=60))
def test_any_change_to_a_token_is_rejected(garbage):
    token = make_token(SECRET, "main", "ada@example.org")
    assert verify_token(b"x" * 32, token) is None
    assert verify_token(SECRET, token[:-1]) is None
    assert verify_token(SECRET, token.replace("main.", "other.", 1)) is None
    if garbage != token:
        assert verify_token(SECRET, garbage) is None


def test_generated_secret_is_kept_private_and_reused(tmp_path):
    first = load_secret(tmp_path / "state", env={})
    assert load_secret(tmp_path / "state", env={}) == first
    mode = stat.S_IMODE(os.stat(tmp_path / "state" / "secret").st_mode)
    assert mode == 0o600
    assert load_secret(tmp_path / "state", env={"NEWSLETTER_SECRET": "s" * 32}) == b"s" * 32


@pytest.mark.parametrize("content", [b"", b"   \n", b"x", b"y" * 31 + b"\n"])
def test_a_secret_file_with_less_than_32_bytes_is_refused(tmp_path, content):
    (tmp_path / "secret").write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_secret(tmp_path, env={})
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'secret'}: the secret is too short")
    assert "delete the file" in message and "NEWSLETTER_SECRET" in message
    assert "\n" not in message
    assert (tmp_path / "secret").read_bytes() == content  # never replaced behind the user's back


@pytest.mark.parametrize("value", ["   ", "x", "s" * 31, " " + "s" * 20 + " " * 20])
def test_a_short_newsletter_secret_is_refused(tmp_path, value):
    with pytest.raises(ConfigError) as caught:
        load_secret(tmp_path, env={"NEWSLETTER_SECRET": value})
    assert str(caught.value).startswith("NEWSLETTER_SECRET is too short")
    assert value.strip() not in str(caught.value) or not value.strip()


def test_send_and_serve_refuse_to_start_with_a_weak_secret_file(workspace):
    (workspace / ".newsletter").mkdir(exist_ok=True)
    (workspace / ".newsletter" / "secret").write_bytes(b"a")
    sent = CliRunner().invoke(app, ["send", "issues/sample.md", "--yes"])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    served = subprocess.run(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(free_port())],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,  # a server that starts anyway never exits: the test fails here
    )
    for code, output in ((sent.exit_code, sent.output), (served.returncode, served.stderr)):
        assert code == 3, output
        [line] = output.strip().splitlines()
        assert "the secret is too short (1 bytes, at least 32 needed)" in line
    assert not (workspace / "outbox").exists()  # nobody was mailed


def test_processes_racing_to_create_the_secret_all_get_the_same_full_one(tmp_path):
    code = (
        "import sys; from pathlib import Path; from newsletter.tokens import load_secret; "
        "sys.stdout.write(load_secret(Path(sys.argv[1]), env={}).decode())"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("NEWSLETTER_SECRET", None)
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "state")],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(8)
    ]
    outputs = {run.communicate(timeout=60)[0] for run in runs}
    assert len(outputs) == 1 and len(outputs.pop()) >= 32
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["secret"]  # no temporaries
