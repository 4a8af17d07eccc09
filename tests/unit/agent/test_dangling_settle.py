"""Settling dangling work against a CA that fails: later entries for it wait, uncalled."""

from __future__ import annotations

from typing import Any, cast

from connector.agent.dangling import Dangling, DanglingWork, settle
from connector.agent.issuance import IssueContext
from connector.ca import CAUnavailableError, is_retryable
from connector.service_client import BadRequest, UploadItem


class RefusingService:
    """Refuses every retried upload: its certificate must then be revoked."""

    def upload_result(self, *args: object, **kwargs: object) -> None:
        raise BadRequest("another result was accepted", status=400)


class Issuer:
    def __init__(self, down: set[str]) -> None:
        self.down = down
        self.calls: list[tuple[int, str]] = []

    def revoke(self, serial: int, ca_name: str, reason: str, deadline: float) -> None:
        self.calls.append((serial, ca_name))
        if ca_name in self.down:
            raise CAUnavailableError("no answer", ca_name=ca_name, ambiguous=True)


class Fence:
    expected_epoch = 7

    def epoch(self) -> int:
        return 7


def _context(issuer: Issuer) -> IssueContext:
    return IssueContext(
        name="c1",
        service=cast(Any, RefusingService()),
        issuer=cast(Any, issuer),
        pki=cast(Any, None),
        fence=cast(Any, Fence()),
        deadline=lambda: 1.0,
        ca_errors=(CAUnavailableError,),
        is_retryable=is_retryable,
        dangling=DanglingWork(),
    )


def _refused_upload(request_id: str, serial: int, ca_name: str) -> Dangling:
    return Dangling(request_id, 7, upload=UploadItem(request_id, b"envelope", serial, ca_name))


def test_entries_at_a_ca_that_failed_in_this_pass_wait_without_a_call() -> None:
    issuer = Issuer(down={"primary"})
    items = [
        _refused_upload("r1", 1, "primary"),
        _refused_upload("r2", 2, "primary"),
        _refused_upload("r3", 3, "secondary"),
        _refused_upload("r4", 4, "primary"),
    ]
    left = settle(items, _context(issuer))
    # One call to the failing CA (a hung one holds the loop a deadline per call);
    # the other CA's entry is settled.
    assert issuer.calls == [(1, "primary"), (3, "secondary")]
    assert [item.request_id for item in left] == ["r1", "r2", "r4"]


def test_the_next_pass_calls_the_ca_again() -> None:
    issuer = Issuer(down={"primary"})
    left = settle([_refused_upload("r1", 1, "primary")], _context(issuer))
    issuer.down.clear()
    assert settle(left, _context(issuer)) == []
    assert issuer.calls == [(1, "primary"), (1, "primary")]
