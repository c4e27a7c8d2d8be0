"""Subscriber lists: CSV files in subscribers/, streamed when read, replaced atomically on change.

Reading never loads a whole list: rows stream through csv.reader with a bounded line length.
Every change is a read-modify-write inside a FileLock (`<file>.lock`), written to a temporary
file that is fsynced and renamed over the original, so concurrent writers keep each other's
changes and a crash leaves the old or the new file. Rows this module cannot parse are carried
through a rewrite unchanged, so no edit ever drops a row it did not mean to.
"""

from __future__ import annotations

from newsletter.subscribers.changes import (
    add_subscriber,
    downgrade_status,
    forget,
    remove_subscriber,
    set_status,
    tag_subscriber,
)
from newsletter.subscribers.csvfile import (
    MAX_LINE,
    iter_rows,
    iter_subscribers,
)
from newsletter.subscribers.formats import (
    FORMATS,
    detect_format,
)
from newsletter.subscribers.importing import (
    ImportReport,
    import_file,
    rejects_path_for,
)
from newsletter.subscribers.lists import (
    Page,
    count,
    export,
    page,
    validate,
    validate_file,
)
from newsletter.subscribers.model import (
    COLUMNS,
    HASH_PREFIX,
    STATUSES,
    SUPPRESSION_COLUMNS,
    SUPPRESSIONS,
    InvalidEmail,
    Problem,
    Subscriber,
    display,
    email_key,
    existing_list,
    is_suppressed,
    list_names,
    list_path,
    normalize_email,
    split_name,
    suppression_hash,
    suppressions_path,
)
from newsletter.subscribers.sending import (
    SendableStats,
    Skipped,
    downgrade_many,
    sendable,
)
from newsletter.subscribers.store import (
    LOCK_TIMEOUT,
    write_subscribers,
)
from newsletter.subscribers.suppressions import (
    add_suppression,
    add_suppressions,
    load_suppressed,
    suppression_reason,
    suppression_reasons,
)
from newsletter.subscribers.withdrawn import (
    Fold,
    Withdrawn,
    folding,
)

__all__ = [
    "COLUMNS",
    "FORMATS",
    "Fold",
    "HASH_PREFIX",
    "ImportReport",
    "InvalidEmail",
    "LOCK_TIMEOUT",
    "MAX_LINE",
    "Page",
    "Problem",
    "STATUSES",
    "SUPPRESSIONS",
    "SUPPRESSION_COLUMNS",
    "SendableStats",
    "Skipped",
    "Subscriber",
    "add_subscriber",
    "add_suppression",
    "add_suppressions",
    "count",
    "detect_format",
    "display",
    "downgrade_many",
    "downgrade_status",
    "email_key",
    "existing_list",
    "export",
    "folding",
    "forget",
    "import_file",
    "is_suppressed",
    "iter_rows",
    "iter_subscribers",
    "list_names",
    "list_path",
    "load_suppressed",
    "normalize_email",
    "page",
    "rejects_path_for",
    "remove_subscriber",
    "sendable",
    "set_status",
    "split_name",
    "suppression_hash",
    "suppression_reason",
    "suppression_reasons",
    "suppressions_path",
    "tag_subscriber",
    "validate",
    "validate_file",
    "Withdrawn",
    "write_subscribers",
]
