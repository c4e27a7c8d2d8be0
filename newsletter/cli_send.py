"""`newsletter send` and `newsletter status`."""

from __future__ import annotations
