"""Importing an export into a list: rows are checked, merged under the lock, rejects kept."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from newsletter.errors import SubscriberError
from newsletter.subscribers.csvfile import Columns, open_list, read_csv, status_of
from newsletter.subscribers.formats import (
    FORMAT_RULES,
    FORMATS,
    STANDARD_TARGETS,
    ImportPlan,
    column_slug,
    detect_format,
    plan_columns,
)
from newsletter.subscribers.model import (
    COLUMNS,
    HEADER_UNSAFE,
    STATUS_RANK,
    SUPPRESSIONS,
    SURROGATE,
    TAGS,
    InvalidEmail,
    Problem,
    Subscriber,
    checked_tags,
    display,
    email_key,
    format_tags,
    list_path,
    normalize_email,
    parse_tags,
    utc_now,
)
from newsletter.subscribers.store import Writer, atomic_write, rewrite, row_values
from newsletter.subscribers.suppressions import (
    add_suppressions,
    suppression_reason,
    suppression_reasons,
)


@dataclass(frozen=True)
class ImportReport:
    list_name: str
    format: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    suppressed: int = 0  # bounced/complained/blocked rows added to the suppression file
    rejects_path: Path | None = None
    problems: tuple[Problem, ...] = ()
    ignored_columns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Incoming:
    line: int
    key: str
    email: str
    name: str
    status: str
    suppress: str  # reason to add to the suppression file, or ""
    subscribed_at: str
    source: str
    fields: Mapping[str, str]
    tags: tuple[str, ...] = ()  # the file's tags and those of `--tag`
    extra_tags: tuple[str, ...] = ()  # those of `--tag` only


class _Rejected(Exception):
    """An import row that cannot be taken; str() says why."""


def _incoming(
    plan: ImportPlan,
    line: int,
    values: list[str],
    deliverability: bool,
    existing: Mapping[str, str],
    extra_tags: tuple[str, ...] = (),
) -> _Incoming:
    def first(target: str, strip: bool = True) -> str:
        for i in plan.targets.get(target, ()):
            if values[i].strip():
                return values[i].strip() if strip else values[i]
        return ""

    email = first("email")
    if not email:
        raise _Rejected("missing email address")
    try:
        key = normalize_email(email, check_deliverability=deliverability).casefold()
    except InvalidEmail as exc:
        raise _Rejected(f"invalid email address {email!r}: {exc}") from None
    fields: dict[str, str] = {}
    for i in plan.json:
        fields.update(_json_fields(values[i], existing))
    for target in plan.targets:
        if target not in STANDARD_TARGETS and (value := first(target, strip=False)):
            fields[target] = value
    # A `tags` column (ours, Buttondown's, Mailchimp's TAGS) holds tags, not a field.
    cell = next((fields.pop(name) for name in list(fields) if name.lower() == TAGS), "")
    tags = tuple(dict.fromkeys((*parse_tags(cell), *extra_tags)))
    name = first("name") or " ".join(
        part
        for part in (fields.get("first_name", "").strip(), fields.get("last_name", "").strip())
        if part
    )
    if HEADER_UNSAFE.search(name):
        raise _Rejected("name contains a line break or control character")
    status, suppress = plan.default
    if plan.status is not None:
        index, known = plan.status
        raw = values[index].strip().lower()
        if raw not in known:
            expected = ", ".join(sorted(v for v in known if v))
            raise _Rejected(f"unknown status {raw!r} for a {plan.format} file ({expected})")
        status, suppress = known[raw]
    subscribed_at = first("subscribed_at")
    if subscribed_at:
        try:
            subscribed_at = _iso(subscribed_at)
        except ValueError:
            raise _Rejected(f"subscribed_at {subscribed_at!r} is not a date") from None
    return _Incoming(
        line=line,
        key=key,
        email=email,
        name=name,
        status=status,
        suppress=suppress,
        subscribed_at=subscribed_at,
        source=first("source") or f"import:{plan.format}",
        fields=fields,
        tags=tags,
        extra_tags=extra_tags,
    )


def _json_fields(text: str, existing: Mapping[str, str]) -> dict[str, str]:
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        raise _Rejected("attributes are not valid JSON") from None
    if not isinstance(data, dict):
        raise _Rejected("attributes are not a JSON object")
    fields = {}
    for key, value in data.items():
        slug = column_slug(key)
        if not slug:
            continue
        name = existing.get(slug) or (f"attr_{slug}" if slug in COLUMNS else slug)
        if value is None or value == "":
            continue
        text_value = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if "\0" in text_value or SURROGATE.search(text_value):
            raise _Rejected(f"attribute {key!r} contains a NUL or an unpaired surrogate")
        fields[name] = text_value
    return fields


_GO_TIME = re.compile(r"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d+))? ([+-]\d\d)(\d\d)(?: \S+)*")


def _iso(value: str) -> str:
    """A service's timestamp as ISO 8601; listmonk writes Go's time.String() format."""
    match = _GO_TIME.fullmatch(value)
    if match:
        date, clock, fraction, hours, minutes = match.groups()
        micro = f".{(fraction or '0')[:6]:0<6}" if fraction else ""
        value = f"{date}T{clock}{micro}{hours}:{minutes}"
    return datetime.fromisoformat(value).isoformat()


def import_file(
    subscribers_dir: Path,
    list_name: str,
    file: Path,
    *,
    format: str = "auto",
    mapping: Mapping[str, str] | None = None,
    update: bool = False,
    check_deliverability: bool = False,
    tags: Sequence[str] = (),
) -> ImportReport:
    """Merge an export (ours, Mailchimp, Substack, Buttondown, listmonk) into a list.

    New addresses are added; existing rows only become less mailable (an unsubscribe, bounce or
    complaint in the file is applied) unless `update`, which also refreshes names and fields.
    Suppressed addresses are refused; rows that cannot be taken go to FILE.rejects.csv.
    `tags` are added to every row the file holds, new or already in the list.
    """
    extra_tags = checked_tags(tags)
    check_format(format)
    path = list_path(subscribers_dir, list_name)
    if path.exists() and file.resolve() == path.resolve():
        raise SubscriberError(f"{display(file)} is the list itself; nothing to import")
    got = read_import(
        file, format, mapping, _custom_columns(path), check_deliverability, extra_tags
    )
    counts = _merge_into(subscribers_dir, path, got.rows, got.rejects, update)
    suppressed = add_suppressions(subscribers_dir, got.suppressions())
    return got.report(list_name, file, counts, suppressed)


def check_format(format: str) -> None:
    if format not in FORMATS:
        raise SubscriberError(f"unknown format {format!r} (expected one of: {', '.join(FORMATS)})")


@dataclass
class ImportRows:
    """An export read and checked, before it is merged into a list (files or PostgreSQL)."""

    format: str
    ignored: tuple[str, ...]
    rows: dict[str, _Incoming]  # key -> the row to merge (the first one with the key)
    rejects: dict[int, str]  # line -> why; the merge adds the suppressed ones
    where: str

    def suppressions(self) -> list[tuple[str, str]]:
        return [(new.email, new.suppress) for new in self.rows.values() if new.suppress]

    def report(
        self, list_name: str, file: Path, counts: tuple[int, int, int], suppressed: int
    ) -> ImportReport:
        rejects = self.rejects
        return ImportReport(
            list_name=list_name,
            format=self.format,
            added=counts[0],
            updated=counts[1],
            unchanged=counts[2],
            rejected=len(rejects),
            suppressed=suppressed,
            rejects_path=_write_rejects(file, rejects) if rejects else None,
            problems=tuple(
                Problem(self.where, line, reason) for line, reason in sorted(rejects.items())
            ),
            ignored_columns=self.ignored,
        )


def read_import(
    file: Path,
    format: str,
    mapping: Mapping[str, str] | None,
    existing: Mapping[str, str],
    check_deliverability: bool,
    extra_tags: tuple[str, ...] = (),
) -> ImportRows:
    """Read and check every row of an export; `existing` maps slugs to the list's columns;
    `extra_tags` (those of `--tag`) go on every row."""
    rejects: dict[int, str] = {}
    incoming: dict[str, _Incoming] = {}
    with read_csv(file, sniff=True) as src:
        fmt = FORMAT_RULES[detect_format(src.header) if format == "auto" else format]
        plan = plan_columns(fmt, src.header, mapping or {}, existing)
        if "email" not in plan.targets:
            raise SubscriberError(
                f"no email column (columns: {', '.join(src.header)}); "
                "name it with --map COLUMN=email",
                where=f"{src.where}:{src.header_line}",
            )
        rows = 0
        for line, values in src.rows:
            rows += 1
            try:
                new = _incoming(plan, line, values, check_deliverability, existing, extra_tags)
            except _Rejected as exc:
                rejects[line] = str(exc)
                continue
            first = incoming.setdefault(new.key, new)
            if first is not new:
                rejects[line] = f"duplicate of line {first.line}"
                if STATUS_RANK[new.status] > STATUS_RANK[first.status]:
                    # The same address twice: the less mailable status wins.
                    incoming[new.key] = replace(first, status=new.status, suppress=new.suppress)
        if not rows:
            raise SubscriberError("no rows after the header; nothing to import", where=src.where)
        where = src.where
    return ImportRows(fmt.name, plan.ignored, incoming, rejects, where)


def suppressed_message(reason: str) -> str:
    """Why an import refuses a new row whose address is suppressed."""
    if reason == "erased":
        return "erased with `forget`; it cannot be imported again"
    return f"suppressed ({reason}) in subscribers/{SUPPRESSIONS}.csv"


def _custom_columns(path: Path) -> dict[str, str]:
    """Slug -> name of the list's custom columns, so imported fields land in them."""
    if not path.is_file():
        return {}
    with open_list(path) as src:
        return custom_targets(src.columns.names)


