"""Leadership history: every epoch, who held it, since when, why (``pfxha history``).

    entries = read_history(client, "lab")        # oldest first, ``to`` filled in
    [(e.epoch, e.name, e.since, e.to, e.reason) for e in entries]

Each leader writes its entry as the persistent sequential node
``/pfxha/<cluster>/history/h-<seq>`` in the very transaction that takes (or
resumes with) its epoch, so an entry exists iff that leadership happened, and
sequence order is epoch order. The new leader then trims everything older than
the last :data:`HISTORY_LENGTH` entries. Why sequential nodes and not one JSON
ring: a ring would have to be read before every take (a round trip on the
failover path) and rewritten whole by a compare-and-set that any concurrent
writer makes fail; a create needs no read and cannot conflict.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from dataclasses import replace

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from election._model import HistoryEntry
from election._paths import ClusterPaths

__all__ = ["HISTORY_LENGTH", "history_seq", "read_history"]

# How many leaderships ZooKeeper keeps (about 100 bytes each).
HISTORY_LENGTH = 100

_ENTRY = re.compile(r"^h-(\d{10})$")


def history_seq(node: str) -> int | None:
    """The sequence number of a history node's name, or None if it is not one."""
    match = _ENTRY.match(node)
    return int(match[1]) if match else None


def read_history(client: KazooClient, cluster: str) -> tuple[HistoryEntry, ...]:
    """Every kept leadership of ``cluster``, oldest first (pipelined reads).

    Entries are untrusted input: one that does not parse is left out, and one whose
    epoch is not above the previous entry's is left out too (the history is strictly
    increasing by construction; anything else was written by someone else).
    """
    paths = ClusterPaths(cluster)
    try:
        children = client.get_children(paths.history)
    except NoNodeError:
        return ()
    nodes = sorted(c for c in children if history_seq(c) is not None)
    pending = [client.get_async(paths.history_entry(n)) for n in nodes]
    entries: list[HistoryEntry] = []
    for result in pending:
        with contextlib.suppress(NoNodeError):  # trimmed meanwhile
            entry = HistoryEntry.parse(result.get()[0])
            if entry is not None and (not entries or entry.epoch > entries[-1].epoch):
                entries.append(entry)
    ended = [replace(e, to=n.since) for e, n in itertools.pairwise(entries)]
    return (*ended, *entries[len(ended) :])
