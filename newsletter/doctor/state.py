"""Which (domain, provider) pairs the doctor has passed, so `send` can say when it never has."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from newsletter.files import PRIVATE_FILE, make_folder

STATE_NAME = "doctor.json"


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # unreadable state only means `send` mentions the doctor again
    return data if isinstance(data, dict) else {}


def has_passed(state_dir: Path, domain: str, provider: str) -> bool:
    passed = _read(state_dir / STATE_NAME).get("passed", {})
    return isinstance(passed, dict) and provider in passed.get(domain.lower(), {})


def record_pass(state_dir: Path, domain: str, provider: str) -> None:
    """Note a passing run (0600, replaced whole: a crash leaves the old file or the new)."""
    path = state_dir / STATE_NAME
    data = _read(path)
    passed = data.setdefault("passed", {})
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    passed.setdefault(domain.lower(), {})[provider] = stamp
    make_folder(state_dir, private=True)
    tmp = path.with_name(f".{STATE_NAME}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)
