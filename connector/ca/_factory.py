"""One issuing CA from its ``[[ca]]`` table (or the lab's description), by ``kind``.

    ca = ca_from_dict({"name": "primary", "kind": "openbao", "url": ..., "mount": ...})
    ca = ca_from_dict(lab.describe()["cas"]["primary"])    # kind defaults to "cfssl"

``kind`` is ``cfssl`` (the default: configurations written before there was a
choice keep working) or ``openbao`` (OpenBao or HashiCorp Vault PKI). A third
vendor (Microsoft AD CS, say) is one more driver behind
:class:`~connector.ca.IssuingCA` and one more entry in :data:`CA_KINDS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from connector.ca._cfssl import CfsslCA
from connector.ca._openbao import OpenBaoCA
from connector.ca._types import IssuingCA

__all__ = ["CA_KINDS", "ca_from_dict"]

CA_KINDS = ("cfssl", "openbao")


def ca_from_dict(
    spec: Mapping[str, Any],
    *,
    transport: httpx.BaseTransport | None = None,
    timeout: float = 5.0,
) -> IssuingCA:
    kind = str(spec.get("kind") or "cfssl")
    if kind == "cfssl":
        return CfsslCA.from_dict(spec, transport=transport, timeout=timeout)
    if kind == "openbao":
        return OpenBaoCA.from_dict(spec, transport=transport, timeout=timeout)
    raise ValueError(f"ca[{spec.get('name')}].kind: must be one of {', '.join(CA_KINDS)}")
