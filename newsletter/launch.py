"""The `newsletter` command's entry point. `preview` starts SpamAssassin here, before the
CLI's own imports (about 0.3 s): it spends about a second loading its rules, and does that
while the CLI loads and the issue renders.
"""

from __future__ import annotations

import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["preview"] and not {"--help", "-h"} & set(args):
        from newsletter import spamproc

        spamproc.start_early()
    from newsletter.cli import main as cli_main

    cli_main()
