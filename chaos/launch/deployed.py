"""A connector set up the way deploy/ says: the reference config and the unit's command line.

    plan = TemplatePlan(values={("connector", "name"): "c1", ...},
                        prefixes=lab_prefixes(home), tables={"templates": {...}},
                        additions={"ca:primary": {"crl_url": "..."}, "loop": {...}})
    text = render_from_template(CONNECTOR_TEMPLATE.read_text(), plan)   # comments kept
    unit = SystemdUnit.read()                 # deploy/systemd/pfxha-connector.service
    install_files(tomllib.loads(template), unit, sources, plan.prefixes)  # step 3's files
    argv = unit.command(unit.exec_start, plan.prefixes, pfxha=".venv/bin/pfxha")
    unit.load_credentials(plan.prefixes)      # LoadCredential= copies, 0600

The hosts lab (``Lab(hosts=True)``) runs every connector like this instead of
from a lab-only format, so what an operator installs is what the drills
exercise. The template's own values stay, except for these substitutions
(documented in docs/chaos.md, "Hosts"; :data:`SUBSTITUTED` and
:data:`ADDED` name them, a test holds the lab to them):

- path prefixes: ``/etc/pfxha`` -> ``<home>/etc``, ``/var/lib/pfxha`` ->
  ``<home>/state`` (the unit's ``StateDirectory=``),
  ``/run/credentials/pfxha-connector.service`` -> ``<home>/credentials``
  (what systemd's ``LoadCredential=`` makes);
- values that name this lab: the connector's name and ZooKeeper user, the
  cluster, the ZooKeeper hosts and session timeout, the service URL, each CA's
  URL and certdb DSN, and the ``[templates]`` table (the lab's profiles);
- additions: each CA's ``crl_url`` (the lab's CRL server) and a ``[loop]``
  table (the lab's drill timings).

Every file the template names under ``/etc/pfxha`` is installed there (a copy
of the lab's), as docs/deployment.md step 3 has the operator do.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.launch._process import LaunchError
from chaos.launch.unit import CREDENTIALS, SystemdUnit, moved, pfxha_script

__all__ = [
    "ADDED",
    "CONNECTOR_TEMPLATE",
    "SUBSTITUTED",
    "LabConnector",
    "TemplatePlan",
    "deploy_config",
    "enroll_as_documented",
    "file_sources",
    "install_files",
    "lab_prefixes",
    "plan_for",
    "render_from_template",
    "template_paths",
    "toml_value",
]

_DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
CONNECTOR_TEMPLATE = _DEPLOY / "connector.toml"

ETC, STATE = "/etc/pfxha", "/var/lib/pfxha"

# (table, key) the lab may give another value; "ca" stands for every [[ca]].
SUBSTITUTED = frozenset(
    {
        ("connector", "name"),
        ("connector", "cluster"),
        ("zookeeper", "hosts"),
        ("zookeeper", "session_timeout"),
        ("zookeeper", "auth_user"),
        ("service", "url"),
        ("ca", "url"),
        ("ca", "certdb_dsn"),
        ("templates", "*"),
    }
)
# (table, key) the lab may add; ("loop", "*"): a whole [loop] table.
ADDED = frozenset({("ca", "crl_url"), ("ca", "timeout_s"), ("loop", "*")})

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?$")
_VALUE = r'"(?:[^"\\]|\\.)*"|\[[^\]]*\]|true|false|[-+0-9.eE_]+'
_KEY = re.compile(rf"^(\s*)([A-Za-z0-9_-]+)(\s*=\s*)({_VALUE})(\s*(?:#.*)?)$")


def toml_value(value: Any) -> str:
    """One TOML value: bool, number, list or (escaped) string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def lab_prefixes(home: Path) -> dict[str, str]:
    """Where the deployed paths live for one lab connector (its own tree under ``home``)."""
    return {
        ETC: str(home / "etc"),
        STATE: str(home / "state"),
        CREDENTIALS: str(home / "credentials"),
    }


@dataclass(frozen=True)
class TemplatePlan:
    """What changes between the reference template and one lab connector's config.

    ``values[(table, key)]``: a new value; a ``[[ca]]`` is the table ``ca:<name>``.
    ``tables[name]``: the table's keys replaced as a whole (``templates``).
    ``additions[table]``: keys added to an existing table, or a new table.
    ``prefixes``: path prefixes moved (:func:`lab_prefixes`), in every string value.
    """

    values: Mapping[tuple[str, str], Any] = field(default_factory=dict)
    prefixes: Mapping[str, str] = field(default_factory=dict)
    tables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    additions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def undocumented(self) -> list[str]:
        """Changes this plan makes that :data:`SUBSTITUTED`/:data:`ADDED` do not allow."""
        kind = _kind
        bad = [f"{t}.{k}" for t, k in self.values if (kind(t), k) not in SUBSTITUTED]
        bad += [f"{t}.*" for t in self.tables if (kind(t), "*") not in SUBSTITUTED]
        for table, keys in self.additions.items():
            if (kind(table), "*") in ADDED:
                continue
            bad += [f"{table}.{k}" for k in keys if (kind(table), k) not in ADDED]
        return bad


