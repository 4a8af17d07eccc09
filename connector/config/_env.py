"""``PFXHA_*`` environment overrides laid over the parsed TOML file.

    data = apply_env(tomllib.loads(text), os.environ)   # then built and validated

A misspelt variable is an error that names the closest real one.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, NoReturn

from connector.config._settings import SECTIONS, CASettings, ConfigError

_ENV_PREFIX = "PFXHA_"

# PFXHA_* variables that other pfxha commands read; the connector leaves them be.
# Any other PFXHA_* variable that is not a connector setting is an error: a
# misspelt override would otherwise be ignored while the operator trusts it.
OTHER_COMMANDS_VARIABLES = frozenset(
    {
        "PFXHA_ZOOKEEPER_AUTH",  # pfxha status / switchover
        "PFXHA_CLUSTER",  # pfxha status / switchover
        "PFXHA_ENROLL_TOKEN",  # pfxha connector enroll
        "PFXHA_ADMIN_TOKEN",  # pfxha service run
        "PFXHA_LAB_DIR",  # chaos toolkit experiments
    }
)


def _env_key(name: str) -> str:
    return name.upper().replace("-", "_").replace(".", "_")


def apply_env(raw: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Overlay ``PFXHA_<SECTION>_<KEY>`` variables on the parsed file."""
    data: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in raw.items()}
    listed = data.get("ca", [])
    if not isinstance(listed, (list, Mapping)):
        raise ConfigError("ca", "must be a list of [[ca]] tables")
    cas: list[dict[str, Any]] = [dict(c) for c in listed if isinstance(c, Mapping)]
    if cas or "ca" in data:
        data["ca"] = cas
    for variable, value in sorted(environ.items()):
        if not variable.startswith(_ENV_PREFIX) or variable in OTHER_COMMANDS_VARIABLES:
            continue
        rest = variable[len(_ENV_PREFIX) :]
        section, _, key = rest.partition("_")
        section = section.lower()
        if section in SECTIONS:
            names = {_env_key(f.name): f.name for f in fields(SECTIONS[section])}
            if key not in names:
                _unknown_variable(variable)
            table = data.setdefault(section, {})
            if not isinstance(table, dict):
                raise ConfigError(section, "must be a table")
            table[names[key]] = value
        elif section == "ca":
            _apply_ca_env(data, cas, key, value)
        elif section == "templates":
            templates = data.setdefault("templates", {})
            if not isinstance(templates, dict):
                raise ConfigError("templates", "must be a table")
            match = [name for name in templates if _env_key(name) == key]
            templates[match[0] if match else key.lower().replace("_", "-")] = value
        else:
            _unknown_variable(variable)
    return data


def _known_variables() -> list[str]:
    names = [
        f"{_ENV_PREFIX}{section.upper()}_{_env_key(f.name)}"
        for section, cls in SECTIONS.items()
        for f in fields(cls)
    ]
    names += [f"{_ENV_PREFIX}CA_<NAME>_{_env_key(f.name)}" for f in fields(CASettings)]
    return [*names, f"{_ENV_PREFIX}TEMPLATES_<NAME>", *sorted(OTHER_COMMANDS_VARIABLES)]


def _unknown_variable(variable: str) -> NoReturn:
    close = difflib.get_close_matches(variable, _known_variables(), n=1, cutoff=0.8)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise ConfigError(
        variable,
        f"unknown environment variable: no connector setting has this name{hint} "
        f"(PFXHA_<SECTION>_<KEY>, PFXHA_CA_<NAME>_<KEY>, PFXHA_TEMPLATES_<NAME>)",
    )


def _apply_ca_env(data: dict[str, Any], cas: list[dict[str, Any]], key: str, value: str) -> None:
    settings = sorted((_env_key(f.name) for f in fields(CASettings)), key=len, reverse=True)
    for setting in settings:
        if key.endswith("_" + setting):
            ca_key = key[: -len(setting) - 1]
            field_name = setting.lower()
            break
    else:
        _unknown_variable(f"{_ENV_PREFIX}CA_{key}")
    for ca in cas:
        if _env_key(str(ca.get("name", ""))) == ca_key:
            ca[field_name] = value
            return
    cas.append({"name": ca_key.lower().replace("_", "-"), field_name: value})
    data["ca"] = cas
