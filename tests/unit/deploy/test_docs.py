"""The documents cannot drift from the code: their commands exist, their configs pass the check.

* Every ``pfxha ...`` command in a code block or inline code span of README.md
  and docs/deployment.md: each subcommand exists and each flag is one its
  ``pfxha <sub> --help`` lists (click, in-process).
* Every TOML example in README.md and docs/*.md: a whole config (it has
  ``[connector]``) is checked as it stands; a fragment is laid over a minimal
  config. Each is parsed, its files are created for real under a temporary
  directory (keys 0600, a CA chain, an enrolled identity) and checked as
  ``pfxha connector run --check`` checks them, including the election's rules.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from connector.cli import root
from connector.config import parse_config
from connector.config_files import file_problems
from tests.fixtures.config_files import with_placeholder_files

ROOT = Path(__file__).resolve().parents[3]
COMMAND_DOCS = [ROOT / "README.md", ROOT / "docs" / "deployment.md"]
TOML_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_INLINE = re.compile(r"`(pfxha [^`]+)`")  # may wrap over lines
_INDENTED = re.compile(r"^ {4}(.*\bpfxha .*)$", re.MULTILINE)  # an indented code block


def code_blocks(path: Path, language: str | None = None) -> Iterator[tuple[int, str, str]]:
    """``(line number, language, body)`` of each fenced block."""
    text = path.read_text()
    for match in _FENCE.finditer(text):
        if language is None or match.group(1) == language:
            yield text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2)


# -- commands -----------------------------------------------------------------------------


def _shell_lines(body: str) -> Iterator[str]:
    for line in body.replace("\\\n", " ").splitlines():
        for part in re.split(r"\s(?:\|\||&&|\||;)\s", line):
            yield part.split(" #", 1)[0].strip()


def pfxha_commands(path: Path) -> list[tuple[str, list[str]]]:
    """``(where, words after pfxha)`` for every pfxha command line in ``path``."""
    found: list[tuple[str, list[str]]] = []
    text = path.read_text()
    snippets = [(f"{path.name}:{line}", body) for line, _, body in code_blocks(path)]
    outside = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for pattern in (_INLINE, _INDENTED):
        for match in pattern.finditer(outside):
            line = outside.count("\n", 0, match.start()) + 1
            snippets.append((f"{path.name}:{line}", match.group(1).replace("\n", " ")))
    for where, body in snippets:
        for line in _shell_lines(body):
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                words = line.split()
            while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
                words = words[1:]  # VAR=value pfxha ...
            if words and (words[0] == "pfxha" or words[0].endswith("/bin/pfxha")):
                found.append((where, words[1:]))
    return found


def _help(path: list[str]) -> str:
    result = CliRunner().invoke(root, [*path, "--help"])
    assert result.exit_code == 0, f"pfxha {' '.join(path)} --help: {result.output}"
    return result.output


def _flags(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", help_text))


def _check_command(words: list[str]) -> list[str]:
    """Problems with one ``pfxha`` command line (empty: it exists as written)."""
    words = [w.strip("[]") for w in words]
    path: list[str] = []
    problems: list[str] = []
    help_text = _help(path)
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-"):
            flag = word.split("=", 1)[0]
            if flag not in _flags(help_text):
                problems.append(f"`pfxha {' '.join(path)}` has no option {flag}")
            i += 1
            continue
        subcommands = re.search(r"^Commands:\n(.*)", help_text, re.MULTILINE | re.DOTALL)
        if subcommands is None:
            i += 1  # an argument or an option's value
            continue
        names = set(re.findall(r"^  (\S+)", subcommands.group(1), re.MULTILINE))
        choices = [w for w in word.split("|") if w]
        missing = [c for c in choices if c not in names]
        if missing:
            # A value of a root/group option (pfxha --log-level DEBUG status) or a typo.
            if i > 0 and words[i - 1].startswith("-"):
                i += 1
                continue
            problems.append(f"`pfxha {' '.join(path)}` has no command {', '.join(missing)}")
            return problems
        for choice in choices[1:]:
            _help([*path, choice])
        path.append(choices[0])
        help_text = _help(path)
        i += 1
    return problems


def test_the_documents_name_commands_at_all() -> None:
    commands = [c for doc in COMMAND_DOCS for c in pfxha_commands(doc)]
    subcommands = {words[0] for _, words in commands if words}
    assert {"connector", "status", "switchover"} <= subcommands


@pytest.mark.parametrize("doc", COMMAND_DOCS, ids=lambda p: p.name)
def test_every_documented_command_and_flag_exists(doc: Path) -> None:
    problems = []
    for where, words in pfxha_commands(doc):
        problems += [f"{where}: {problem}" for problem in _check_command(words)]
    assert problems == []


def test_the_checker_catches_a_missing_flag_and_command() -> None:
    assert _check_command(["switchover", "--hosts", "h", "--auth-file", "f"]) == []
    assert _check_command(["status", "--hosts", "h", "--nope"]) == [
        "`pfxha status` has no option --nope"
    ]
    assert _check_command(["connector", "runn"]) == ["`pfxha connector` has no command runn"]
    assert _check_command(["lab", "up|down|status"]) == []


# -- TOML examples ------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "connector": {"name": "c1", "cluster": "docs"},
    "zookeeper": {"hosts": "zk1:2181"},
    "service": {"url": "https://svc:8443"},
    "ca": [
        {
            "name": "primary",
            "url": "http://ca1:8888",
            "auth_key_file": "/etc/pfxha/ca1.key",
            "certificate": "/etc/pfxha/ca1.pem",
            "root": "/etc/pfxha/root.pem",
            "certdb_dsn": "postgresql://pfxha_reader@ca1:5432/certdb_primary",
            "certdb_password_file": "/etc/pfxha/certdb-primary.password",
        }
    ],
    "templates": {"user-auth": ["primary"]},
}


def _overlay(base: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for section, value in fragment.items():
        if isinstance(value, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **value}
        elif section == "ca" and isinstance(value, list):
            # A [[ca]] fragment names a CA of the base and shows some of its settings.
            by_name = {c["name"]: c for c in merged["ca"]}
            merged[section] = [{**by_name.get(c.get("name"), {}), **c} for c in value]
        else:
            merged[section] = value
    return merged


def toml_examples() -> list[tuple[str, str]]:
    return [
        (f"{doc.relative_to(ROOT)}:{line}", body)
        for doc in TOML_DOCS
        for line, _, body in code_blocks(doc, "toml")
    ]


def test_the_documents_have_toml_examples() -> None:
    where = {w.split(":")[0] for w, _ in toml_examples()}
    assert {"README.md", "docs/connector.md", "docs/deployment.md"} <= where


@pytest.mark.parametrize(("where", "body"), toml_examples(), ids=lambda v: str(v)[:40])
def test_every_toml_example_passes_the_check(where: str, body: str, tmp_path: Path) -> None:
    raw = tomllib.loads(body)
    if "connector" not in raw:
        raw = _overlay(BASE, raw)
    config = parse_config(with_placeholder_files(raw, tmp_path), {})
    assert file_problems(config) == [], where
    config.election_config()


# -- the walk-through uses what the reference deployment needs ---------------------------

DEPLOYMENT = ROOT / "docs" / "deployment.md"


def test_the_walk_through_shows_the_reference_config() -> None:
    """The config in docs/deployment.md is deploy/systemd/connector.toml, setting for setting."""
    (block,) = [body for _, _, body in code_blocks(DEPLOYMENT, "toml")]
    reference = (ROOT / "deploy" / "systemd" / "connector.toml").read_text()
    assert tomllib.loads(block) == tomllib.loads(reference)


def test_the_walk_through_commands_carry_what_the_reference_setup_needs() -> None:
    """Digest ACLs: switchover needs credentials; tokens never on a command line."""
    commands = pfxha_commands(DEPLOYMENT)
    switchovers = [w for _, w in commands if w[:1] == ["switchover"] and "--hosts" in w]
    assert switchovers
    for words in switchovers:
        assert "--auth-file" in words, words
    (enroll,) = [words for _, words in commands if words[:2] == ["connector", "enroll"]]
    for flag in ("--token-file", "--ca-file", "--out", "--name"):
        assert flag in enroll
    reference = tomllib.loads((ROOT / "deploy" / "systemd" / "connector.toml").read_text())
    assert enroll[enroll.index("--out") + 1] == reference["service"]["identity_dir"]
    assert enroll[enroll.index("--ca-file") + 1] == reference["service"]["ca_file"]
    checks = [words for _, words in commands if "--check" in words]
    assert checks, "the walk-through runs `pfxha connector run --check`"