def custom_targets(columns: Iterable[str]) -> dict[str, str]:
    """Slug -> name of a header's custom columns (not email, name, status, ...)."""
    return {column_slug(name): name for name in columns if name.lower() not in COLUMNS}


def _merge_into(
    subscribers_dir: Path,
    path: Path,
    incoming: dict[str, _Incoming],
    rejects: dict[int, str],
    update: bool,
) -> tuple[int, int, int]:
    stamp = utc_now()
    added = 0
    results: dict[str, bool] = {}  # key -> whether any row with it changed

    def edit(cols, rows):
        nonlocal added
        reasons = suppression_reasons(subscribers_dir)  # under the list's lock, as in add
        e = cols.index("email")
        for _, values in rows:
            key = email_key(values[e])
            new = incoming.get(key)
            if new is not None:
                changed = _merge_row(cols, values, new, update, stamp)
                results[key] = results.get(key, False) or changed
            yield values
        for key, new in incoming.items():
            if key in results:
                continue
            reason = suppression_reason(key, reasons)
            if reason:
                rejects[new.line] = suppressed_message(reason)
                continue
            added += 1
            yield row_values(
                cols,
                Subscriber(
                    email=new.email,
                    name=new.name,
                    status=new.status,
                    subscribed_at=new.subscribed_at,
                    updated_at=stamp,
                    source=new.source,
                    fields=new.fields,
                    tags=new.tags,
                ),
            )
        return added > 0 or any(results.values())

    custom = dict.fromkeys(name for new in incoming.values() for name in new.fields)
    if any(new.tags for new in incoming.values()):
        custom[TAGS] = None
    rewrite(path, (*COLUMNS, *custom), edit)
    updated = sum(results.values())
    return added, updated, len(results) - updated


