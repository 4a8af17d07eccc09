"""The elector's actions: what one :class:`~election._decide.Decision` does to ZooKeeper.

    advance = elector._execute(nodes, decision, snapshot, leader_version, started)
    elector.hand_over("c2", "cannot reach the service", budget)   # a leader's own yield

The loop (:mod:`election._elector`) reads a snapshot and decides; this module
carries the decision out, each action one ZooKeeper transaction where it can be
(take = new epoch + /leader + history; clear a crashed leader and take in one),
and moves the member's role with it. Nothing here decides: a lost race leaves
the nodes as they were and the next look decides again.

A mixin of :class:`election._elector.Elector` (its state is the elector's own).
"""

from __future__ import annotations

import logging
import threading

from kazoo.exceptions import KazooException, OperationTimeoutError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.security import ACL

from election._cluster_nodes import ClusterNodes
from election._decide import Action, Decision, Snapshot, successor
from election._epoch import EpochCounter
from election._errors import ElectionError
from election._lease import Lease
from election._member_node import MemberNode
from election._model import Candidate, FastPath, HistoryEntry, LeaderInfo, Role, utc_now_iso
from election._paths import ClusterPaths
from election._status import request_switchover
from election._yield_budget import HandOver, YieldBudget
from election._yield_budget import claim as claim_yield
from election._yield_budget import withdraw as withdraw_yield

__all__ = ["TRANSIENT_ZK_ERRORS", "LeaseActions"]

log = logging.getLogger("pfxha.election")

# ZooKeeper errors that say "try again", not "you may not".
TRANSIENT_ZK_ERRORS = (KazooException, KazooTimeoutError, OperationTimeoutError)


