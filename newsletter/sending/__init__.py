"""Sending an issue: prepare (load and check once) -> plan (against the ledger) -> engine
(workers, provider, retries) -> ledger, with the list read ahead in a process of its own.

`send()` runs all of it. The names below load their module when first used, so that
importing the ledger (`newsletter status`, the web app) does not load the engine.
"""

from __future__ import annotations

from newsletter.lazyexports import lazy_exports

# name -> the module of this package that defines it
_HOME = {
    "send": "flow",
    "Sent": "flow",
    "prepare": "prepared",
    "Prepared": "prepared",
    "ChecksFailed": "prepared",
    "open_ledger": "prepared",
    "Settings": "options",
    "settings_for": "options",
    "OptionError": "options",
    "parse_when": "options",
    "Schedule": "options",
    "schedule": "options",
    "supports": "options",
    "providers_supporting": "options",
    "Plan": "planning",
    "plan": "planning",
    "run": "engine",
    "Summary": "summary",
    "Progress": "summary",
    "LISTED": "summary",
    "Ledger": "ledger",
    "issue_slug": "ledger",
}
__all__ = sorted(_HOME)
__getattr__ = lazy_exports(__name__, _HOME)
