"""Which certdb rows hold which public key, learnt once per row: the key search's memory.

    index = KeyIndex()
    new = index.unknown(row_ids)               # rows never parsed: fetch their PEM
    index.learn(("4242", ""), key_digest(certificate.public_key()))
    index.rows_for({key_digest(key)})          # rows already known to hold that key

A CFSSL certdb cannot be searched by key: the certificate's PEM is the only
place the key is. Reading and parsing the whole table on every search (what
the reader did) costs a connector seconds of CPU and the database a
full transfer of every PEM once the CA holds tens of thousands of
certificates, on every takeover and every sweep for a late certificate, and
past ``statement_timeout`` the search fails outright. A row's certificate
never changes (only its status does, and CFSSL never deletes rows), so what
is learnt about a row stays true: after the first search only rows added
since are parsed. About 400 bytes a row (measured: 100,000 rows, 39 MB).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Mapping

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["KeyIndex", "RowId", "key_digest"]

RowId = tuple[str, str]
"""A certdb row's primary key: (serial number, authority key identifier), as text."""


def key_digest(key: PublicKeyTypes) -> bytes:
    """SHA-256 of the key's SubjectPublicKeyInfo: what rows are matched on."""
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


class KeyIndex:
    """Row -> key digest for every row parsed so far; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: set[RowId] = set()
        self._rows_of: dict[bytes, list[RowId]] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._known)

    def unknown(self, rows: Iterable[RowId]) -> set[RowId]:
        """The rows among ``rows`` whose key is not known yet."""
        with self._lock:
            return {row for row in rows if row not in self._known}

    def learn(self, row: RowId, digest: bytes) -> None:
        with self._lock:
            if row in self._known:
                return
            self._known.add(row)
            self._rows_of.setdefault(digest, []).append(row)

    def learn_all(self, digests: Mapping[RowId, bytes]) -> None:
        for row, digest in digests.items():
            self.learn(row, digest)

    def rows_for(self, digests: Iterable[bytes]) -> set[RowId]:
        """Known rows whose certificate holds one of the keys."""
        with self._lock:
            return {row for digest in digests for row in self._rows_of.get(digest, ())}