def _kind(table: str) -> str:
    return table.split(":", 1)[0]


def render_from_template(template: str, plan: TemplatePlan) -> str:
    """The template's text with ``plan`` applied; every other line (comments too) as is."""
    out: list[str] = []
    table = ""
    seen: set[str] = set()

    def close(current: str) -> None:
        extra = {k: v for k, v in plan.additions.get(current, {}).items()}
        if current in plan.tables:
            extra = {**plan.tables[current], **extra}
        if not extra:
            return
        at = len(out)
        while at > 0 and not out[at - 1].strip():
            at -= 1  # before the blank lines that end the table
        out[at:at] = [f"{k} = {toml_value(v)}" for k, v in extra.items()]

    for line in template.splitlines():
        header = _HEADER.match(line)
        if header:
            close(table)
            table = header.group(2)
            out.append(line)
            continue
        key = _KEY.match(line)
        if key is None:
            out.append(line)
            continue
        indent, name, equals, raw, rest = key.groups()
        if table == "ca" and name == "name":
            table = f"ca:{tomllib_string(raw)}"
        seen.add(table)
        if table in plan.tables:
            continue  # replaced as a whole at the table's end
        if (table, name) in plan.values:
            raw = toml_value(plan.values[(table, name)])
        elif raw.startswith('"'):
            raw = toml_value(moved(tomllib_string(raw), plan.prefixes))
        out.append(f"{indent}{name}{equals}{raw}{rest}")
    close(table)
    for new_table, keys in plan.additions.items():
        if new_table not in seen and not new_table.startswith("ca:"):
            out += ["", f"[{new_table}]"] + [f"{k} = {toml_value(v)}" for k, v in keys.items()]
    missing = [f"{t}.{k}" for t, k in plan.values if t not in seen]
    if missing:
        raise LaunchError(f"the template has no table for {', '.join(missing)}")
    return "\n".join(out) + "\n"


def tomllib_string(raw: str) -> str:
    """A basic TOML string literal's value (``"a\\"b"`` -> ``a"b``)."""
    import tomllib

    return str(tomllib.loads(f"v = {raw}")["v"])


def template_paths(config: Mapping[str, Any], prefix: str) -> dict[tuple[str, str], str]:
    """Every string value of a parsed config under ``prefix``: {(table, key): path}."""
    found: dict[tuple[str, str], str] = {}
    for table, body in config.items():
        rows = body if isinstance(body, list) else [body]
        for row in rows:
            if not isinstance(row, dict):
                continue
            name = f"{table}:{row['name']}" if isinstance(body, list) and "name" in row else table
            for key, value in row.items():
                if isinstance(value, str) and (value == prefix or value.startswith(prefix + "/")):
                    found[(name, key)] = value
    return found


def install_files(
    template: Mapping[str, Any],
    unit: SystemdUnit,
    sources: Mapping[tuple[str, str], str],
    prefixes: Mapping[str, str],
) -> list[Path]:
    """Install the lab's file for every path the template names, where it names it.

    ``sources[(table, key)]``: the lab's file for that setting. A credential
    (under ``/run/credentials/...``) goes where the unit's ``LoadCredential=``
    reads it (``/etc/pfxha/credentials/<id>``, 0600); the rest under
    ``/etc/pfxha`` (moved by ``prefixes``). Two settings naming one file must
    get the same content.
    """
    wanted: dict[Path, Path] = {}
    for (table, key), path in template_paths(template, CREDENTIALS).items():
        name = path.rsplit("/", 1)[-1]
        if name not in unit.credentials:
            raise LaunchError(f"{table}.{key} = {path}: the unit loads no credential {name!r}")
        wanted.setdefault(
            Path(moved(unit.credentials[name], prefixes)), Path(sources[(table, key)])
        )
    for (table, key), path in template_paths(template, ETC).items():
        if (table, key) not in sources:
            raise LaunchError(f"the lab has no file for {table}.{key} ({path})")
        wanted.setdefault(Path(moved(path, prefixes)), Path(sources[(table, key)]))
    installed = []
    for target, source in wanted.items():
        data = source.read_bytes()
        if target.exists() and target.read_bytes() != data:
            raise LaunchError(f"{target}: two settings name it with different files")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret = "credentials" in target.parts or target.suffix in (".key", ".password")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        installed.append(target)
    return installed


