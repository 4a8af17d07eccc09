"""``pfxha service import-pfx``: seal a user's PFX to the service's KRA and upload it.

    pfxha service import-pfx --url https://service:8443 --user ann \\
        --profile smime-imported --pfx ann.p12 --password-file ann.pass \\
        --admin-token-file admin-token [--cacert service-ca.pem]

What Intune's import tool does: the PFX is opened here with its password (from
a 0600 file, never an argument), re-packed without one and sealed as CMS
EnvelopedData to the KRA certificate the service publishes to admins
(``GET /api/v1/admin/kra-certificate``), so only the service can open it and
nothing readable crosses the wire. Prints the service's answer as JSON.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import click
import httpx
from cryptography import x509

from chaos.service.cli import check_private
from connector.pki.envelope import seal
from connector.pki.pfx import PfxError, load_pfx, pack_pfx

__all__ = ["import_pfx", "sealed_for_import"]


def _secret(path: Path, option: str) -> str:
    check_private(path, option)
    return path.read_text().strip()


def sealed_for_import(pfx: bytes, password: bytes | None, kra: x509.Certificate) -> bytes:
    """The PFX re-packed without a password and sealed to ``kra`` (raises PfxError)."""
    key, cert, chain = load_pfx(pfx, password)
    return seal(pack_pfx(key, cert, chain, friendly_name="imported"), kra)


@click.command("import-pfx")
@click.option("--url", required=True, help="The service, e.g. https://service:8443")
@click.option("--user", "user_id", required=True, help="The user the PFX belongs to.")
@click.option("--profile", "profile_id", required=True, help="An imported-PFX profile.")
@click.option(
    "--pfx", "pfx_path", required=True, type=click.Path(path_type=Path, exists=True, dir_okay=False)
)
@click.option(
    "--password-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="File holding the PFX password (mode 0600); none: the PFX has no password.",
)
@click.option(
    "--admin-token-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="File holding the admin token (mode 0600); default: $PFXHA_ADMIN_TOKEN.",
)
@click.option(
    "--cacert",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="CA bundle that verifies the service's TLS certificate.",
)
def import_pfx(
    url: str,
    user_id: str,
    profile_id: str,
    pfx_path: Path,
    password_file: Path | None,
    admin_token_file: Path | None,
    cacert: Path | None,
) -> None:
    """Seal a PFX to the service's KRA and import it for a user."""
    password = _secret(password_file, "--password-file").encode() if password_file else None
    token = (
        _secret(admin_token_file, "--admin-token-file")
        if admin_token_file
        else os.environ.get("PFXHA_ADMIN_TOKEN", "")
    )
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    verify: str | bool = str(cacert) if cacert else True
    with httpx.Client(base_url=url, headers=headers, verify=verify, timeout=30.0) as client:
        try:
            answer = client.get("/api/v1/admin/kra-certificate")
            _refused(answer)
            kra = x509.load_pem_x509_certificate(answer.json()["certificate_pem"].encode())
            try:
                blob = sealed_for_import(pfx_path.read_bytes(), password, kra)
            except PfxError as exc:
                raise click.BadParameter(
                    f"{pfx_path}: {exc} (wrong or missing --password-file?)", param_hint="--pfx"
                ) from exc
            answer = client.post(
                f"/api/v1/admin/users/{user_id}/imported-pfx",
                json={"profile_id": profile_id, "envelope_b64": base64.b64encode(blob).decode()},
            )
            _refused(answer)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach the service at {url}: {exc}") from exc
    click.echo(json.dumps(answer.json(), indent=2))


def _refused(answer: httpx.Response) -> None:
    if answer.status_code >= 400:
        try:
            detail = answer.json().get("detail", answer.text)
        except ValueError:
            detail = answer.text
        raise click.ClickException(
            f"{answer.request.method} {answer.request.url.path}: {answer.status_code} {detail}"
        )
