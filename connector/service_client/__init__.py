"""The connector's client for the cloud certificate service (connector API).

Every call that changes something carries the connector's name and its
fencing epoch (from ZooKeeper). The service refuses an epoch lower than the
highest it has seen with HTTP 409, which this client raises as
:class:`StaleEpochError`: the caller must stop acting at once and step down::

    client = ServiceClient("http://127.0.0.1:8443", timeout=5.0)
    kra = client.kra_certificate()                      # x509.Certificate to seal PFX to
    client.register("conn-a", epoch)                    # claims "active" for this epoch
    first = client.register("conn-a", epoch, max_items=8)   # and, in the same round trip,
    first.intents, first.requests                       # the stale intents and a first poll
    client.heartbeat("conn-a", epoch, "healthy", {"cas_up": 2})
    client.heartbeat("conn-b", 0, "healthy", {})        # epoch 0: a standby's heartbeat
    for stale in client.inflight_intents("conn-a", epoch):   # reconcile a deposed epoch
        ...  # revoke what the CA issued for stale.public_key_pem, then issue anew
    polled = client.poll_work("conn-a", epoch, max_items=100, wait_s=10.0)
    polled.revocations_waiting                          # 0: no revocation poll needed now
    for req in polled.requests:                         # (poll_requests: the list alone)
        key = generate(req.profile.key_type)
        client.record_intent("conn-a", epoch, req.id, public_key_pem)   # before the CA call
        ...  # CSR (subject serialNumber = req.device_id), issue at the CA, pack PFX
        client.upload_result("conn-a", epoch, req.id, seal(pfx, kra), serial, ca_name)
    for task in client.poll_revocations("conn-a", epoch, max_items=100):
        ...  # revoke task.serial at task.ca_name (already revoked counts as done)
        client.confirm_revocation("conn-a", epoch, task.id)

Errors: :class:`StaleEpochError` (409, fenced), :class:`ServiceUnavailable`
(connection failure, timeout or 5xx: retry later), :class:`BadRequest` (any
other 4xx: the call was wrong; retrying it unchanged will not help), all
subclasses of :class:`ServiceError`. The transport is injectable
(``httpx.MockTransport`` or ``httpx.HTTPTransport(uds=...)``); TLS settings
(``verify``, ``cert``) pass straight to httpx.

The PFX inside the envelope carries the private key, the certificate and its
chain, with no password (the KRA envelope is the protection); the
certificate's public key must be the one recorded as intent and its subject
must hold the device id in ``serialNumber``, or the upload is refused (4xx).
"""

from connector.service_client._client import API_PREFIX, ServiceClient
from connector.service_client._errors import (
    BadRequest,
    ConnectorRevokedError,
    ServiceError,
    ServiceUnavailable,
    StaleEpochError,
)
from connector.service_client._models import (
    CertificateRequest,
    Intent,
    Polled,
    ProfileSpec,
    Registration,
    RevocationTask,
    Superseded,
    Uncertain,
    UploadItem,
)
from connector.service_client._wire import tls_context

__all__ = [
    "API_PREFIX",
    "BadRequest",
    "CertificateRequest",
    "ConnectorRevokedError",
    "Intent",
    "Polled",
    "ProfileSpec",
    "Registration",
    "RevocationTask",
    "ServiceClient",
    "ServiceError",
    "ServiceUnavailable",
    "StaleEpochError",
    "Superseded",
    "Uncertain",
    "UploadItem",
    "tls_context",
]
