"""The pieces of `newsletter serve`: request guards, pages, address lookup, double opt-in, archive."""