class LeaseActions(MemberNode):
    """Carry out decisions (see the module docstring)."""

    _my_node: str | None
    _epochs: EpochCounter
    _lease: Lease
    _lease_version: int
    _dead_leader: LeaderInfo | None
    _dead_attempts: int
    _release_reason: str | None
    _released: threading.Event
    _holdoff_until: float
    transitions: int
    paths: ClusterPaths
    _acl: list[ACL]

    def hand_over(self, to: str, reason: str, budget: YieldBudget, *, kind: str = "y") -> HandOver:
        """Hand the lease to ``to`` through the switchover path, within the cluster's budget.

        Refused when we do not lead, when ``to`` is not in the election line, or
        when the yield budget of the window is spent (members then stop yielding).
        The budget is charged only for a hand-over that was requested.
        """
        client = self._client
        if self._role is not Role.LEADER or client is None:
            return HandOver(False, "not the leader")
        # The line of our last look saves a read on the failover path; the switchover
        # request checks it again against ZooKeeper (and a refusal returns the claim).
        if to not in self.line():
            return HandOver(False, f"{to} is not in the election line")
        try:
            claimed, used = claim_yield(
                client, self.paths, budget, self._acl, who=self.name, why=reason, kind=kind
            )
            if claimed is None:
                return HandOver(
                    False,
                    f"yield budget spent: {used} voluntary hand-overs in the last "
                    f"{budget.window_s:.0f}s (limit {budget.limit})",
                    budget_spent=True,
                )
            try:
                request_switchover(
                    client, self.config.cluster, to, auth_digest=self.config.auth_digest
                )
            except ElectionError as exc:
                withdraw_yield(client, claimed)
                return HandOver(False, f"switchover to {to} not requested: {exc}")
        except TRANSIENT_ZK_ERRORS as exc:
            return HandOver(False, f"ZooKeeper did not answer: {exc!r}")
        log.warning(
            "[5032] %s hands the lease to %s: %s",
            self.name,
            to,
            reason,
            extra={"event_id": 5032, "to": to, "reason": reason},
        )
        return HandOver(True, f"switchover to {to} requested")

    def _execute(
        self,
        nodes: ClusterNodes,
        decision: Decision,
        s: Snapshot,
        leader_version: int,
        started: float,
    ) -> bool:
        """Carry out ``decision``; True when the loop should look again at once."""
        action = decision.action
        if action is Action.WAIT:
            return False
        if action is Action.CONFIRM:
            assert s.leader is not None
            if s.leader.epoch != self._lease.epoch:
                self._step_down(nodes, s, f"/leader shows epoch {s.leader.epoch}")
                return True
            self._lease.confirm(started)
            return False
        if action is Action.JOIN:
            self._my_node = nodes.join(Candidate.prefix(self.name, self.config.priority))
            log.info(
                "[5010] %s joined the election line as %s",
                self.name,
                self._my_node,
                extra={"event_id": 5010},
            )
        elif action is Action.TAKE:
            self._take(nodes, s, started, decision.reason)
        elif action is Action.RESUME:
            self._resume(nodes, leader_version, started, decision.reason)
        elif action is Action.STEP_DOWN:
            self._step_down(nodes, s, decision.reason, leader_version)
        elif action is Action.RELEASE:
            self._release(nodes, s, decision.reason, leader_version)
        elif action is Action.DROP_SWITCHOVER:
            assert s.switchover is not None
            log.info(
                "[5031] switchover request dropped: %s", decision.reason, extra={"event_id": 5031}
            )
            nodes.drop_switchover(s.switchover)
            if not s.switchover.readable:
                self._notify("on_coordination_problem", "switchover", decision.reason)
        elif action is Action.CLEAR_DEAD:
            self._clear_dead(nodes, s, decision.reason, leader_version)
        elif action is Action.LEAVE:
            assert s.my_node is not None
            if nodes.leave(s.my_node):
                self._my_node = None
                log.info(
                    "[5012] %s left the election line: %s",
                    self.name,
                    decision.reason,
                    extra={"event_id": 5012},
                )
        elif action is Action.REQUEUE:
            self._do_requeue(nodes, s, decision.reason, leader_version)
        elif action is Action.CLEAR_FORGED:
            if nodes.delete_forged_leader(leader_version):
                log.error(
                    "[5117] %s removed a forged /leader (%s): %s",
                    self.name,
                    s.leader.name if s.leader is not None else "unreadable",
                    decision.reason,
                    extra={"event_id": 5117},
                )
                self._notify("on_coordination_problem", "leader", decision.reason)
        else:  # pragma: no cover
            raise AssertionError(f"unhandled action {action}")
        return True

    def _take(
        self,
        nodes: ClusterNodes,
        s: Snapshot,
        started: float,
        reason: str,
        clear: tuple[LeaderInfo, int] | None = None,
    ) -> bool:
        """New epoch + /leader in one transaction (first removing a crashed leader's nodes)."""
        assert s.my_node is not None
        value, version = self._next_epoch_base(nodes)
        epoch = value + 1
        info = self._leader_info(epoch, s.my_node)
        entry = HistoryEntry(epoch, self.name, info.since, reason)
        path = nodes.take(
            s.my_node, epoch, version, info, entry, switchover=s.switchover, clear=clear
        )
        if path is None:
            log.debug("take lease lost a race, a stale epoch guess or a pause; re-evaluating")
            self._epochs.missed()
            return False
        nodes.trim_history(path)
        self._epochs.committed(epoch, version + 1)
        self._lease_version = 0
        self._become_leader(epoch, started, reason)
        return True

    def _resume(
        self, nodes: ClusterNodes, leader_version: int, started: float, reason: str
    ) -> None:
        assert self._my_node is not None
        value, version = self._next_epoch_base(nodes)
        epoch = value + 1
        info = self._leader_info(epoch, self._my_node)
        entry = HistoryEntry(epoch, self.name, info.since, reason)
        path = nodes.resume(self._my_node, epoch, version, info, leader_version, entry)
        if path is None:
            log.debug("resume lost a race or a stale epoch guess; re-evaluating")
            self._epochs.missed()
            return
        nodes.trim_history(path)
        self._epochs.committed(epoch, version + 1)
        self._lease_version = leader_version + 1
        self._become_leader(epoch, started, reason)

    def _leader_info(self, epoch: int, node: str) -> LeaderInfo:
        """What /leader says of us under ``epoch``: our liveness socket and its incarnation."""
        liveness, incarnation = self._crash_path.serve()
        return LeaderInfo(
            self.name,
            epoch,
            utc_now_iso(),
            liveness=liveness,
            node=node,
            incarnation=incarnation,
        )

    def _next_epoch_base(self, nodes: ClusterNodes) -> tuple[int, int]:
        """(value, version) of /epoch to count on from; a bad value is reported, then repaired."""
        base = self._epochs.for_cas(nodes.read_epoch)
        if self._epochs.problem is not None:
            log.error(
                "[5116] %s does not believe the epoch counter: %s; counting on from %d",
                self.name,
                self._epochs.problem,
                base[0],
                extra={"event_id": 5116, "problem": self._epochs.problem},
            )
            self._notify("on_coordination_problem", "epoch", self._epochs.problem)
        return base

    def _step_down(
        self, nodes: ClusterNodes, s: Snapshot, reason: str, leader_version: int = -1
    ) -> None:
        if self._role is Role.LEADER:
            self._demote(Role.STANDBY, reason)
        if s.leader_is_mine:
            nodes.delete_leader(leader_version)
        self._crash_path.stop_serving()

    def _release(self, nodes: ClusterNodes, s: Snapshot, reason: str, leader_version: int) -> None:
        release_reason = self._release_reason
        self._demote(Role.STANDBY, release_reason or reason)
        honoured = s.switchover if s.switchover is not None and s.switchover.to is None else None
        done = nodes.release(leader_version, self._my_node, honoured)
        self._crash_path.stop_serving()
        if done:
            self._my_node = None
            # Stay out of line so the successor, not us, takes the lease.
            self._holdoff_until = self._clock() + self.config.holdoff_s
            log.info(
                "[5030] %s released the lease: %s",
                self.name,
                release_reason or reason,
                extra={"event_id": 5030},
            )
        with self._lock:
            self._release_reason = None
        self._released.set()

    def _do_requeue(
        self, nodes: ClusterNodes, s: Snapshot, reason: str, leader_version: int
    ) -> None:
        assert s.my_node is not None
        with self._lock:
            self._requeue = None  # asked once: the placement watch asks again if still due
        moved = nodes.requeue(
            s.my_node, Candidate.prefix(self.name, self.config.priority), leader_version
        )
        if moved is None:
            return
        self._my_node = moved
        log.info(
            "[5013] %s moved to the back of the election line as %s: %s",
            self.name,
            moved,
            reason,
            extra={"event_id": 5013},
        )

    def _clear_dead(self, nodes: ClusterNodes, s: Snapshot, reason: str, version: int) -> None:
        dead = s.leader
        assert dead is not None
        remaining = tuple(c for c in s.line if c.node != dead.node)
        nxt = successor(remaining, s.switchover)
        if nxt is not None and nxt.node == s.my_node:
            # We are next anyway: clear and take over in one transaction.
            done = self._take(nodes, s, self._clock(), reason, clear=(dead, version))
        else:
            done = nodes.clear_dead(dead, version)
        self._dead_attempts += 1
        if done or self._dead_attempts >= 3:
            with self._lock:
                if self._dead_leader is not None and self._dead_leader.czxid == dead.czxid:
                    self._dead_leader = None
            self._dead_attempts = 0
        if not done:
            log.info(
                "[5023] crashed leader %s not cleared (already gone, or a race)",
                dead.name,
                extra={"event_id": 5023},
            )
            return
        log.warning(
            "[5020] cleared crashed leader %s (epoch %d): %s",
            dead.name,
            dead.epoch,
            reason,
            extra={"event_id": 5020},
        )

    def _become_leader(self, epoch: int, started: float, reason: str) -> None:
        self._lease.grant(epoch, started)
        self._elected_at = started
        self._holdoff_until = 0.0
        self._crash_path.close()
        log.info(
            "[5001] %s elected leader of %s with epoch %d: %s",
            self.name,
            self.config.cluster,
            epoch,
            reason,
            extra={"event_id": 5001},
        )
        self._set_role(Role.LEADER, f"{reason} (epoch {epoch})")
        self._notify("on_elected", epoch)

    def _demote(self, new: Role, reason: str) -> None:
        with self._lock:
            was_leader = self._role is Role.LEADER
        self._lease.end()
        if was_leader:
            log.warning("[5002] %s demoted: %s", self.name, reason, extra={"event_id": 5002})
            self._notify("on_demoted", reason)
        self._set_role(new, reason)

    def _set_role(self, new: Role, reason: str) -> None:
        with self._lock:
            old, self._role = self._role, new
        if old is new:
            return
        self.transitions += 1
        if new is Role.LEADER:
            # Written with the role below: no extra write for what a leader obviously is.
            self._publish_fast_path((FastPath.IDLE, ""), write=False)
        log.info(
            "[5003] %s role %s -> %s: %s",
            self.name,
            old.value,
            new.value,
            reason,
            extra={"event_id": 5003, "role": new.value, "reason": reason},
        )
        self._notify("on_role_change", old, new, reason)
        self._write_member()
