"""The list read and the messages built ahead of the sending threads, in a process of their own.

A send is one process of threads sharing one interpreter lock: every microsecond spent
streaming the CSV, checking a row and building its message is a microsecond the threads
talking to the provider cannot run. On Linux, a forked child process does that part on
another core and hands finished messages over a pipe in chunks, in list order. The parent
keeps everything that decides who is mailed: it checks each chunk against the ledger, writes
every ledger row and talks to the provider. The child only reads (the list, the suppressions,
the rendered issue it inherited) and never touches the ledger, the lock or the terminal.

Elsewhere (macOS, Windows) the same chunks are built in the calling thread: `ReadAhead`
is both.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import signal
import sys
import traceback
from collections.abc import Callable, Iterator

from newsletter.errors import NewsletterError, SendError, TemplateError
from newsletter.message import OutgoingMessage
from newsletter.subscribers.sending import Skipped

CHUNK = 500  # recipients per hand-over (and per ledger lookup)

# One recipient: (key, email, their message, the reason it could not be built, or their row
# of the list when it was skipped as malformed).
Built = tuple[str, str, OutgoingMessage | str | Skipped]


def build(prepared, dropped) -> Iterator[list[Built]]:
    """The recipients' messages in chunks, in list order, built in this thread."""
    campaign = prepared.campaign
    recipients = prepared.recipients(dropped)
    while chunk := list(itertools.islice(recipients, CHUNK)):
        out: list[Built] = []
        for recipient in chunk:
            key = recipient.key  # computed once: for a test recipient the property works it out
            if type(recipient) is Skipped:
                out.append((key, recipient.email, recipient))
                continue
            try:
                fields = recipient.merge_fields()
                message = campaign.message(recipient.email, key, fields, recipient.name)
            except TemplateError as exc:
                out.append((key, recipient.email, str(exc)))
            else:
                out.append((key, recipient.email, message))
        yield out


def can_fork() -> bool:
    """Linux only: macOS has fork, but system libraries there are not safe to use after it."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


class ReadAhead:
    """`build`'s chunks: from a forked child when `ahead` on Linux, else from this thread.

    Enter it before starting any thread, so the child is a copy of a process with one thread;
    leaving it (at the end, a stop, Ctrl-C or an error) ends the child. `dropped`, a
    SendableStats, is complete once every chunk has been read.
    """

    def __init__(self, prepared, dropped, *, ahead: bool = True) -> None:
        self.prepared = prepared
        self.dropped = dropped
        # A test send's few addresses are not worth a process.
        self.forked = ahead and can_fork() and not prepared.is_test
        self._child = self._reader = None

    def __enter__(self) -> ReadAhead:
        if self.forked:
            context = multiprocessing.get_context("fork")
            self._reader, writer = context.Pipe(duplex=False)
            self._child = context.Process(
                target=_child,
                args=(self.prepared, self._reader, writer),
                name="newsletter-read-ahead",
                daemon=True,
            )
            self._child.start()  # flushes stdout and stderr first: nothing is written twice
            writer.close()
        return self

    def __exit__(self, *exc) -> None:
        if self._child is not None:
            self._reader.close()
            if self._child.is_alive():
                self._child.terminate()
            self._child.join(5)

    def __iter__(self) -> Iterator[list[Built]]:
        if self._child is None:
            yield from build(self.prepared, self.dropped)
            return
        campaign = self.prepared.campaign
        while True:
            try:
                kind, payload = self._reader.recv()
            # OSError: killed in the middle of writing a chunk ("got end of file during message").
            except (EOFError, OSError):
                self._child.join(5)
                code = self._child.exitcode
                how = f"killed by signal {-code}" if code and code < 0 else f"exit code {code}"
                raise SendError(
                    f"the process reading the subscriber list stopped unexpectedly ({how}); "
                    "what it had not handed over was not sent: run the send again to go on"
                ) from None
            if kind == "chunk":
                yield [(key, email, _rebuilt(campaign, key, email, b)) for key, email, b in payload]
            elif kind == "end":
                vars(self.dropped).update(vars(payload))
                return
            else:
                raise payload


def _rebuilt(campaign, key: str, email: str, flat) -> OutgoingMessage | str | Skipped:
    """The other end of `_flat`: the message again, or the reason it could not be built."""
    if type(flat) is not tuple:  # a reason, or a Skipped row: as it was
        return flat
    name, message_id, url, mailto, values, ident, ahead = flat
    return OutgoingMessage(
        campaign, email, name, key, message_id, url, mailto, values, ident, ahead
    )


def _flat(item: Built, ahead: Ahead) -> tuple:
    """What crosses the pipe for one recipient: plain values, never the campaign.

    (key, email, the reason it could not be built or the Skipped row) or (key, email, the
    message's parts, and what the provider's encode_ahead made of it).
    """
    key, email, m = item
    if not isinstance(m, OutgoingMessage):
        return item
    parts = (
        m.to_name,
        m.message_id,
        m.unsubscribe_url,
        m.unsubscribe_mailto,
        m.values,
        m.recipient_id,
        ahead(m),
    )
    return key, email, parts


Ahead = Callable[[OutgoingMessage], "tuple[str, object] | None"]


def _ahead(provider: str) -> Ahead:
    """The provider's encode_ahead as OutgoingMessage.ahead wants it: (name, value) or None.

    A recipient it fails for gets None: the provider's `plan` works them out again, meets
    the same error and reports it as that recipient's, as it does without a read-ahead.
    """
    from newsletter.providers import get_provider_class

    encode = get_provider_class(provider).encode_ahead

    def ahead(message: OutgoingMessage) -> tuple[str, object] | None:
        try:
            value = encode(message)
        except Exception:  # noqa: BLE001 - reported by plan, in the parent
            return None
        return None if value is None else (provider, value)

    return ahead


def _child(prepared, reader, writer) -> None:
    """In the forked process: build every chunk and send it to the parent, then the counts."""
    reader.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    from newsletter.subscribers import SendableStats

    try:
        dropped = SendableStats()
        ahead = _ahead(prepared.provider)
        for chunk in build(prepared, dropped):
            writer.send(("chunk", [_flat(item, ahead) for item in chunk]))
        writer.send(("end", dropped))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent stopped reading (it stopped, or it died): nothing more to do
    except NewsletterError as exc:
        _tell(writer, exc)
    except BaseException as exc:  # noqa: BLE001 - a bug: the parent reports it
        detail = "".join(traceback.format_exception_only(exc)).strip()
        _tell(writer, SendError(f"reading the subscriber list failed: {detail}"))
    finally:
        writer.close()


def _tell(writer, error: NewsletterError) -> None:
    """Hand an error to the parent, quietly: it may have stopped listening already."""
    try:
        writer.send(("error", error))
    except (BrokenPipeError, ConnectionResetError):
        pass
    except Exception:  # noqa: BLE001 - it would not pickle: send its text
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            writer.send(("error", SendError(str(error))))
