"""The checkers' certdb read asks again while the certdb is unreachable, within a bound."""

from __future__ import annotations

import pytest
import tenacity

from chaos.checkers.state import ca_certificates
from connector.ca import CertDB, CertDBUnavailableError
from connector.ca._certdb import Row


class _FlakyCertDB(CertDB):
    """Unreachable for ``failures`` reads, then empty."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.reads = 0

    @property
    def source(self) -> str:
        return "flaky"

    def _select(self, status: str | None, serial: int | None) -> list[Row]:
        self.reads += 1
        if self.reads <= self.failures:
            raise CertDBUnavailableError("certdb flaky timed out: connection timeout expired")
        return []

    def _count(self) -> int:
        return 0


def _retrying(attempts: int) -> tenacity.Retrying:
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(CertDBUnavailableError),
        stop=tenacity.stop_after_attempt(attempts),
        sleep=lambda _: None,
        reraise=True,
    )


def test_a_certdb_that_times_out_once_is_read_again() -> None:
    certdb = _FlakyCertDB(failures=1)
    assert ca_certificates({"primary": certdb}, retrying=_retrying(3)) == []
    assert certdb.reads == 2


def test_a_certdb_that_stays_unreachable_raises_its_own_error() -> None:
    certdb = _FlakyCertDB(failures=10)
    with pytest.raises(CertDBUnavailableError, match="timed out"):
        ca_certificates({"primary": certdb}, retrying=_retrying(3))
    assert certdb.reads == 3
