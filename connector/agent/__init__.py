"""The connector agent: snapshot -> pure decide() -> thin executor, in a steady loop.

Modules: :mod:`~connector.agent.snapshot` (what a turn sees),
:mod:`~connector.agent.decide` (what it does, pure), :mod:`~connector.agent.executor`
(doing it, each side effect fenced by a fresh epoch), :mod:`~connector.agent.reconcile`
(takeover clean-up), :mod:`~connector.agent.loop` (wiring and the run loop),
:mod:`~connector.agent.events` (stable event IDs).
"""
