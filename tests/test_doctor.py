"""`newsletter doctor` against a loopback DNS server serving tests/fixtures/dns/zone.txt, and
the one-click check against a real `serve` on loopback. Nothing here reaches the network."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from conftest import FIXTURES
from dns_loopback import LoopbackDNS
from test_serve import LiveServer
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import load_config
from newsletter.errors import ExitCode
from newsletter.optouts.journal import Journal

RULES = ["spf", "dkim", "dmarc", "unsubscribe", "mx", "postal_address"]


@pytest.fixture(scope="module")
def dns_server():
    with LoopbackDNS(FIXTURES / "dns" / "zone.txt") as server:
        yield server


@pytest.fixture
def ws(workspace: Path, dns_server: LoopbackDNS, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The workspace, its resolver pointed at the loopback DNS server."""
    monkeypatch.setenv("NEWSLETTER_DOCTOR_NAMESERVERS", dns_server.address)
    monkeypatch.setenv("NEWSLETTER_DOCTOR_TIMEOUT", "5")
    return workspace


def doctor(*args: str):
    return CliRunner().invoke(app, ["doctor", "--provider", "sendgrid", *args])


def verdicts(result) -> dict[str, dict]:
    return {v["rule"]: v for v in json.loads(result.output)["verdicts"]}


def statuses(result) -> dict[str, str]:
    return {rule: v["status"] for rule, v in verdicts(result).items()}


def test_a_domain_set_up_for_sendgrid_passes_every_rule(ws, monkeypatch):
    with LiveServer(load_config(ws / "newsletter.toml", env={})) as server:
        monkeypatch.setenv("NEWSLETTER_DOCTOR_SERVE_URL", server.url)
        result = doctor()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "example.org, sending with SendGrid:"
    assert [line.split()[:2] for line in lines[1:-1]] == [["ok", rule] for rule in RULES]
    assert "SPF at example.org includes sendgrid.net (1 of 10 DNS lookups)" in result.output
    assert "s1._domainkey.example.org: 2048-bit RSA" in result.output
    assert "s2._domainkey.example.org: 1024-bit RSA" in result.output
    assert f"(sent to {server.url}) answered 200" in result.output
    assert "from_email news@example.org: MX mx.example.org" in result.output
    assert lines[-1] == "6 rules passed: ready to send."
    state = ws / ".newsletter" / "doctor.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert "sendgrid" in json.loads(state.read_text())["passed"]["example.org"]


def test_the_one_click_probe_unsubscribes_nobody(ws, monkeypatch):
    before = (ws / "subscribers" / "main.csv").read_bytes()
    with LiveServer(load_config(ws / "newsletter.toml", env={})) as server:
        monkeypatch.setenv("NEWSLETTER_DOCTOR_SERVE_URL", server.url)
        assert doctor().exit_code == 0
    assert (ws / "subscribers" / "main.csv").read_bytes() == before
    assert Journal(ws / ".newsletter").unsubscribes() == []


def test_serve_with_another_secret_fails_the_one_click_rule(ws, monkeypatch):
    config = load_config(ws / "newsletter.toml", env={})
    with LiveServer(config, env={"NEWSLETTER_SECRET": "x" * 40}) as server:
        monkeypatch.setenv("NEWSLETTER_DOCTOR_SERVE_URL", server.url)
        result = doctor("--json")
    assert result.exit_code == ExitCode.NOT_READY
    unsubscribe = verdicts(result)["unsubscribe"]
    assert unsubscribe["status"] == "fail"
    assert unsubscribe["summary"].endswith("answered 404")
    assert "same NEWSLETTER_SECRET" in unsubscribe["fix"][0]


def test_one_click_is_not_checked_when_serve_cannot_be_reached(ws):
    # base_url's host resolves (through the loopback DNS) to 127.0.0.1, where nothing
    # listens on 443: not a failure, but said.
    result = doctor()
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if " unsubscribe " in line)
    assert line.split()[0] == "skip"
    assert "not checked, serve is not reachable from here (ConnectError)" in line
    assert result.output.splitlines()[-1] == "5 rules passed, 1 not checked: ready to send."


