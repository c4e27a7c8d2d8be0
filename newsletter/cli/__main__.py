"""`python -m newsletter.cli`: the same command as `newsletter`."""

from newsletter.cli import main

main()
