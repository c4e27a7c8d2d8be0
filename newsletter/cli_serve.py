"""`newsletter serve` and `newsletter subscribers sync`."""

from __future__ import annotations
