"""The `newsletter` command's entry point. `preview` starts SpamAssassin here, before the
CLI's own imports (about 0.2 s): it spends about half a second loading its rules, and does
that while the CLI loads and the issue renders. A finished preview or send exits at once.
"""

from __future__ import annotations

import sys

# Commands that finish with nothing left to do: their process ends without a teardown.
_QUICK_EXIT = frozenset({"preview", "send"})


def main() -> None:
    args = sys.argv[1:]
    asked_help = bool({"--help", "-h"} & set(args))
    if args[:1] == ["preview"] and not asked_help:
        from newsletter import spamproc

        spamproc.start_early()
    from newsletter.cli import main as cli_main

    command = args[0] if args else None
    if command not in _QUICK_EXIT or asked_help or "--serve" in args:
        cli_main()
        return
    try:
        cli_main()
    except SystemExit as exc:
        exit_now(exc.code)
    exit_now(0)


def exit_now(code: int | str | None) -> None:
    """End a finished preview or send without tearing the interpreter down.

    Freeing every module and object a preview loaded (jinja, lxml, cssutils, ...) took
    about 50 ms, a sixth of the whole command; a send frees its connections, ledger and
    buffers as well. Everything they write is closed and committed by then (the ledger,
    the journals, the files, the read-ahead process joined); atexit handlers still run and
    the standard streams are flushed. With another thread still running, the ordinary exit
    waits for it as usual.
    """
    import atexit
    import contextlib
    import os
    import threading

    if threading.active_count() > 1:
        raise SystemExit(code)
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`| head`)
            stream.flush()
    os._exit(status)
