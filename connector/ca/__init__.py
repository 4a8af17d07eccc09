"""Issuing certificate authorities: the CFSSL client, certdb reader, breakers and failover."""

from connector.ca._certdb import CertDB, CertDBError, CertRecord, create_certdb
from connector.ca._profiles import STANDARD_PROFILES, CaProfile

__all__ = [
    "STANDARD_PROFILES",
    "CaProfile",
    "CertDB",
    "CertDBError",
    "CertRecord",
    "create_certdb",
]
