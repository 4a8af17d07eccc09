"""A stalled CA's late certificates: every one revoked by the round's end.

    class DrillEngine(SteadyWaits, RoundMeasure, LateCheck): ...  # the engine's part
    engine._check_late(outcome, since_unix, until_unix)  # keys_in_doubt, late_*; violations

A CA that was sent a request and hung (``ca-stall``, ``ca-stall-kill``) signs
it when it resumes, although the leader gave up on the key: it requeued the
request (the key is no longer its intent), or had the other CA sign and said
the delivery was ``uncertain``. The certificate the stalled CA records for
such a key is late: nobody holds it, so it must be revoked, by the leader
that gave up on the key or by a successor the registration told of it. The
check reads the service's keys in doubt among those sent from the fault to
the heal and every CA's certificates, and polls until no key of that window
is still in flight and each late certificate is revoked, or ``late_timeout``
has passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from chaos.checkers import CaCertificate, late_certificates
from chaos.checkers.state import ServiceDb
from chaos.drill._engine_base import DrillLab, DrillSettings
from chaos.drill.result import RoundResult

__all__ = ["LateCheck"]


class LateCheck:
    """The drill engine's late-certificate check (a mixin of :class:`DrillEngine`)."""

    # Set by the engine's constructor.
    lab: DrillLab
    db: ServiceDb
    settings: DrillSettings
    sleep: Callable[[float], None]

    def _check_late(
        self,
        outcome: RoundResult,
        since_unix: float,
        until_unix: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        poll_s: float = 0.5,
    ) -> None:
        """Keys sent to a CA in the window (the fault to the heal) and given up on:
        poll until none is still in flight and each late certificate is revoked."""
        deadline = clock() + self.settings.late_timeout
        while True:
            doubtful = self.db.keys_in_doubt(since_unix, until_unix)
            late = late_certificates(doubtful, self.db.delivered(), self.lab.ca_certificates())
            # A key still in flight may yet be given up on, and its late certificate
            # then appear: the check ends once every key of the window has settled.
            in_flight = self.db.intents_open(since_unix, until_unix)
            settled = in_flight == 0 and all(cert.revoked for _, cert in late)
            if settled or clock() >= deadline:
                break
            self.sleep(poll_s)
        outcome.keys_in_doubt = len(doubtful)
        outcome.late_certificates = len(late)
        outcome.late_revoked = sum(1 for _, cert in late if cert.revoked)
        if in_flight:
            outcome.notes.append(
                f"{in_flight} key(s) of the stall still in flight "
                f"{self.settings.late_timeout:g}s after the round: the final checks judge them"
            )
        if not doubtful:
            outcome.notes.append("no key was given up on: the round made no late certificate")
        elif not late:
            outcome.notes.append(
                f"{len(doubtful)} key(s) given up on, but no CA recorded a late certificate "
                "for them"
            )
        outcome.violations += [
            _still_valid(request, cert, self.settings.late_timeout)
            for request, cert in late
            if not cert.revoked
        ]


def _still_valid(request: str, cert: CaCertificate, timeout: float) -> str:
    return (
        f"late certificate {cert.ca}:{cert.serial} for request {request} (a key given up "
        f"on) still valid {timeout:g}s after the round settled"
    )
