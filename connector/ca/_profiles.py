"""Certificate templates as CFSSL signing profiles, shared by the CA client and the lab.

A template names what the CA must put into a certificate; the client checks
the issued certificate against it (a CA that falls back to another profile,
as CFSSL does for unknown names, is caught here)::

    spec = STANDARD_PROFILES["user-auth"]
    spec.cfssl_usages   # ["digital signature", "key encipherment", "client auth"]
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

__all__ = ["STANDARD_PROFILES", "CaProfile"]

_EKU_NAMES: dict[ObjectIdentifier, str] = {
    ExtendedKeyUsageOID.CLIENT_AUTH: "client auth",
    ExtendedKeyUsageOID.SERVER_AUTH: "server auth",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "email protection",
}


@dataclass(frozen=True)
class CaProfile:
    """One signing profile: validity, key usages (CFSSL names) and extended key usages."""

    name: str
    validity_hours: int
    key_usages: tuple[str, ...]
    ekus: tuple[ObjectIdentifier, ...]

    @property
    def cfssl_usages(self) -> list[str]:
        return [*self.key_usages, *(_EKU_NAMES[oid] for oid in self.ekus)]


STANDARD_PROFILES: dict[str, CaProfile] = {
    profile.name: profile
    for profile in (
        CaProfile(
            "user-auth",
            8760,
            ("digital signature", "key encipherment"),
            (ExtendedKeyUsageOID.CLIENT_AUTH,),
        ),
        CaProfile(
            "smime",
            8760,
            ("digital signature", "key encipherment"),
            (ExtendedKeyUsageOID.EMAIL_PROTECTION,),
        ),
        CaProfile(
            "wifi",
            4380,
            ("digital signature", "key encipherment"),
            (ExtendedKeyUsageOID.CLIENT_AUTH,),
        ),
    )
}
