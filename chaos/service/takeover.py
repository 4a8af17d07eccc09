"""What a new leader reads first: the intents older epochs left in flight.

    intents = stale_intents_of(tx, epoch)   # [IntentOut], oldest request first

Served by ``/intents/stale`` and, with the takeover's first poll, in the answer
to ``/register`` (one round trip instead of three between "elected" and the
first certificate; see docs/chaos.md, "Takeover across a WAN").
"""

from __future__ import annotations

import sqlite3

from chaos.service import models as m

__all__ = ["stale_intents_of"]


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
