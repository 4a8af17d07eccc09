"""Run a command under the seccomp filter a systemd unit would give it, without systemd.

    /usr/bin/python3 scripts/unit_seccomp.py deploy/systemd/pfxha-connector.service \\
        -- .venv/bin/pfxha connector run --config connector.toml
    /usr/bin/python3 scripts/unit_seccomp.py --print deploy/systemd/pfxha-connector.service

Runs with the *system* python3, which has libseccomp's bindings (Debian
``python3-seccomp``); the command it ``execv``s can be anything (the
virtual environment's ``pfxha``). What it reproduces from the unit's
``[Service]`` section, as systemd 252 builds it (``src/core/execute.c``,
``src/shared/seccomp-util.c``):

* ``SystemCallFilter=``: assignments in order; an empty one resets. When the
  first is not ``~`` the list is an allow list (and ``@default`` is always
  allowed); later plain entries add, ``~`` entries remove. Groups (``@...``)
  are expanded with ``systemd-analyze syscall-filter``, recursively. A
  system call outside the result gets ``SystemCallErrorNumber=`` (an errno
  such as ``EPERM``), or, when that is not set, kills the whole process with
  SIGSYS, which is systemd's default and what no Python handler can catch.
  A per-entry ``name:ERRNO`` is honoured.
* ``RestrictAddressFamilies=``: ``socket()`` with another family fails with
  ``EAFNOSUPPORT``, as a second, stacked filter (as systemd loads it).

Other hardening (``ProtectSystem=``, namespaces, capabilities) is not
reproduced: those make calls fail with an errno or a read-only file system,
they never kill. Exit status: the command's (a SIGSYS death shows as -31 /
159 to the caller), 2 for a unit this script cannot read.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

KILL = "kill"


def service_lines(unit: Path) -> list[tuple[str, str]]:
    """``(key, value)`` of every assignment in the unit's ``[Service]`` section, in order."""
    out: list[tuple[str, str]] = []
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section == "Service" and "=" in line:
            key, _, value = line.partition("=")
            out.append((key.strip(), value.strip()))
    return out


def syscall_groups() -> dict[str, list[str]]:
    """``@group -> entries`` (names and nested groups) from ``systemd-analyze``."""
    text = subprocess.run(
        ["systemd-analyze", "syscall-filter"], capture_output=True, text=True, check=True
    ).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not raw[0].isspace():
            current = groups.setdefault(line, []) if line.startswith("@") else None
        elif current is not None:
            current.append(line)
    return groups


def expand(
    entry: str, groups: dict[str, list[str]], seen: frozenset[str] = frozenset()
) -> set[str]:
    if not entry.startswith("@"):
        return {entry}
    if entry not in groups:
        raise SystemExit(f"unit_seccomp: unknown system call group {entry}")
    names: set[str] = set()
    for member in groups[entry]:
        if member not in seen:
            names |= expand(member, groups, seen | {entry})
    return names


def _errno(name: str) -> int:
    value = getattr(errno, name.upper(), None)
    if not isinstance(value, int):
        raise SystemExit(f"unit_seccomp: unknown errno {name!r}")
    return value


def syscall_policy(
    lines: list[tuple[str, str]], groups: dict[str, list[str]]
) -> tuple[bool, dict[str, int | None], int | None]:
    """``(allow_list, {syscall: errno or None}, default errno or None for kill)``.

    For an allow list the dict holds the allowed calls (value None); for a deny
    list the denied ones (value: a per-entry errno, or None for the default).
    """
    allow_list: bool | None = None
    chosen: dict[str, int | None] = {}
    default: int | None = None
    for key, value in lines:
        if key == "SystemCallErrorNumber":
            default = None if value in ("", KILL) else _errno(value)
        if key != "SystemCallFilter":
            continue
        if not value:
            allow_list, chosen = None, {}
            continue
        invert = value.startswith("~")
        words = value.removeprefix("~").split()
        if allow_list is None:
            allow_list = not invert
            if allow_list:
                chosen.update(dict.fromkeys(expand("@default", groups)))
        for word in words:
            name, _, err = word.partition(":")
            names = expand(name, groups)
            adding = invert != allow_list  # deny list: "~" adds; allow list: plain adds
            for each in names:
                if adding:
                    chosen[each] = _errno(err) if err else None
                else:
                    chosen.pop(each, None)
    return bool(allow_list), chosen, default


def address_families(lines: list[tuple[str, str]]) -> tuple[bool, set[int]] | None:
    """``(allow_list, families)`` from ``RestrictAddressFamilies=``, or None when unset."""
    policy: tuple[bool, set[int]] | None = None
    for key, value in lines:
        if key != "RestrictAddressFamilies":
            continue
        if not value:
            policy = None
            continue
        invert = value.startswith("~")
        families = {int(getattr(socket, w)) for w in value.removeprefix("~").split()}
        if value == "none":
            policy = (True, set())
        elif policy is None:
            policy = (not invert, families)
        elif policy[0] != invert:
            policy[1].update(families)
        else:
            policy[1].difference_update(families)
    return policy


def load_filters(lines: list[tuple[str, str]]) -> list[str]:
    """Load the unit's filters into this process (inherited across execve); returns notes."""
    import seccomp  # Debian python3-seccomp: only the system python3 has it

    notes: list[str] = []
    # The address-family filter first: once the system-call filter is loaded, seccomp()
    # itself may be refused.
    families = address_families(lines)
    if families is not None:
        allow, listed = families
        sockets = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        refuse = seccomp.ERRNO(errno.EAFNOSUPPORT)
        for family in range(64):
            if (family in listed) != allow:
                sockets.add_rule(refuse, "socket", seccomp.Arg(0, seccomp.EQ, family))
        if allow:
            sockets.add_rule(refuse, "socket", seccomp.Arg(0, seccomp.GE, 64))
        sockets.load()
        notes.append(f"address families {'allowed' if allow else 'refused'}: {sorted(listed)}")
    groups = syscall_groups()
    allow_list, chosen, default = syscall_policy(lines, groups)
    negative = seccomp.KILL_PROCESS if default is None else seccomp.ERRNO(default)
    if chosen or allow_list:
        syscalls = seccomp.SyscallFilter(defaction=negative if allow_list else seccomp.ALLOW)
        unknown = []
        for name, err in sorted(chosen.items()):
            denied = negative if err is None else seccomp.ERRNO(err)
            action = seccomp.ALLOW if allow_list else denied
            try:
                syscalls.add_rule(action, name)
            except (RuntimeError, ValueError):
                unknown.append(name)  # not a system call of this architecture
        syscalls.load()
        kind = "allowed" if allow_list else "denied"
        default_text = "kill (SIGSYS)" if default is None else errno.errorcode[default]
        notes.append(f"{len(chosen) - len(unknown)} system calls {kind}; others: {default_text}")
    return notes


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("unit", type=Path)
    parser.add_argument("--print", action="store_true", help="print the policy and exit")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        lines = service_lines(args.unit)
    except OSError as exc:
        print(f"unit_seccomp: cannot read {args.unit}: {exc}", file=sys.stderr)
        return 2
    if args.print:
        allow_list, chosen, default = syscall_policy(lines, syscall_groups())
        print(f"allow_list={allow_list} default={'kill' if default is None else default}")
        print(" ".join(sorted(chosen)))
        return 0
    if not command:
        parser.error("a command to run is required (after --)")
    for note in load_filters(lines):
        print(f"unit_seccomp: {note}", file=sys.stderr)
    os.execvp(command[0], command)  # noqa: S606 - the filter is inherited across execve
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