def _merge_row(cols: Columns, values: list[str], new: _Incoming, update: bool, stamp: str) -> bool:
    """Apply an imported row to an existing one; statuses only move away from 'subscribed'."""
    s, sa = cols.index("status"), cols.index("subscribed_at")
    current = status_of(values[s])
    changed = False
    if current in STATUS_RANK:
        target = current
        if STATUS_RANK[new.status] > STATUS_RANK[current]:
            target = new.status
        elif update and current == "pending" and new.status == "subscribed":
            target = "subscribed"
        if target != current:
            values[s] = target
            values[cols.index("source")] = new.source
            if target == "subscribed" and not values[sa].strip():
                values[sa] = new.subscribed_at or stamp
            changed = True
    if update:
        updates = {"name": new.name, **new.fields}
        if not values[sa].strip():
            updates["subscribed_at"] = new.subscribed_at
        for column, value in updates.items():
            i = cols.index(column)
            if value and values[i] != value:
                values[i] = value
                changed = True
    # The file's tags refresh a row as its fields do (with `update`); `--tag` always applies.
    adding = new.tags if update else new.extra_tags
    if adding:
        t = cols.index(TAGS)
        before = parse_tags(values[t])
        after = tuple(dict.fromkeys((*before, *adding)))
        if after != before:
            values[t] = format_tags(after)
            changed = True
    if changed:
        values[cols.index("updated_at")] = stamp
    return changed


def rejects_path_for(file: Path) -> Path:
    """Where an import writes the rows it could not take: next to the input."""
    return file.with_name(f"{file.stem}.rejects.csv")


def _write_rejects(file: Path, rejects: Mapping[int, str]) -> Path:
    target = rejects_path_for(file)
    with read_csv(file, sniff=True) as src, atomic_write(target, bom=src.bom) as out:
        writer = Writer(out.file, src.newline)
        writer.writerow(["rejected_line", "rejected_reason", *src.header])
        for line, values in src.rows:
            if line in rejects:
                writer.writerow([str(line), rejects[line], *values[: len(src.header)]])
    return target