@dataclass(frozen=True)
class LabConnector:
    """One lab connector's own values, as the lab knows them (the plan's inputs)."""

    name: str
    cluster: str
    zk_hosts: str
    session_timeout: float
    service_url: str
    service_ca: Path
    templates: Mapping[str, list[str]]
    # Per CA name: url, certdb_dsn, crl_url and the files (auth_key_file, certificate, ...).
    cas: Mapping[str, Mapping[str, Any]]
    zk_password_file: Path
    loop: Mapping[str, Any] = field(default_factory=dict)


def plan_for(lab: LabConnector, home: Path) -> TemplatePlan:
    """The documented substitutions for ``lab`` (see the module docstring)."""
    values: dict[tuple[str, str], Any] = {
        ("connector", "name"): lab.name,
        ("connector", "cluster"): lab.cluster,
        ("zookeeper", "hosts"): lab.zk_hosts,
        ("zookeeper", "session_timeout"): lab.session_timeout,
        ("zookeeper", "auth_user"): lab.name,
        ("service", "url"): lab.service_url,
    }
    additions: dict[str, dict[str, Any]] = {}
    for ca, spec in lab.cas.items():
        values[(f"ca:{ca}", "url")] = spec["url"]
        values[(f"ca:{ca}", "certdb_dsn")] = spec["certdb_dsn"]
        added = {key: spec[key] for key in ("crl_url", "timeout_s") if spec.get(key)}
        if added:
            additions[f"ca:{ca}"] = added
    if lab.loop:
        additions["loop"] = dict(lab.loop)
    return TemplatePlan(
        values=values,
        prefixes=lab_prefixes(home),
        tables={"templates": {t: list(cas) for t, cas in lab.templates.items()}},
        additions=additions,
    )


def file_sources(lab: LabConnector) -> dict[tuple[str, str], str]:
    """The lab's file for each setting that names one."""
    sources = {
        ("zookeeper", "auth_password_file"): str(lab.zk_password_file),
        ("service", "ca_file"): str(lab.service_ca),
    }
    for ca, spec in lab.cas.items():
        for key, value in spec.items():
            if key.endswith(("_file", "certificate")) or key == "root":
                sources[(f"ca:{ca}", key)] = str(value)
    return sources


def deploy_config(lab: LabConnector, home: Path, unit: SystemdUnit) -> tuple[Path, TemplatePlan]:
    """Install ``lab``'s files and write its config from the template; (config path, plan)."""
    import tomllib

    template_text = CONNECTOR_TEMPLATE.read_text()
    template = tomllib.loads(template_text)
    plan = plan_for(lab, home)
    problems = plan.undocumented()
    if problems:
        raise LaunchError(f"undocumented substitutions of the template: {', '.join(problems)}")
    templated_cas = {row["name"] for row in template.get("ca", [])}
    if templated_cas != set(lab.cas):
        raise LaunchError(
            f"the template's CAs {sorted(templated_cas)} are not the lab's {sorted(lab.cas)}"
        )
    install_files(template, unit, file_sources(lab), plan.prefixes)
    config = Path(moved(f"{ETC}/connector.toml", plan.prefixes))
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(render_from_template(template_text, plan))
    return config, plan


def enroll_as_documented(
    name: str,
    identity_dir: Path,
    *,
    service_url: str,
    token: str,
    wrap: Callable[[Sequence[str]], list[str]],
) -> None:
    """docs/deployment.md step 4 on a lab connector's host: the one-time token in a 0600
    file, ``pfxha connector enroll`` with the installed service CA, the token file gone.

    ``identity_dir`` is the template's ``identity_dir`` moved into the connector's
    tree (``<home>/state/identity``); ``wrap`` runs a command on its host.
    """
    import tomllib

    home = identity_dir.parent.parent
    template = tomllib.loads(CONNECTOR_TEMPLATE.read_text())
    service_ca = moved(str(template["service"]["ca_file"]), lab_prefixes(home))
    identity_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token_file = home / "enroll-token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    argv = [pfxha_script(), "connector", "enroll", "--service", service_url]
    argv += ["--token-file", str(token_file), "--ca-file", service_ca]
    argv += ["--out", str(identity_dir), "--name", name]
    try:
        run = subprocess.run(wrap(argv), capture_output=True, text=True, timeout=120)
    finally:
        token_file.unlink(missing_ok=True)
    if run.returncode != 0:
        raise LaunchError(f"pfxha connector enroll for {name} failed:\n{run.stdout}{run.stderr}")
