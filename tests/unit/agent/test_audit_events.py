"""Every issuance and revocation event names the connector and the epoch (issue 17).

The check reads the source: each ``emit(log, Event.X, ...)`` call of an event in
:data:`AUDIT_EVENTS`, anywhere under ``connector/``, must pass ``connector=`` and
``epoch=``. A new call site that forgets one fails here, whatever path runs it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from connector.agent.events import AUDIT_EVENTS, Event

_ROOT = Path(__file__).resolve().parents[3] / "connector"


def _audit_calls() -> list[tuple[str, int, str, set[str]]]:
    """(file, line, event name, keyword names) of every emit of an audit event."""
    names = {e.name for e in AUDIT_EVENTS}
    found = []
    for path in sorted(_ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "emit"):
                continue
            for arg in node.args[1:2]:
                if isinstance(arg, ast.Attribute) and arg.attr in names:
                    keywords = {k.arg for k in node.keywords if k.arg}
                    found.append((str(path.relative_to(_ROOT)), node.lineno, arg.attr, keywords))
                elif isinstance(arg, ast.Name) and arg.id == "event":
                    # emit(log, event, ...) with a variable: checked like the others
                    keywords = {k.arg for k in node.keywords if k.arg}
                    found.append((str(path.relative_to(_ROOT)), node.lineno, "event", keywords))
    return found


def test_every_audit_event_call_names_connector_and_epoch() -> None:
    calls = _audit_calls()
    # The sites this rule is about exist (issuance, revocation, reconcile, sweep).
    events = {name for _, _, name, _ in calls}
    assert {"CERT_ISSUED", "CERT_REVOKED", "ORPHAN_REVOKED", "PFX_UPLOADED"} <= events
    missing = [
        f"{path}:{line} {name} lacks {sorted({'connector', 'epoch'} - keywords)}"
        for path, line, name, keywords in calls
        if not {"connector", "epoch"} <= keywords
    ]
    assert missing == []


def test_audit_events_are_the_issuance_and_revocation_of_one_certificate() -> None:
    assert Event.CERT_ISSUED in AUDIT_EVENTS
    assert all(1000 <= e < 4000 for e in AUDIT_EVENTS)
    assert Event.BATCH_RECEIVED not in AUDIT_EVENTS  # a batch names no certificate
