"""One exception hierarchy; the CLI maps each class to an exit code in one place."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    CHECKS_FAILED = 1  # preview/validate found errors (or warnings with --strict)
    USAGE = 2  # bad command-line usage (typer's own code)
    CONFIG = 3  # newsletter.toml or environment is wrong
    INPUT = 4  # an issue, template or subscriber file is wrong
    PROVIDER = 5  # the mail provider refused or could not be reached
    INCOMPLETE = 6  # a send finished with failed or unknown recipients
    NOT_READY = 7  # `newsletter doctor`: a rule about the sending domain failed
    INTERRUPTED = 130


class NewsletterError(Exception):
    """Root of every error a user can cause; str() is one line that says what to fix."""

    exit_code: ExitCode = ExitCode.INPUT

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class UsageError(NewsletterError):
    """Options that cannot work together, or a question that needs a terminal to be asked."""

    exit_code = ExitCode.USAGE


class ConfigError(NewsletterError):
    """newsletter.toml, an environment variable or a secret is missing or wrong."""

    exit_code = ExitCode.CONFIG


class IssueError(NewsletterError):
    """An issue file cannot be read or parsed."""


class TemplateError(NewsletterError):
    """A template is missing, does not compile, or uses an undefined variable."""


class SubscriberError(NewsletterError):
    """A subscriber list or suppression file is malformed or cannot be changed."""


class ProviderError(NewsletterError):
    """The mail provider refused a request or could not be reached."""

    exit_code = ExitCode.PROVIDER


class StoreError(NewsletterError):
    """The PostgreSQL store cannot be reached, is at another schema version, or refused a change."""

    exit_code = ExitCode.CONFIG


class SendError(NewsletterError):
    """A send cannot start or cannot go on."""

    exit_code = ExitCode.INCOMPLETE


class OutputError(NewsletterError):
    """A file or folder a command writes cannot be created (e.g. a file is in the way)."""
