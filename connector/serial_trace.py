"""Who issued (or revoked) serial X, under which leadership: ``pfxha history --serial``.

    serial = parse_serial("3f:a2:01")                     # -> 4170241 (also decimal, 0x...)
    records = records_from_service(requests, revocations) # what the service recorded
    records += records_from_log(lines, serial, "c1.log")  # the connector's own events
    for traced in trace_serial(records, read_history(client, "prod")):
        traced.record.connector, traced.record.epoch, traced.leadership, traced.note

Three sources, each saying a different thing:

- **the service** (``GET /api/v1/read/requests?serial=`` and ``/revocations?serial=``):
  the connector whose upload it accepted and the epoch that upload was fenced
  by; who confirmed the revocation, under which epoch. Authoritative for
  delivery: an upload under a stale epoch is refused (409), so this epoch is
  one that really led.
- **the connector's log** (JSON lines, events of
  :data:`connector.agent.events.AUDIT_EVENTS`): every issuance and revocation
  step, the ones the service never saw too (a certificate revoked because its
  upload was refused, an orphan revoked by reconciliation).
- **ZooKeeper's history** (``/pfxha/<cluster>/history``): the leadership of
  that epoch, member, from, to and reason. Only the last
  :data:`election.HISTORY_LENGTH` are kept: an older epoch has no entry.

:func:`trace_serial` joins each record with its leadership and notes a member
that differs from the record's connector (it cannot happen while the epoch
fences; a note means a record to look at).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from connector.agent.events import AUDIT_EVENTS, Event
from election import HistoryEntry

__all__ = [
    "SerialRecord",
    "TracedRecord",
    "leadership_of",
    "parse_serial",
    "records_from_log",
    "records_from_service",
    "trace_serial",
]

_AUDIT_IDS = {int(e): e for e in AUDIT_EVENTS}


def parse_serial(text: str) -> int:
    """A serial as an operator pastes it: decimal, ``0x`` hex, or colon-separated hex."""
    value = text.strip().lower()
    try:
        if value.startswith("0x"):
            return int(value[2:], 16)
        if ":" in value:
            return int(value.replace(":", ""), 16)
        return int(value, 10)
    except ValueError:
        raise ValueError(f"not a serial number: {text!r} (decimal, 0x hex or aa:bb:cc)") from None


def _as_serial(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return parse_serial(value)
        except ValueError:
            return None
    return None


def _as_epoch(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class SerialRecord:
    """One thing a source says happened to the serial: what, by whom, under which epoch."""

    source: str  # "service", or "log <file>"
    what: str  # "uploaded", "revoked", or the event's name (cert_issued, orphan_revoked, ...)
    connector: str | None
    epoch: int | None
    at: str | None
    detail: str = ""


@dataclass(frozen=True)
class TracedRecord:
    """A record with the leadership of its epoch from ZooKeeper's history (None: not kept)."""

    record: SerialRecord
    leadership: HistoryEntry | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self.record)
        out["leadership"] = self.leadership.to_dict() if self.leadership else None
        out["note"] = self.note
        return out


def records_from_log(lines: Iterable[str], serial: int, source: str) -> list[SerialRecord]:
    """The audit events about ``serial`` among a connector's JSON log lines (others skipped)."""
    found = []
    for line in lines:
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        event = _AUDIT_IDS.get(data.get("event_id"))  # type: ignore[arg-type]
        if event is None or _as_serial(data.get("serial")) != serial:
            continue
        connector = data.get("connector")
        detail = ", ".join(
            f"{k}={data[k]}" for k in ("request_id", "ca", "reason", "why") if data.get(k)
        )
        found.append(
            SerialRecord(
                source=f"log {source}",
                what=Event(event).name.lower(),
                connector=connector if isinstance(connector, str) else None,
                epoch=_as_epoch(data.get("epoch")),
                at=data.get("ts") if isinstance(data.get("ts"), str) else None,
                detail=detail,
            )
        )
    return found


def records_from_service(
    requests: Sequence[Mapping[str, Any]], revocations: Sequence[Mapping[str, Any]]
) -> list[SerialRecord]:
    """What the service recorded: the accepted upload(s), the confirmed revocation(s)."""
    found = []
    for row in requests:
        found.append(
            SerialRecord(
                source="service",
                what="uploaded",
                connector=row.get("connector"),
                epoch=_as_epoch(row.get("epoch")),
                at=row.get("issued_at"),
                detail=f"request_id={row.get('id')}, ca={row.get('ca_name')}, "
                f"state={row.get('state')}",
            )
        )
    for row in revocations:
        done = row.get("state") == "done"
        found.append(
            SerialRecord(
                source="service",
                what="revoked" if done else f"revocation {row.get('state')}",
                connector=row.get("done_by"),
                epoch=_as_epoch(row.get("done_epoch")),
                at=row.get("done_at") or row.get("created_at"),
                detail=f"reason={row.get('reason')}, event={row.get('event')}",
            )
        )
    return found


def leadership_of(history: Sequence[HistoryEntry], epoch: int) -> HistoryEntry | None:
    """The kept leadership of ``epoch``, or None (older than the kept history, or never)."""
    return next((entry for entry in history if entry.epoch == epoch), None)


def trace_serial(
    records: Sequence[SerialRecord], history: Sequence[HistoryEntry]
) -> list[TracedRecord]:
    """Each record with its leadership, and why it does not fit when it does not."""
    traced = []
    oldest = history[0].epoch if history else None
    for record in records:
        if record.epoch is None:
            traced.append(TracedRecord(record, None, "the record names no epoch"))
            continue
        entry = leadership_of(history, record.epoch)
        if entry is None:
            why = (
                f"epoch {record.epoch} is older than the kept history (from {oldest})"
                if oldest is not None and record.epoch < oldest
                else f"epoch {record.epoch} is not in ZooKeeper's history"
            )
            traced.append(TracedRecord(record, None, why))
        elif record.connector is not None and entry.name != record.connector:
            note = f"the history says epoch {entry.epoch} was {entry.name}'s"
            traced.append(TracedRecord(record, entry, note))
        else:
            traced.append(TracedRecord(record, entry))
    return traced