@pytest.mark.parametrize(
    ("domain", "rule", "summary", "fix"),
    [
        (
            "nospf.test",
            "spf",
            "no SPF record at nospf.test",
            'publish TXT at nospf.test: "v=spf1 include:sendgrid.net ~all"',
        ),
        (
            "toomany.test",
            "spf",
            "SPF at toomany.test needs 12 DNS lookups; receivers stop at 10 (permerror)",
            "drop include:s you no longer send through, or replace them with ip4:/ip6: ranges",
        ),
        (
            "noinclude.test",
            "spf",
            "SPF at noinclude.test does not include sendgrid.net (SendGrid)",
            'publish TXT at noinclude.test: "v=spf1 ip4:198.51.100.0/24 mx include:sendgrid.net ~all"',
        ),
        (
            "nodkim.test",
            "dkim",
            "DKIM s1._domainkey.nodkim.test: no key published; "
            "s2._domainkey.nodkim.test: no key published",
            "publish the DKIM records from SendGrid: Settings > Sender Authentication > "
            "Authenticate Your Domain (keys of 1024 bits or more, 2048 recommended)",
        ),
        (
            "weakdkim.test",
            "dkim",
            "DKIM s1._domainkey.weakdkim.test: the key has 512 bits; receivers want 1024 or more",
            "publish the DKIM records from SendGrid: Settings > Sender Authentication > "
            "Authenticate Your Domain (keys of 1024 bits or more, 2048 recommended)",
        ),
        (
            "nodmarc.test",
            "dmarc",
            "no DMARC record at _dmarc.nodmarc.test",
            'publish TXT at _dmarc.nodmarc.test: "v=DMARC1; p=none; rua=mailto:dmarc@nodmarc.test"',
        ),
        (
            "badpolicy.test",
            "dmarc",
            "DMARC at _dmarc.badpolicy.test: p=monitor is not one of none, quarantine, reject",
            'fix the record, e.g. "v=DMARC1; p=none; rua=mailto:dmarc@badpolicy.test"',
        ),
        (
            "nomail.test",
            "mx",
            "from_email news@nomail.test: nomail.test has no MX and no A record",
            "publish an MX record for the domain (replies and bounces are lost without one)",
        ),
        (
            "nullmx.test",
            "mx",
            "from_email news@nullmx.test: nullmx.test publishes a null MX (accepts no mail)",
            "publish an MX record for the domain (replies and bounces are lost without one)",
        ),
    ],
)
def test_a_broken_record_fails_its_rule_only_and_says_what_to_publish(
    ws, monkeypatch, domain, rule, summary, fix
):
    monkeypatch.setenv("NEWSLETTER_FROM_EMAIL", f"news@{domain}")
    result = doctor("--json")
    assert result.exit_code == ExitCode.NOT_READY == 7, result.output
    found = verdicts(result)
    assert found[rule]["status"] == "fail"
    assert found[rule]["summary"] == summary
    assert found[rule]["fix"] == [fix]
    others = {r: s for r, s in statuses(result).items() if r != rule}
    assert set(others.values()) <= {"pass", "skip"}, others


