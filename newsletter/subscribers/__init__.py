"""Subscriber lists: CSV files in subscribers/, streamed when read, replaced atomically on change.

Reading never loads a whole list: rows stream through csv.reader with a bounded line length.
Every change is a read-modify-write inside a FileLock (`<file>.lock`), written to a temporary
file that is fsynced and renamed over the original, so concurrent writers keep each other's
changes and a crash leaves the old or the new file. Rows this module cannot parse are carried
through a rewrite unchanged, so no edit ever drops a row it did not mean to.
"""

from __future__ import annotations

from newsletter.lazyexports import lazy_exports

# What the package offers -> the module that defines it, imported on first use (PEP 562):
# every message needs `newsletter.subscribers.model`, and importing the package must not
# load the CSV writers, the importer and their file locks with it (`newsletter preview`).
_WHERE = {
    "COLUMNS": "model",
    "FORMATS": "formats",
    "Fold": "withdrawn",
    "HASH_PREFIX": "model",
    "ImportReport": "importing",
    "InvalidEmail": "model",
    "LOCK_TIMEOUT": "store",
    "MAX_LINE": "csvfile",
    "Page": "lists",
    "Problem": "model",
    "STATUSES": "model",
    "SUPPRESSIONS": "model",
    "SUPPRESSION_COLUMNS": "model",
    "SendableStats": "sending",
    "Skipped": "sending",
    "Subscriber": "model",
    "add_subscriber": "changes",
    "add_suppression": "suppressions",
    "add_suppressions": "suppressions",
    "count": "lists",
    "detect_format": "formats",
    "display": "model",
    "downgrade_many": "sending",
    "downgrade_status": "changes",
    "email_key": "model",
    "existing_list": "model",
    "export": "lists",
    "folding": "withdrawn",
    "forget": "changes",
    "import_file": "importing",
    "is_suppressed": "model",
    "iter_rows": "csvfile",
    "iter_subscribers": "csvfile",
    "list_names": "model",
    "list_path": "model",
    "load_suppressed": "suppressions",
    "normalize_email": "model",
    "page": "lists",
    "rejects_path_for": "importing",
    "remove_subscriber": "changes",
    "sendable": "sending",
    "set_status": "changes",
    "split_name": "model",
    "suppression_hash": "model",
    "suppression_reason": "suppressions",
    "suppression_reasons": "suppressions",
    "suppressions_path": "model",
    "tag_subscriber": "changes",
    "validate": "lists",
    "validate_file": "lists",
    "Withdrawn": "withdrawn",
    "write_subscribers": "store",
}

__all__ = list(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
