"""``pfxha history --serial X``: which connector, under which epoch, issued (or revoked) X.

    pfxha history --hosts H --cluster C --serial 3f:a2:01 \\
        --service https://svc:8443 --admin-token-file F [--service-ca-file F] \\
        [--log /var/log/pfxha/connector.log ...] [--json]

Reads what the service recorded about the serial (the accepted upload: connector
and epoch; the confirmed revocation: who, under which epoch), the audit events
of the connector logs given with ``--log``, and the leadership of each epoch
from ZooKeeper's history (:mod:`connector.serial_trace` says what each source
is worth). At least one of ``--service`` and ``--log`` is needed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import httpx
from rich.console import Console
from rich.table import Table

from connector.serial_trace import (
    SerialRecord,
    parse_serial,
    records_from_log,
    records_from_service,
    trace_serial,
)
from election import HistoryEntry

__all__ = ["print_trace", "service_records"]


def service_records(
    url: str, serial: int, *, token: str | None, verify: str | bool, timeout: float
) -> list[SerialRecord]:
    """The service's records of ``serial`` (read API); one clear line when it cannot answer."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = f"{url.rstrip('/')}/api/v1/read"
    rows: dict[str, list[dict[str, Any]]] = {}
    try:
        with httpx.Client(headers=headers, verify=verify, timeout=timeout) as http:
            for what in ("requests", "revocations"):
                reply = http.get(f"{base}/{what}", params={"serial": str(serial)})
                if reply.status_code >= 300:
                    raise click.ClickException(
                        f"the service refused the read of {what}: HTTP {reply.status_code} "
                        f"{reply.text[:200]}"
                    )
                rows[what] = reply.json()
    except httpx.HTTPError as exc:
        raise click.ClickException(f"the service at {url} did not answer: {exc}") from None
    return records_from_service(rows["requests"], rows["revocations"])


def log_records(paths: Sequence[Path], serial: int) -> list[SerialRecord]:
    found: list[SerialRecord] = []
    for path in paths:
        with path.open(errors="replace") as lines:
            found += records_from_log(lines, serial, str(path))
    return found


def print_trace(
    serial_text: str,
    history: Sequence[HistoryEntry],
    *,
    service: list[SerialRecord],
    logs: Sequence[Path],
    as_json: bool,
) -> None:
    serial = parse_serial(serial_text)
    records = [*service, *log_records(logs, serial)]
    traced = trace_serial(records, history)
    if as_json:
        click.echo(json.dumps({"serial": str(serial), "records": [t.to_dict() for t in traced]}))
        return
    if not traced:
        raise click.ClickException(f"serial {serial}: no record in the sources given")
    table = Table(
        "source",
        "what",
        "connector",
        "epoch",
        "at",
        "leader (history)",
        "from",
        "to",
        "reason",
        title=f"serial {serial} (hex {serial:x})",
    )
    for t in traced:
        r, lead = t.record, t.leadership
        table.add_row(
            r.source,
            r.what,
            r.connector or "-",
            str(r.epoch) if r.epoch is not None else "-",
            r.at or "-",
            lead.name if lead else "-",
            lead.since if lead else "-",
            (lead.to or "still leads?") if lead else "-",
            lead.reason if lead else t.note,
            style="bold yellow" if t.note else "",
        )
    console = Console()
    console.print(table)
    for t in traced:
        if t.note and t.leadership is not None:
            console.print(f"note: {t.record.source} {t.record.what}: {t.note}")
