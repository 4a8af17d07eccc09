"""The certdb reader on rows shaped like the Debian CFSSL 1.2 writes them, and the CRL builder."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from chaos.launch.crl_server import build_crl
from connector.ca import CertDBError, SqliteCertDB, create_certdb
from connector.pki import KeyType, PrivateKey, generate_key
from tests.unit.pki._ca import TestCA, make_intermediate, make_root


def _insert(db: Path, cert: x509.Certificate, status: str, reason: int, revoked_at: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO certificates VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(cert.serial_number),
                "",
                "",
                status,
                reason,
                "2027-11-25 17:56:00+00:00",
                revoked_at,
                cert.public_bytes(Encoding.PEM).decode(),
            ),
        )


@pytest.fixture
def issuing() -> TestCA:
    return make_intermediate(make_root())


def _leaf(ca: TestCA, cn: str) -> tuple[x509.Certificate, PrivateKey]:
    key = generate_key(KeyType.P256)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return ca.sign(name, key.public_key()), key


def test_rows_decode_and_find_by_public_key(tmp_path: Path, issuing: TestCA) -> None:
    db = tmp_path / "certdb.sqlite"
    create_certdb(db)
    create_certdb(db)  # idempotent
    good, good_key = _leaf(issuing, "good")
    bad, _ = _leaf(issuing, "bad")
    _insert(db, good, "good", 0, "0001-01-01 00:00:00+00:00")
    _insert(db, bad, "revoked", 4, "2026-11-25 18:01:34.123456789")
    certdb = SqliteCertDB(db)
    assert certdb.count() == 2
    record = certdb.by_serial(bad.serial_number)
    assert record is not None
    assert record.revoked
    assert record.reason == 4
    assert record.aki == ""
    assert record.revoked_at == dt.datetime(2026, 11, 25, 18, 1, 34, 123456, tzinfo=dt.UTC)
    assert record.expiry == dt.datetime(2027, 11, 25, 17, 56, tzinfo=dt.UTC)
    found = certdb.find_by_public_key(good_key.public_key())
    assert [(r.serial, r.status, r.revoked_at) for r in found] == [
        (good.serial_number, "good", None)
    ]
    assert [r.serial for r in certdb.records(status="revoked")] == [bad.serial_number]
    assert certdb.by_serial(1) is None
    # Many keys, one read: per key in the order asked, an unknown key finds nothing.
    _, stranger = _leaf(issuing, "stranger")
    keys = [stranger.public_key(), good_key.public_key()]
    per_key = certdb.find_by_public_keys(keys)
    assert [[r.serial for r in found] for found in per_key] == [[], [good.serial_number]]


def test_many_keys_are_found_with_one_read_of_the_table(tmp_path: Path, issuing: TestCA) -> None:
    db = tmp_path / "certdb.sqlite"
    create_certdb(db)
    first, first_key = _leaf(issuing, "first")
    again = issuing.sign(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "again")]), first_key.public_key()
    )
    second, second_key = _leaf(issuing, "second")
    _, absent_key = _leaf(issuing, "absent")
    for cert in (first, again, second):
        _insert(db, cert, "good", 0, "0001-01-01 00:00:00+00:00")
    certdb, fetched = _counting(SqliteCertDB(db))
    keys = [second_key.public_key(), absent_key.public_key(), first_key.public_key()]
    found = certdb.find_by_public_keys(keys)
    assert [sorted(r.serial for r in records) for records in found] == [
        [second.serial_number],
        [],
        sorted([first.serial_number, again.serial_number]),
    ]
    assert len(fetched) == 1  # every row's PEM, in one read
    assert certdb.find_by_public_keys([]) == []


def test_each_certificate_is_parsed_once_and_later_searches_read_only_what_they_need(
    tmp_path: Path, issuing: TestCA
) -> None:
    db = tmp_path / "certdb.sqlite"
    create_certdb(db)
    rows = [_leaf(issuing, f"device-{i}") for i in range(30)]
    for cert, _ in rows:
        _insert(db, cert, "good", 0, "0001-01-01 00:00:00+00:00")
    certdb, fetched = _counting(SqliteCertDB(db))
    _, absent_key = _leaf(issuing, "absent")

    assert certdb.find_by_public_key(absent_key.public_key()) == []
    assert [len(serials) for serials in fetched] == [30]  # the first search learns every row

    fetched.clear()
    wanted_cert, wanted_key = rows[7]
    found = certdb.find_by_public_key(wanted_key.public_key())
    assert [r.serial for r in found] == [wanted_cert.serial_number]
    assert fetched == [[str(wanted_cert.serial_number)]]  # only the row that holds the key

    # A revocation since is seen (the row is read again), and a new row is read alone.
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE certificates SET status = 'revoked', reason = 4 WHERE serial_number = ?",
            (str(wanted_cert.serial_number),),
        )
    late, late_key = _leaf(issuing, "late")
    _insert(db, late, "good", 0, "0001-01-01 00:00:00+00:00")
    fetched.clear()
    per_key = certdb.find_by_public_keys([wanted_key.public_key(), late_key.public_key()])
    assert [[(r.serial, r.status) for r in records] for records in per_key] == [
        [(wanted_cert.serial_number, "revoked")],
        [(late.serial_number, "good")],
    ]
    assert [sorted(serials) for serials in fetched] == [
        sorted([str(wanted_cert.serial_number), str(late.serial_number)])
    ]

    fetched.clear()
    assert certdb.find_by_public_key(absent_key.public_key()) == []
    assert fetched == []  # nothing new, no key known: no PEM read at all


def _counting(certdb: SqliteCertDB) -> tuple[SqliteCertDB, list[list[str]]]:
    """``certdb``, recording the serial numbers of the rows each read returns."""
    fetched: list[list[str]] = []
    by_serial, select = certdb._rows_by_serial, certdb._select

    def counted_by_serial(serials: Sequence[str]) -> list[Any]:
        rows = by_serial(serials)
        fetched.append([str(row[0]) for row in rows])
        return rows

    def counted_select(status: str | None, serial: int | None) -> list[Any]:
        rows = select(status, serial)
        fetched.append([str(row[0]) for row in rows])
        return rows

    certdb._rows_by_serial = counted_by_serial  # type: ignore[method-assign]
    certdb._select = counted_select  # type: ignore[method-assign]
    return certdb, fetched


def test_reader_never_writes_and_reports_a_missing_db(tmp_path: Path) -> None:
    with pytest.raises(CertDBError, match="not found"):
        SqliteCertDB(tmp_path / "nope.sqlite").records()
    db = tmp_path / "certdb.sqlite"
    create_certdb(db)
    assert SqliteCertDB(db).records() == []
    with (
        sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn,
        pytest.raises(sqlite3.OperationalError),
    ):
        conn.execute("DELETE FROM certificates")


def test_crl_lists_revoked_serials_with_reasons_and_is_signed_by_the_ca(
    tmp_path: Path, issuing: TestCA
) -> None:
    db = tmp_path / "certdb.sqlite"
    create_certdb(db)
    superseded, _ = _leaf(issuing, "a")
    unspecified, _ = _leaf(issuing, "b")
    _insert(db, superseded, "revoked", 4, "2026-11-25 18:01:34")
    _insert(db, unspecified, "revoked", 0, "2026-11-25 18:01:35")
    crl = build_crl(issuing.certificate, issuing.key, SqliteCertDB(db).records(status="revoked"))
    assert crl.is_signature_valid(issuing.key.public_key())
    assert crl.issuer == issuing.certificate.subject
    entry = crl.get_revoked_certificate_by_serial_number(superseded.serial_number)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.superseded
    plain = crl.get_revoked_certificate_by_serial_number(unspecified.serial_number)
    assert plain is not None
    assert len(plain.extensions) == 0  # RFC 5280: no reason code for "unspecified"
    assert crl.next_update_utc is not None
    assert crl.next_update_utc > dt.datetime.now(dt.UTC)


def test_a_standby_warm_up_leaves_the_takeover_search_only_the_matches(
    tmp_path: Path, issuing: TestCA
) -> None:
    db = tmp_path / "certdb.sqlite"
    create_certdb(db)
    rows = [_leaf(issuing, f"device-{i}") for i in range(12)]
    for cert, _ in rows[:10]:
        _insert(db, cert, "good", 0, "0001-01-01 00:00:00+00:00")
    certdb, fetched = _counting(SqliteCertDB(db))
    assert certdb.indexed_rows == 0
    assert certdb.learn_new() == 10
    for cert, _ in rows[10:]:
        _insert(db, cert, "good", 0, "0001-01-01 00:00:00+00:00")
    assert certdb.learn_new() == 2  # only what was issued since
    assert certdb.learn_new() == 0
    assert certdb.indexed_rows == 12  # what the metric shows (connector/metrics.py)
    fetched.clear()
    wanted_cert, wanted_key = rows[11]
    found = certdb.find_by_public_key(wanted_key.public_key())
    assert [r.serial for r in found] == [wanted_cert.serial_number]
    assert fetched == [[str(wanted_cert.serial_number)]]
