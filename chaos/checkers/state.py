"""Reading the system's state for the checkers: the service DB, each CA's certdb and CRL.

Read-only, from the outside: the service's SQLite database (opened
``mode=ro``; WAL lets us read while it writes), CFSSL's certdbs (PostgreSQL,
as the read-only role), and the CRLs from the CRL distribution points,
exactly as a relying party would fetch them.

    db = ServiceDb(lab.service_db_path)
    snapshot = read_snapshot(db, certdbs={"primary": lab.certdb("primary"), ...}, crl_urls={...})

    # A CA without a certdb (OpenBao): listed through its API, and every certificate
    # it lists asked about at its OCSP responder.
    snapshot = read_snapshot(db, certdbs={}, crl_urls={...}, apis={"secondary": openbao_ca})
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import datetime as dt
import hashlib
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import tenacity
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from chaos.checkers.model import (
    AcceptedAction,
    CaCertificate,
    DeliveredCertificate,
    Intent,
    RequestRecord,
    Revocation,
    Snapshot,
    UserCertificate,
    UserCopy,
    UserScopeState,
)
from chaos.checkers.user_scope import count_user_scope
from chaos.service.user_certs import targeted_users
from connector.ca import (
    CAError,
    CertDB,
    CertDBUnavailableError,
    CertStatus,
    IssuedCertificate,
    open_certdb,
)

__all__ = [
    "CertificateApi",
    "IssuedRow",
    "ServiceDb",
    "api_certificates",
    "ca_certificates",
    "fetch_crl",
    "ocsp_answers",
    "parse_time",
    "read_snapshot",
]

_OCSP_THREADS = 4


class CertificateApi(Protocol):
    """A CA that lists what it issued and answers OCSP (:class:`connector.ca.OpenBaoCA`)."""

    def list_issued(self, *, timeout: float | None = None) -> list[IssuedCertificate]: ...

    def ocsp_status(
        self, certificate: x509.Certificate, *, timeout: float | None = None
    ) -> CertStatus: ...


def parse_time(text: str | None) -> float | None:
    """ISO-8601 (the service's timestamps) to Unix seconds; None stays None."""
    if not text:
        return None
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


@dataclass(frozen=True)
class IssuedRow:
    """A request the service accepted a certificate for (Unix times)."""

    request: str
    created: float
    issued: float
    epoch: int
    ca: str
    connector: str


class ServiceDb:
    """Read-only queries on the stand-in service's SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0)
        conn.row_factory = sqlite3.Row
        try:
            yield conn
        finally:
            conn.close()

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._conn() as conn:
            return list(conn.execute(sql, params).fetchall())

    def requests(self) -> list[RequestRecord]:
        out = []
        active_users = {
            r["user_id"] for r in self.rows("SELECT user_id FROM devices WHERE state = 'active'")
        }
        for r in self.rows("SELECT * FROM requests ORDER BY seq"):
            state = str(r["state"])
            if r["cancelled"] and state not in ("delivered", "installed", "failed"):
                state = "cancelled"
            elif r["scope"] == "user" and state == "issued" and r["user_id"] not in active_users:
                # A user-scoped certificate whose user has no active device right now
                # waits in escrow for the next one: held, not lost.
                state = "escrowed"
            out.append(RequestRecord(r["id"], r["device_id"], r["profile_id"], state, r["reason"]))
        return out

    def delivered(self) -> list[DeliveredCertificate]:
        return [
            DeliveredCertificate(
                r["id"],
                str(r["serial"]),
                r["ca_name"],
                r["device_id"],
                r["profile_id"],
                int(r["epoch"] or 0),
            )
            for r in self.rows("SELECT * FROM requests WHERE serial IS NOT NULL ORDER BY seq")
        ]

    def intents(self) -> list[Intent]:
        """Every intent ever recorded, not only each request's current one: a
        certificate for an older epoch's key is that request's, not nobody's. The
        service writes each intent to this history in the transaction that makes it
        its request's current one, so the current ones are here too."""
        return [
            Intent(r["request_id"], int(r["epoch"]), str(r["spki_sha256"]))
            for r in self.rows("SELECT request_id, epoch, spki_sha256 FROM intents ORDER BY id")
        ]

    def keys_in_doubt(self, since_unix: float, until_unix: float) -> dict[str, str]:
        """Key (SPKI SHA-256) -> request, for each intent recorded in the window that
        a CA may still sign although nobody will deliver it: given up on (no longer
        its request's current intent: the CA's answer was lost, the request
        requeued) or delivered ``uncertain`` (another CA signed it after the first
        one's answer was lost). A certificate a CA records for such a key is late,
        unless it is the one delivered."""
        return {
            str(r["spki_sha256"]): str(r["request_id"])
            for r in self.rows(
                "SELECT i.request_id, i.spki_sha256 FROM intents i "
                "JOIN requests r ON r.id = i.request_id WHERE i.at_s BETWEEN ? AND ? AND "
                "(i.uncertain = 1 OR r.intent_spki_sha256 IS NULL "
                "OR r.intent_spki_sha256 != i.spki_sha256) ORDER BY i.id",
                (since_unix, until_unix),
            )
        }

    def intents_open(self, since_unix: float, until_unix: float) -> int:
        """Intents recorded in the window that are still their request's current one,
        the request in flight: not yet delivered, nor given up on."""
        return int(
            self.rows(
                "SELECT COUNT(*) AS n FROM intents i JOIN requests r ON r.id = i.request_id "
                "WHERE i.at_s BETWEEN ? AND ? AND r.state = 'in_flight' "
                "AND r.intent_spki_sha256 = i.spki_sha256",
                (since_unix, until_unix),
            )[0]["n"]
        )

    def revocations(self) -> list[Revocation]:
        return [
            Revocation(r["id"], str(r["serial"]), r["ca_name"], r["state"], r["request_id"])
            for r in self.rows("SELECT * FROM revocations ORDER BY seq")
        ]

    def accepted_actions(self) -> list[AcceptedAction]:
        """Registrations, intents, uploads and revocation confirmations in commit-time order."""
        timed: list[tuple[float, str, str, int]] = []
        for r in self.rows("SELECT * FROM connectors WHERE registered_at IS NOT NULL"):
            at = parse_time(r["registered_at"])
            if at is not None and r["epoch"]:
                timed.append((at, "register", r["name"], int(r["epoch"])))
        for r in self.rows("SELECT * FROM requests WHERE intent_at IS NOT NULL"):
            at = parse_time(r["intent_at"])
            if at is not None and r["intent_epoch"] is not None:
                timed.append((at, "intent", str(r["connector"] or "?"), int(r["intent_epoch"])))
        for r in self.rows("SELECT * FROM requests WHERE issued_at IS NOT NULL"):
            at = parse_time(r["issued_at"])
            if at is not None and r["epoch"] is not None:
                timed.append((at, "upload", str(r["connector"] or "?"), int(r["epoch"])))
        for r in self.rows("SELECT * FROM revocations WHERE done_at IS NOT NULL"):
            at = parse_time(r["done_at"])
            if at is not None and r["done_epoch"] is not None:
                timed.append((at, "revoke-confirm", str(r["done_by"] or "?"), int(r["done_epoch"])))
        timed.sort(key=lambda item: item[0])
        return [AcceptedAction(i, kind, who, ep) for i, (_, kind, who, ep) in enumerate(timed)]

    def issued_since(self, since_unix: float) -> list[IssuedRow]:
        out = []
        for r in self.rows("SELECT * FROM requests WHERE issued_at IS NOT NULL"):
            issued = parse_time(r["issued_at"])
            created = parse_time(r["created_at"])
            if issued is None or created is None or issued < since_unix:
                continue
            out.append(
                IssuedRow(
                    r["id"],
                    created,
                    issued,
                    int(r["epoch"] or 0),
                    str(r["ca_name"]),
                    str(r["connector"] or ""),
                )
            )
        out.sort(key=lambda row: row.issued)
        return out

    def created_since(self, since_unix: float) -> list[str]:
        """Ids of the requests created at or after ``since_unix``."""
        return [
            r["id"]
            for r in self.rows("SELECT id, created_at FROM requests ORDER BY seq")
            if (parse_time(r["created_at"]) or 0.0) >= since_unix
        ]

    def registrations(self) -> dict[str, tuple[int, float | None]]:
        """connector name -> (epoch, registered at, Unix)."""
        return {
            r["name"]: (int(r["epoch"]), parse_time(r["registered_at"]))
            for r in self.rows("SELECT * FROM connectors")
        }

    def user_scope(self) -> UserScopeState:
        """User-scoped certificates, each device's copies, active devices, targeted users."""
        with self._conn() as conn:
            certificates = tuple(
                UserCertificate(
                    request=r["id"],
                    user=r["user_id"],
                    profile=r["profile_id"],
                    serial=str(r["serial"]),
                    issuer=str(r["ca_name"]),
                    escrow=str(r["escrow"]),
                    revoked=r["revocation"] is not None,
                    kind=r["kind"],
                    replaces=r["replaces"],
                    state=r["state"],
                )
                for r in conn.execute(
                    "SELECT * FROM requests WHERE scope = 'user' AND serial IS NOT NULL "
                    "ORDER BY seq"
                )
            )
            copies = tuple(
                UserCopy(
                    r["device_id"], r["request_id"], r["usage"], r["state"], r["device_delete"]
                )
                for r in conn.execute("SELECT * FROM user_copies ORDER BY seq")
            )
            devices = {
                r["id"]: r["user_id"]
                for r in conn.execute("SELECT id, user_id FROM devices WHERE state = 'active'")
            }
            targeted = frozenset(targeted_users(conn))
        return UserScopeState(certificates, copies, devices, targeted)

    def devices_due_user_copies(self) -> set[str]:
        """Devices the service has a user-scoped copy for (one not yet collected or made,
        a history key to re-deliver as decrypt-only) or a copy to delete."""
        rows = self.rows(
            "SELECT DISTINCT d.id FROM devices d JOIN requests r ON r.user_id = d.user_id "
            "WHERE d.state = 'active' AND r.scope = 'user' AND r.serial IS NOT NULL "
            "AND ((r.escrow = 'current' AND r.cancelled IS NULL AND r.revocation IS NULL "
            "AND r.state IN ('issued', 'delivered', 'installed')) OR r.escrow = 'history') "
            "AND NOT EXISTS (SELECT 1 FROM user_copies c WHERE c.request_id = r.id "
            "AND c.device_id = d.id AND (c.state IN ('installed', 'failed', 'withdrawn') "
            "OR c.device_delete IS NOT NULL)) "
            "UNION SELECT device_id FROM user_copies WHERE device_delete = 'pending'"
        )
        return {str(r[0]) for r in rows}

    def certificates_exercised(self) -> dict[str, dict[str, int]]:
        """The drill contract's ``certificates``: device- and user-scoped, what was delivered."""
        (row,) = self.rows(
            "SELECT COUNT(*) AS n FROM requests WHERE scope = 'device' "
            "AND state IN ('delivered', 'installed')"
        )
        return {"device": {"delivered": int(row["n"])}, "user": count_user_scope(self.user_scope())}

    def stale_rejections(self) -> int:
        return int(self.rows("SELECT COUNT(*) AS n FROM stale_rejections")[0]["n"])

    def open_work(self) -> tuple[int, int]:
        """(requests not final, revocations not done): zero when the drill has drained."""
        # A cancelled request still in flight is open too: its leader has yet to
        # upload (then the service fails it) or a new leader to reconcile it.
        requests = self.rows(
            "SELECT COUNT(*) AS n FROM requests WHERE state IN ('pending', 'in_flight')"
        )[0]["n"]
        revocations = self.rows("SELECT COUNT(*) AS n FROM revocations WHERE state != 'done'")[0][
            "n"
        ]
        return int(requests), int(revocations)


def _spki_sha256(cert: x509.Certificate) -> str:
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


# A checker's read of a certdb outlives a slow moment of its server: the drill reads
# it once, after the faults, and a hosts drill at loads of 48-60 saw PostgreSQL on the
# CA host time out once ("connection timeout expired"), which stopped the whole drill.
CERTDB_READ_RETRY = tenacity.Retrying(
    retry=tenacity.retry_if_exception_type(CertDBUnavailableError),
    stop=tenacity.stop_after_delay(30.0),
    wait=tenacity.wait_exponential(multiplier=0.2, max=5.0),
    reraise=True,
)


def ca_certificates(
    certdbs: Mapping[str, CertDB | Path], *, retrying: tenacity.Retrying = CERTDB_READ_RETRY
) -> list[CaCertificate]:
    """Every row of each CA's certdb (a :class:`CertDB`, or a SQLite path).

    A certdb that cannot be reached is asked again for up to 30 s
    (:data:`CERTDB_READ_RETRY`) before :class:`CertDBUnavailableError` goes up.
    """
    out: list[CaCertificate] = []
    for ca, source in certdbs.items():
        certdb = source if isinstance(source, CertDB) else open_certdb(source)
        records = retrying(lambda db=certdb: list(db.records()))
        out.extend(_record(ca, r.certificate, r.revoked, r.reason) for r in records)
    return out


def _record(ca: str, certificate: x509.Certificate, revoked: bool, reason: Any) -> CaCertificate:
    serials = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return CaCertificate(
        ca=ca,
        serial=str(certificate.serial_number),
        revoked=revoked,
        public_key_sha256=_spki_sha256(certificate),
        reason=str(reason) if revoked and reason is not None else None,
        device=str(serials[0].value) if serials else None,
    )


def api_certificates(ca: str, api: CertificateApi) -> list[tuple[CaCertificate, x509.Certificate]]:
    """Every certificate ``api`` lists, as the checkers' records (with the certificate)."""
    return [
        (_record(ca, issued.certificate, issued.revoked, None), issued.certificate)
        for issued in api.list_issued(timeout=10.0)
    ]


def ocsp_answers(api: CertificateApi, certificates: list[x509.Certificate]) -> dict[str, str]:
    """Decimal serial -> what the CA's OCSP responder says (``good``, ``revoked``,
    ``unknown``, or ``error: ...`` when it gave no verifiable answer)."""

    def ask(certificate: x509.Certificate) -> tuple[str, str]:
        try:
            status = api.ocsp_status(certificate, timeout=10.0)
        except CAError as exc:
            return str(certificate.serial_number), f"error: {exc}"
        return str(certificate.serial_number), status.value

    with cf.ThreadPoolExecutor(_OCSP_THREADS, thread_name_prefix="ocsp") as pool:
        return dict(pool.map(ask, certificates))


def fetch_crl(url: str, *, timeout: float = 5.0) -> frozenset[str]:
    """The decimal serials on the CRL at ``url`` (DER or PEM)."""
    body = httpx.get(url, timeout=timeout).raise_for_status().content
    crl = (
        x509.load_pem_x509_crl(body)
        if body.lstrip().startswith(b"-----")
        else x509.load_der_x509_crl(body)
    )
    return frozenset(str(entry.serial_number) for entry in crl)


def read_snapshot(
    db: ServiceDb,
    *,
    certdbs: Mapping[str, CertDB | Path],
    crl_urls: Mapping[str, str],
    apis: Mapping[str, CertificateApi] | None = None,
) -> Snapshot:
    """``apis``: CAs read through their own API (listed; each certificate asked by OCSP)."""
    crls: dict[str, frozenset[str]] = {}
    for ca, url in crl_urls.items():
        with contextlib.suppress(httpx.HTTPError, ValueError):
            crls[ca] = fetch_crl(url)
    listed = ca_certificates(certdbs)
    ocsp: dict[str, dict[str, str]] = {}
    for ca, api in (apis or {}).items():
        pairs = api_certificates(ca, api)
        listed += [record for record, _ in pairs]
        ocsp[ca] = ocsp_answers(api, [certificate for _, certificate in pairs])
    return Snapshot(
        requests=tuple(db.requests()),
        delivered=tuple(db.delivered()),
        intents=tuple(db.intents()),
        ca_certificates=tuple(listed),
        revocations=tuple(db.revocations()),
        crls=crls,
        accepted=tuple(db.accepted_actions()),
        ocsp=ocsp,
        users=db.user_scope(),
    )
