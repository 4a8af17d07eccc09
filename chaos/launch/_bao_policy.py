"""What the lab's OpenBao lets a connector do: ACL policies and PKI roles (pure text).

    connector_policy(["pki_primary", "pki_secondary"])   # sign, revoke, read, list; renew-self
    auditor_policy(["pki_primary"])                      # read and list only
    role_body(STANDARD_PROFILES["user-auth"])            # body of POST <mount>/roles/<template>

No I/O: :class:`chaos.launch.openbao.OpenBaoLab` writes these through the
root token while provisioning. A role keeps the CSR's CN, serialNumber and
SANs (URI and the UPN otherName included) and sets key usages, EKU flags and
TTL from the template's :class:`~connector.ca.CaProfile`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connector.ca._profiles import CaProfile

__all__ = ["auditor_policy", "connector_policy", "role_body"]

_USAGES = {"digital signature": "DigitalSignature", "key encipherment": "KeyEncipherment"}
_FLAGS = {"client auth": "client_flag", "server auth": "server_flag"}
_FLAGS["email protection"] = "email_protection_flag"

_READ = (("cert/*", "read"), ("certs", "list"))
_WRITE = (("sign/*", "update"), ("revoke", "update"))
# The AppRoles carry no "default" policy (token_no_default_policy): OpenBao re-parses
# that templated policy on every request (about a tenth of its CPU per signature in a
# profile here). Of it the driver needs only to renew its own token.
_RENEW_SELF = 'path "auth/token/renew-self" { capabilities = ["update"] }'


def _policy(mounts: Sequence[str], paths: Sequence[tuple[str, str]]) -> str:
    rules = [
        f'path "{mount}/{path}" {{ capabilities = ["{capability}"] }}'
        for mount in mounts
        for path, capability in paths
    ]
    return "\n".join([*rules, _RENEW_SELF]) + "\n"


def connector_policy(mounts: Sequence[str]) -> str:
    """The least a connector needs on its issuing mounts (docs/pki.md, 'minimal policy')."""
    return _policy(mounts, _WRITE + _READ)


def auditor_policy(mounts: Sequence[str]) -> str:
    """Read and list only: what the drill's checkers need to see every certificate."""
    return _policy(mounts, _READ)


def role_body(profile: CaProfile) -> dict[str, Any]:
    """An OpenBao PKI role that signs the connector's CSRs for ``profile``."""
    body: dict[str, Any] = {
        "allow_any_name": True,
        "enforce_hostnames": False,
        "cn_validations": "disabled",
        "allowed_serial_numbers": "*",
        "allowed_uri_sans": "*",
        "allowed_other_sans": "*",  # the UPN otherName
        "allow_ip_sans": False,
        "key_type": "any",
        "use_csr_common_name": True,
        "use_csr_sans": True,
        "key_usage": ",".join(_USAGES[u] for u in profile.key_usages),
        "server_flag": False,
        "client_flag": False,
        "ttl": f"{profile.validity_hours}h",
        "max_ttl": f"{profile.validity_hours}h",
        "no_store": False,  # revocation and reconciliation need the stored certificate
        "organization": "pfxha lab",
    }
    for usage in profile.cfssl_usages:
        if usage in _FLAGS:
            body[_FLAGS[usage]] = True
    return body
