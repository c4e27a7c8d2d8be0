"""SpamAssassin as a process: found, started early, fed a message. Only the standard library
is imported, so `newsletter preview` can start it before the heavy imports and the render.

Three ways to score, fastest first: `spamc` when a `spamd` answers at $NEWSLETTER_SPAMD
(the rules are already loaded); the stock `spamassassin` through newsletter/data/spamcheck.pl,
which loads the rules before it reads the message (the stock script reads the message
first, so starting it early would gain little); any other executable named by
$NEWSLETTER_SPAMASSASSIN, run as `spamassassin` would be.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

INSTALL_HINT = "apt-get install spamassassin"
ENV = "NEWSLETTER_SPAMASSASSIN"  # a path to spamassassin, or "off"
SPAMD_ENV = "NEWSLETTER_SPAMD"  # host:port (or host, port 783) of a running spamd
SPAMD_PORT = 783
OFF = {"", "off", "0", "no", "false"}
# Local tests only (no DNS blocklists), no Bayes learning, no prefs file written to $HOME.
COMMAND = ("--local", "--test-mode", "--nocreate-prefs", "--cf=use_bayes 0")
LABEL = "SpamAssassin, local tests"
_SCRIPT = Path(__file__).with_name("data") / "spamcheck.pl"
# The install paths the stock script has substituted at build time: `my $DEF_RULES_DIR = '...';`
_DIRS = ("PREFIX", "DEF_RULES_DIR", "LOCAL_RULES_DIR", "LOCAL_STATE_DIR")
_DIR = re.compile(r"^my \$(" + "|".join(_DIRS) + r")\s*=\s*'([^']*)';", re.M)
_LIB = re.compile(r"^use lib '([^']*)';", re.M)  # where its Mail::SpamAssassin is


class SpamAssassinError(Exception):
    """spamassassin ran but gave no report (a bug or a broken install, not the issue's fault)."""


def find_spamassassin(env: Mapping[str, str] | None = None) -> str | None:
    """The spamassassin executable: $NEWSLETTER_SPAMASSASSIN ("off" skips the check) or PATH's."""
    chosen = (os.environ if env is None else env).get(ENV)
    if chosen is not None:
        return None if chosen.strip().lower() in OFF else shutil.which(chosen.strip())
    return shutil.which("spamassassin")


def unavailable() -> str:
    """Why there is no spamassassin to run, in a few words."""
    chosen = os.environ.get(ENV)
    if chosen is not None and chosen.strip().lower() in OFF:
        return f"turned off ({ENV}={chosen})"
    if chosen is not None:
        return f"{ENV}={chosen} is not an executable"
    return f"spamassassin is not installed ({INSTALL_HINT})"


def preloading_command(executable: str) -> list[str] | None:
    """spamcheck.pl run by the perl of the stock `spamassassin` script with its install
    paths; None when `executable` is something else (a wrapper, a stand-in)."""
    try:
        with open(executable, "rb") as script:
            head = script.read(4096).decode("utf-8", "replace")
    except OSError:
        return None
    shebang = head.split("\n", 1)[0]
    dirs = dict(_DIR.findall(head))
    if not shebang.startswith("#!") or "perl" not in shebang or set(dirs) != set(_DIRS):
        return None
    lib = _LIB.search(head)
    if lib is None or not Path(lib[1], "Mail", "SpamAssassin.pm").is_file():
        return None  # a copy that finds its modules some other way: run it as it is
    perl = shebang[2:].split()[0]
    return [perl, f"-I{lib[1]}", str(_SCRIPT), *(dirs[name] for name in _DIRS)]


def spamd_address(env: Mapping[str, str] | None = None) -> tuple[str, int] | None:
    """(host, port) from $NEWSLETTER_SPAMD; None when unset or not host[:port]."""
    value = (os.environ if env is None else env).get(SPAMD_ENV, "").strip()
    if not value or value.lower() in OFF:
        return None
    host, _, port = value.rpartition(":") if ":" in value else (value, "", str(SPAMD_PORT))
    if not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def spamd_command(env: Mapping[str, str] | None = None) -> tuple[list[str], str] | None:
    """(spamc's argv, label) when spamc is installed and a spamd accepts a connection at
    $NEWSLETTER_SPAMD; None otherwise (the caller starts spamassassin instead)."""
    import socket

    address = spamd_address(env)
    spamc = shutil.which("spamc")
    if address is None or spamc is None:
        return None
    try:
        socket.create_connection(address, timeout=0.5).close()
    except OSError:
        return None
    host, port = address
    # -R: the score and SpamAssassin's report; -x: an error when spamd fails, not the message.
    return [spamc, "-d", host, "-p", str(port), "-R", "-x", "-t", "60"], f"spamd at {host}:{port}"


class Started:
    """A scorer started before the message exists: it loads its rules (about half a second)
    while the caller renders, then reads the message from stdin."""

    def __init__(
        self,
        executable: str | None = None,
        argv: list[str] | None = None,
        label: str = LABEL,
        name: str = "spamassassin",
    ) -> None:
        if argv is None:
            executable = executable or find_spamassassin()
            if not executable:
                raise SpamAssassinError(unavailable())
            argv = preloading_command(executable) or [executable, *COMMAND]
        self.name = name
        self.label = label
        # English rule descriptions whatever the locale; no network whatever the config says.
        env = {**os.environ, "LANG": "C", "LC_ALL": "C"}
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            raise SpamAssassinError(f"{self.name} did not run: {exc}") from None

    def output(self, eml: bytes, timeout: float = 60.0) -> tuple[str, str]:
        """(stdout, stderr) of the scorer once it has read and scored the message."""
        try:
            stdout, stderr = self.process.communicate(eml, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.cancel()
            raise SpamAssassinError(f"{self.name} did not run: {exc}") from None
        return stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")

    def cancel(self) -> None:
        """Stop it when there is no message to score (the render failed); no-op once done."""
        if self.process.returncode is not None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def start() -> Started | str:
    """spamc when a spamd answers, else SpamAssassin loading its rules, or one line saying
    why there is none to run. $NEWSLETTER_SPAMASSASSIN=off turns both off."""
    chosen = os.environ.get(ENV)
    if chosen is not None and chosen.strip().lower() in OFF:
        return f"not scored: {unavailable()}"
    spamd = spamd_command()
    if spamd is not None:
        try:
            return Started(argv=spamd[0], label=spamd[1], name="spamc")
        except SpamAssassinError:
            pass  # spamc would not start: spamassassin still can
    executable = find_spamassassin()
    if not executable:
        return f"not scored: {unavailable()}"
    try:
        return Started(executable)
    except SpamAssassinError as exc:
        return f"not scored: {exc}"


_early: Started | str | None = None


def start_early() -> None:
    """Start the scorer for the preview to come (newsletter/launch.py); stopped at exit if
    the preview never gets to use it."""
    import atexit

    global _early
    _early = start()
    if isinstance(_early, Started):
        atexit.register(_early.cancel)


def take() -> Started | str:
    """The scorer started early, or one started now."""
    global _early
    started, _early = _early, None
    return started if started is not None else start()
