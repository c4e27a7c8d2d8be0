"""`python -m newsletter`: the same command as `newsletter`."""

from newsletter.launch import main

main()
