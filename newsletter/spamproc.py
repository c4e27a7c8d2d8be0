"""SpamAssassin as a process: found, started early, fed a message. Nothing else is imported,
so `newsletter preview` can start it before the heavy imports and the render.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping

INSTALL_HINT = "apt-get install spamassassin"
ENV = "NEWSLETTER_SPAMASSASSIN"  # a path to spamassassin, or "off"
OFF = {"", "off", "0", "no", "false"}
# Local tests only (no DNS blocklists), no Bayes learning, no prefs file written to $HOME.
COMMAND = ("--local", "--test-mode", "--nocreate-prefs", "--cf=use_bayes 0")


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


class Started:
    """SpamAssassin started before the message exists: it loads its rules (about a second)
    while the caller renders, then reads the message from stdin."""

    def __init__(self, executable: str | None = None) -> None:
        executable = executable or find_spamassassin()
        if not executable:
            raise SpamAssassinError(unavailable())
        # English rule descriptions whatever the locale; no network whatever the config says.
        env = {**os.environ, "LANG": "C", "LC_ALL": "C"}
        try:
            self.process = subprocess.Popen(
                [executable, *COMMAND],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
        except OSError as exc:
            raise SpamAssassinError(f"spamassassin did not run: {exc}") from None

    def output(self, eml: bytes, timeout: float = 60.0) -> tuple[str, str]:
        """(stdout, stderr) of SpamAssassin once it has read and scored the message."""
        try:
            stdout, stderr = self.process.communicate(eml, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.cancel()
            raise SpamAssassinError(f"spamassassin did not run: {exc}") from None
        return stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")

    def cancel(self) -> None:
        """Stop it when there is no message to score (the render failed); no-op once done."""
        if self.process.returncode is not None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def start() -> Started | str:
    """SpamAssassin loading its rules, or one line saying why there is none to run."""
    executable = find_spamassassin()
    if not executable:
        return f"not scored: {unavailable()}"
    try:
        return Started(executable)
    except SpamAssassinError as exc:
        return f"not scored: {exc}"


_early: Started | str | None = None


def start_early() -> None:
    """Start SpamAssassin for the preview to come (newsletter/launch.py); stopped at exit if
    the preview never gets to use it."""
    import atexit

    global _early
    _early = start()
    if isinstance(_early, Started):
        atexit.register(_early.cancel)


def take() -> Started | str:
    """The SpamAssassin started early, or one started now."""
    global _early
    started, _early = _early, None
    return started if started is not None else start()