def test_a_broken_record_prints_its_fix_under_the_failed_rule(ws, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_FROM_EMAIL", "news@nospf.test")
    result = doctor()
    assert result.exit_code == 7
    lines = result.output.splitlines()
    at = lines.index("  FAIL  spf             no SPF record at nospf.test")
    assert (
        lines[at + 1].strip() == '-> publish TXT at nospf.test: "v=spf1 include:sendgrid.net ~all"'
    )
    assert lines[-1] == (
        "4 rules passed, 1 failed, 1 not checked: not ready: fix what FAILed, then run it again."
    )


def test_dmarc_pct_is_a_warning_that_rfc_9989_dropped_it(ws, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_FROM_EMAIL", "news@pct.test")
    result = doctor("--json")
    assert result.exit_code == 0, result.output
    dmarc = verdicts(result)["dmarc"]
    assert dmarc["status"] == "warn"
    assert dmarc["summary"].startswith("DMARC p=reject;")
    assert dmarc["fix"] == [
        "pct= is not part of DMARC since RFC 9989 and is ignored: remove it; "
        "use t=y while testing a policy"
    ]


def test_a_domain_without_mx_receives_at_its_a_record(ws, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_FROM_EMAIL", "news@nomx.test")
    result = doctor("--json")
    assert result.exit_code == 0, result.output
    mx = verdicts(result)["mx"]
    assert mx["status"] == "pass"
    assert mx["summary"] == (
        "from_email news@nomx.test: no MX, mail goes to nomx.test's A record; "
        "reply_to editor@example.org: MX mx.example.org"
    )


def test_a_missing_postal_address_fails(ws, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_POSTAL_ADDRESS", "")
    result = doctor("--json")
    assert result.exit_code == 7
    assert verdicts(result)["postal_address"] == {
        "rule": "postal_address",
        "status": "fail",
        "summary": "no postal address: bulk mail must carry the sender's "
        "(CAN-SPAM, many mailbox providers)",
        "fix": ['set postal_address = "..." in newsletter.toml'],
        "details": [],
    }


def test_json_names_the_domain_provider_and_every_rule(ws):
    result = doctor("--json")
    data = json.loads(result.output)
    assert set(data) == {"domain", "provider", "passed", "verdicts"}
    assert (data["domain"], data["provider"], data["passed"]) == ("example.org", "sendgrid", True)
    assert [v["rule"] for v in data["verdicts"]] == RULES
    for v in data["verdicts"]:
        assert set(v) == {"rule", "status", "summary", "fix", "details"}
        assert v["status"] in {"pass", "warn", "fail", "skip"}
    assert data["verdicts"][0]["details"] == [
        "v=spf1 ip4:198.51.100.0/24 include:sendgrid.net ~all"
    ]


def test_nameservers_come_from_the_config_file_too(ws, dns_server, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_DOCTOR_NAMESERVERS")
    path = ws / "newsletter.toml"
    path.write_text(path.read_text() + f'\n[doctor]\nnameservers = ["{dns_server.address}"]\n')
    result = doctor("--json")
    assert result.exit_code == 0, result.output
    assert statuses(result)["spf"] == "pass"


def test_a_nameserver_with_a_bad_port_is_a_config_error(ws, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_DOCTOR_NAMESERVERS", "127.0.0.1:99999")
    result = doctor()
    assert result.exit_code == ExitCode.CONFIG
    assert result.output == (
        "Error: [doctor] nameservers: name server '127.0.0.1:99999' has a bad port (host:port)\n"
    )


def test_the_outbox_has_no_domain_to_check(ws):
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == ExitCode.USAGE
    assert result.output.startswith("Error: the outbox delivers nothing, so there is no sending")


def test_an_unknown_provider_is_named(ws):
    result = CliRunner().invoke(app, ["doctor", "--provider", "pigeon"])
    assert result.exit_code == ExitCode.USAGE
    assert result.output == (
        "Error: the doctor knows no provider 'pigeon' "
        "(known: sendgrid, ses, postmark, mailgun, resend, smtp)\n"
    )


def test_ses_without_selectors_says_where_to_find_them(ws):
    result = CliRunner().invoke(app, ["doctor", "--provider", "ses", "--json"])
    assert result.exit_code == 7
    dkim = verdicts(result)["dkim"]
    assert dkim["summary"] == "no DKIM selector known for Amazon SES"
    assert "[doctor] dkim_selectors" in dkim["fix"][0]
    assert (
        verdicts(result)["spf"]["summary"]
        == "SPF at example.org does not include amazonses.com (Amazon SES)"
    )


# --- send -----------------------------------------------------------------------------------

NEVER = "`newsletter doctor` has never passed for example.org with smtp"


def send_dry_run(*args: str):
    return CliRunner().invoke(
        app, ["send", "issues/merge.md", "--provider", "smtp", "--dry-run", *args]
    )


def test_send_mentions_doctor_until_it_has_passed_for_the_domain(ws, monkeypatch):
    first = send_dry_run()
    assert first.exit_code == 0, first.output
    assert NEVER in first.output
    monkeypatch.setenv("NEWSLETTER_DOCTOR_DKIM_SELECTORS", "s1,s2")
    checked = CliRunner().invoke(app, ["doctor", "--provider", "smtp"])
    assert checked.exit_code == 0, checked.output
    again = send_dry_run()
    assert again.exit_code == 0, again.output
    assert "doctor" not in again.output


def test_send_shows_the_cheap_failures_without_touching_the_network(ws, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_BASE_URL", "http://localhost:8000")
    monkeypatch.setenv("NEWSLETTER_DOCTOR_NAMESERVERS", "127.0.0.1:9")  # would time out if used
    result = send_dry_run()
    assert result.exit_code == 0, result.output
    assert (
        "Doctor:     base_url http://localhost:8000 is not https: mailbox providers only POST "
        "one-click to https (serve it behind TLS"
    ) in result.output
    assert NEVER in result.output


def test_send_to_the_outbox_does_not_mention_doctor(ws):
    result = CliRunner().invoke(app, ["send", "issues/merge.md", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "doctor" not in result.output.lower()
