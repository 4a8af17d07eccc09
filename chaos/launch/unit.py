"""The systemd unit of a connector, read for the lab: its commands, environment and credentials.

    unit = SystemdUnit.read()                 # deploy/systemd/pfxha-connector.service
    argv = unit.command(unit.exec_start, prefixes, pfxha_script())
    unit.load_credentials(prefixes)           # LoadCredential= copies (0600), as systemd does
    run_checks({"c1": (host.wrap(pre_argv), env)})   # every ExecStartPre at once

``prefixes`` move the deployed paths into a lab connector's own tree
(:func:`chaos.launch.deployed.lab_prefixes`). Only what the lab can honour is
read: ``ExecStart=``, ``ExecStartPre=``, ``Environment=`` and ``LoadCredential=``;
the sandboxing lines are systemd's alone (tests/integration/deploy checks the
system-call filter separately).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from chaos.launch._process import LaunchError

__all__ = ["CONNECTOR_UNIT", "CREDENTIALS", "SystemdUnit", "moved", "pfxha_script", "run_checks"]

CONNECTOR_UNIT = (
    Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "pfxha-connector.service"
)
CREDENTIALS = "/run/credentials/pfxha-connector.service"


def moved(value: str, prefixes: Mapping[str, str]) -> str:
    """``value`` with the first matching path prefix replaced (else as is)."""
    for old, new in prefixes.items():
        if value == old or value.startswith(old + "/"):
            return new + value[len(old) :]
    return value


@dataclass(frozen=True)
class SystemdUnit:
    """The parts of pfxha-connector.service the lab follows: ExecStart(Pre), env, credentials."""

    exec_start: tuple[str, ...]
    exec_start_pre: tuple[str, ...]
    environment: Mapping[str, str]
    credentials: Mapping[str, str]  # LoadCredential=ID:SOURCE

    @classmethod
    def read(cls, path: Path = CONNECTOR_UNIT) -> SystemdUnit:
        return cls.parse(path.read_text())

    @classmethod
    def parse(cls, text: str) -> SystemdUnit:
        values: dict[str, list[str]] = {}
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith(("#", ";", "[")) and "=" in line:
                key, value = line.split("=", 1)
                values.setdefault(key.strip(), []).append(value.strip())
        try:
            (start,) = values["ExecStart"]
        except (KeyError, ValueError):
            raise LaunchError("the unit must have exactly one ExecStart=") from None
        pre = values.get("ExecStartPre", [])
        env: dict[str, str] = {}
        for each in values.get("Environment", []):
            for item in shlex.split(each):
                key, _, value = item.partition("=")
                env[key] = value
        creds = dict(c.split(":", 1) for c in values.get("LoadCredential", []))
        return cls(
            exec_start=tuple(shlex.split(start)),
            exec_start_pre=tuple(shlex.split(pre[0])) if pre else (),
            environment=env,
            credentials=creds,
        )

    def command(self, argv: tuple[str, ...], prefixes: Mapping[str, str], pfxha: str) -> list[str]:
        """``argv`` with the program replaced by ``pfxha`` and paths moved by ``prefixes``."""
        if not argv or Path(argv[0]).name != "pfxha":
            raise LaunchError(f"the unit runs {argv[:1]}, not pfxha")
        return [pfxha, *(moved(a, prefixes) for a in argv[1:])]

    def load_credentials(self, prefixes: Mapping[str, str]) -> Path:
        """Copy each credential's source (moved) to the credentials dir (0600), as systemd does."""
        target = Path(moved(CREDENTIALS, prefixes))
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, source in self.credentials.items():
            installed = Path(moved(source, prefixes))
            if not installed.is_file():
                raise LaunchError(f"LoadCredential={name}: {installed} was not installed")
            fd = os.open(target / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle, installed.open("rb") as src:
                shutil.copyfileobj(src, handle)
        return target


def pfxha_script() -> str:
    """The ``pfxha`` console script of this interpreter's environment (the unit's program)."""
    script = Path(sys.executable).with_name("pfxha")
    if not script.is_file():
        raise LaunchError(f"{script} missing: pfxha is not installed in this environment")
    return str(script)


def run_checks(commands: Mapping[str, tuple[list[str], Mapping[str, str]]]) -> None:
    """Run each connector's ExecStartPre (argv, extra env) at once; raise naming a failure."""
    runs = {
        name: subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for name, (argv, env) in commands.items()
    }
    failed = []
    for name, run in runs.items():
        out, _ = run.communicate(timeout=120)
        if run.returncode != 0:
            failed.append(f"connector {name}: ExecStartPre failed:\n{out.decode(errors='replace')}")
    if failed:
        raise LaunchError("\n".join(failed))
