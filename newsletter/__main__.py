"""`python -m newsletter`: the same command as `newsletter`."""

from newsletter.cli import main

main()
