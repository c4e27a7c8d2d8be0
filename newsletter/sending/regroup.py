"""Unknown recipients sent again in the batches they last went in (--resend-unknown).

With an idempotent provider (Resend), the same recipients of the same send make the same
request key, and the provider answers a repeated key without delivering again: sending the
unknown recipients of one earlier batch together, and nobody else with them, is what makes
--resend-unknown safe within the provider's window.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Mapping

from newsletter.message import OutgoingMessage


def regroup(
    batches: Iterable[list[OutgoingMessage]], groups: Mapping[str, Hashable]
) -> Iterator[list[OutgoingMessage]]:
    """The same messages; those named in `groups` ({key: earlier batch}) batched as before."""
    if not groups:
        yield from batches
        return
    sizes = Counter(groups.values())
    held: dict[Hashable, list[OutgoingMessage]] = {}
    for batch in batches:
        rest = []
        for message in batch:
            group = groups.get(message.key)
            if group is None:
                rest.append(message)
                continue
            members = held.setdefault(group, [])
            members.append(message)
            if len(members) == sizes[group]:
                yield held.pop(group)
        if rest:
            yield rest
    # Members that left the list meanwhile: the rest of their batch goes as it is.
    yield from held.values()
