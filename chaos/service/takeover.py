"""What a new leader reads first: the intents older epochs left in flight, and the
keys of recent intents given up on or delivered uncertainly.

    intents = stale_intents_of(tx, epoch)   # [IntentOut], oldest request first
    keys = superseded_intents_of(tx, now=store.clock(), within_s=30.0)  # [SupersededOut]
    kept = uncertain_deliveries_of(tx, now=store.clock(), within_s=30.0)  # [UncertainOut]

Served by ``/intents/stale`` and, with the takeover's first poll, in the answer
to ``/register`` (one round trip instead of three between "elected" and the
first certificate; see docs/chaos.md, "Takeover across a WAN").
"""

from __future__ import annotations

import sqlite3

from chaos.service import models as m

__all__ = ["stale_intents_of", "superseded_intents_of", "uncertain_deliveries_of"]


def stale_intents_of(tx: sqlite3.Connection, epoch: int) -> list[m.IntentOut]:
    """Requests in flight under an intent of an epoch below ``epoch``."""
    rows = tx.execute(
        "SELECT * FROM requests WHERE state = 'in_flight' AND intent_epoch < ? ORDER BY seq",
        (epoch,),
    ).fetchall()
    return [
        m.IntentOut(
            request_id=r["id"],
            epoch=r["intent_epoch"],
            public_key_pem=r["intent_public_key_pem"],
            spki_sha256=r["intent_spki_sha256"],
            cancelled=r["cancelled"] is not None,
        )
        for r in rows
    ]


def superseded_intents_of(
    tx: sqlite3.Connection, *, now: float, within_s: float
) -> list[m.SupersededOut]:
    """Intents recorded in the last ``within_s`` seconds that are no longer their
    request's current one (requeued, maybe issued anew under another key).

    No certificate for such a key can be delivered any more, but a sign request
    sent under it may still reach a CA: whoever gave it up watches for that in its
    memory, and a new leader is told these keys so that the watch outlives the
    process that kept it (connector/agent/late.py). The window counts from the
    intent, which was recorded before its sign request was sent.
    """
    if within_s <= 0:
        return []
    rows = tx.execute(
        "SELECT i.request_id, i.epoch, i.public_key_pem, i.at_s FROM intents i "
        "JOIN requests r ON r.id = i.request_id "
        "WHERE i.at_s >= ? AND i.public_key_pem IS NOT NULL "
        "AND (r.intent_spki_sha256 IS NULL OR r.intent_spki_sha256 != i.spki_sha256) "
        "ORDER BY i.id",
        (now - within_s,),
    ).fetchall()
    return [
        m.SupersededOut(
            request_id=r["request_id"],
            epoch=r["epoch"],
            public_key_pem=r["public_key_pem"],
            age_s=max(0.0, now - float(r["at_s"])),
        )
        for r in rows
    ]


def uncertain_deliveries_of(
    tx: sqlite3.Connection, *, now: float, within_s: float
) -> list[m.UncertainOut]:
    """Current intents of the last ``within_s`` seconds whose certificate was delivered
    after another CA's answer for the same key was lost (the upload said ``uncertain``).

    That CA may still record a certificate for the key; only the delivered one may stay
    valid. The connector that delivered watches the key with the delivered certificate
    kept; a new leader is told it (with ``ca_name`` and ``serial``) so that the watch
    outlives that connector, as :func:`superseded_intents_of` does for keys given up on.
    """
    if within_s <= 0:
        return []
    rows = tx.execute(
        "SELECT i.request_id, i.epoch, i.public_key_pem, i.at_s, r.ca_name, r.serial "
        "FROM intents i JOIN requests r ON r.id = i.request_id "
        "WHERE i.at_s >= ? AND i.uncertain = 1 AND i.public_key_pem IS NOT NULL "
        "AND r.serial IS NOT NULL AND r.intent_spki_sha256 = i.spki_sha256 "
        "ORDER BY i.id",
        (now - within_s,),
    ).fetchall()
    return [
        m.UncertainOut(
            request_id=r["request_id"],
            epoch=r["epoch"],
            public_key_pem=r["public_key_pem"],
            age_s=max(0.0, now - float(r["at_s"])),
            ca_name=r["ca_name"],
            serial=r["serial"],
        )
        for r in rows
    ]
