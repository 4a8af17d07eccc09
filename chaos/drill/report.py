"""The drill's written outputs: ``report.md`` and ``timeline.png``.

    write_report(scenarios, events, out_dir / "report.md", command="pfxha drill ...")
    plot_timeline(events, out_dir / "timeline.png")

The timeline has two panels sharing the time axis: request latency (each
delivered certificate at the moment it was delivered, coloured by issuing
CA) and the leadership epoch over time as ZooKeeper showed it, with every
fault window shaded and labelled.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chaos.checkers.ops import DELIVERY, FAULT, LEADER, NEMESIS, OBSERVER
from chaos.drill.result import ScenarioResult
from chaos.history import Event

__all__ = ["FaultWindow", "fault_windows", "plot_timeline", "render_report", "write_report"]


@dataclass(frozen=True)
class FaultWindow:
    scenario: str
    round: int
    start: float
    end: float
    # What the fault was, when the scenario says (the random nemesis: its kind).
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.scenario


def fault_windows(events: Iterable[Event]) -> list[FaultWindow]:
    """Fault start -> heal (or end) per round, from the nemesis's events."""
    opened: dict[tuple[str, int], tuple[float, str]] = {}
    windows: list[FaultWindow] = []
    last_time = 0.0
    for event in events:
        last_time = max(last_time, event.time)
        if event.process != NEMESIS or event.f != FAULT or not isinstance(event.value, dict):
            continue
        key = (str(event.value.get("scenario")), int(event.value.get("round", 0)))
        phase = event.value.get("phase")
        if phase == "start":
            opened[key] = (event.time, str(event.value.get("kind") or ""))
        elif phase in ("heal", "end") and key in opened:
            start, label = opened.pop(key)
            windows.append(FaultWindow(key[0], key[1], start, event.time, label))
    windows.extend(
        FaultWindow(k[0], k[1], start, last_time, label) for k, (start, label) in opened.items()
    )
    return sorted(windows, key=lambda w: w.start)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_report(
    scenarios: Sequence[ScenarioResult],
    *,
    command: str = "",
    timeline: str | None = "timeline.png",
    generated: datetime.datetime | None = None,
) -> str:
    when = (generated or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    ok = all(not s.all_violations() for s in scenarios)
    lines = [
        "# pfxha drill report",
        "",
        f"Generated {when}. Verdict: **{'OK' if ok else 'VIOLATIONS FOUND'}**.",
        "",
    ]
    if command:
        lines += ["Command:", "", f"    {command}", ""]
    lines += [
        "Failover = fault injected -> first certificate delivered under the new epoch "
        "(CA-only faults: -> first certificate from the other CA; faults nobody can act "
        "through: heal -> first delivery). Percentiles are nearest-rank.",
        "",
        "| scenario | rounds | failover p50 s | p99 s | max s | created | delivered | failed "
        "| lost | duplicates | stale rejected | leader changes | violations |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scenarios:
        p50, p99, worst = s.failover_cells()
        lines.append(
            f"| {s.name} | {len(s.rounds)} | {p50} | {p99} | {worst} | {s.created} | "
            f"{s.delivered} | {s.failed} | {s.lost} | {s.duplicates} | "
            f"{s.stale_epoch_rejected} | {s.leader_changes} | {len(s.all_violations())} |"
        )
    lines.append("")
    if timeline:
        lines += [f"![timeline]({timeline})", ""]
    for s in scenarios:
        lines += [
            f"## {s.name}",
            "",
            "| round | old -> new leader | epoch | -> leader s | -> registered s "
            "| -> first delivery s | -> other CA s | failover s | delayed | worst latency s "
            "| leader changes |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in s.rounds:
            epochs = f"{r.old_epoch if r.old_epoch is not None else '-'} -> " + (
                f"{r.new_epoch}" if r.new_epoch is not None else "-"
            )
            lines.append(
                f"| {r.round}{' ' + r.fault if r.fault else ''} | "
                f"{r.old_leader or '-'} -> {r.new_leader or '-'} | {epochs} | "
                f"{_fmt(r.new_leader_s)} | {_fmt(r.registered_s)} | {_fmt(r.first_delivery_s)} "
                f"| {_fmt(r.other_ca_s)} | {_fmt(r.failover_s)} | {r.delayed_requests} | "
                f"{_fmt(r.worst_latency_s)} | {r.leader_changes} |"
            )
        attacks = s.attacks()
        if attacks:
            lines += ["", f"Attacks ({len(attacks)}, every round):", "", "| attack | outcome |"]
            lines += ["|---|---|"] + [f"| {a} | {o} |" for a, o in attacks.items()]
        late = [r for r in s.rounds if r.keys_in_doubt is not None]
        if late:
            lines += ["", "Late certificates (a stalled CA signed keys given up on):", ""]
            lines += [
                "| round | keys in doubt | late certificates | revoked |",
                "|---|---|---|---|",
            ]
            lines += [
                f"| {r.round} | {r.keys_in_doubt} | {r.late_certificates} | {r.late_revoked} |"
                for r in late
            ]
        notes = [f"round {r.round}: {n}" for r in s.rounds for n in r.notes]
        notes += [
            f"round {r.round}: the CA's cluster had a new active node {r.ca_elected_s:.3f} s "
            "after the fault"
            for r in s.rounds
            if r.ca_elected_s is not None
        ]
        if notes:
            lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
        violations = s.all_violations()
        lines += ["", "Violations: " + ("none." if not violations else ""), ""]
        lines += [f"- {v}" for v in violations]
        if violations:
            lines.append("")
    return "\n".join(lines) + "\n"


def write_report(
    scenarios: Sequence[ScenarioResult],
    path: Path,
    *,
    command: str = "",
    timeline: str | None = "timeline.png",
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(scenarios, command=command, timeline=timeline), "utf-8")


def plot_timeline(events: Sequence[Event], path: Path, *, title: str = "pfxha drill") -> None:
    """Request latency and leader epoch over time, fault windows shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    deliveries: dict[str, tuple[list[float], list[float]]] = {}
    epoch_t: list[float] = []
    epoch_v: list[float] = []
    for event in events:
        if event.process != OBSERVER or not isinstance(event.value, dict):
            continue
        if event.f == DELIVERY and event.value.get("latency") is not None:
            ca = str(event.value.get("issuer") or "?")
            xs, ys = deliveries.setdefault(ca, ([], []))
            xs.append(event.time)
            ys.append(float(event.value["latency"]))
        elif event.f == LEADER:
            epoch = event.value.get("epoch")
            epoch_t.append(float(event.value.get("at", event.time)))
            epoch_v.append(float(epoch) if event.value.get("name") and epoch is not None else 0.0)
    end = max((e.time for e in events), default=1.0)

    fig, (ax_lat, ax_epoch) = plt.subplots(
        2, 1, sharex=True, figsize=(12, 6.5), gridspec_kw={"height_ratios": [3, 2]}
    )
    for ca, (xs, ys) in sorted(deliveries.items()):
        ax_lat.scatter(xs, ys, s=8, label=f"delivered via {ca}", alpha=0.7)
    latencies = [y for _, ys in deliveries.values() for y in ys if y > 0]
    if latencies and max(latencies) / max(min(latencies), 1e-3) > 50:
        # A backlog after an outage would flatten everything else: log scale.
        ax_lat.set_yscale("log")
    ax_lat.set_ylabel("request latency (s)")
    ax_lat.set_title(title)
    ax_lat.grid(alpha=0.3)
    if deliveries:
        ax_lat.legend(loc="upper left", fontsize=8)
    if epoch_t:
        ax_epoch.step([*epoch_t, end], [*epoch_v, epoch_v[-1]], where="post", color="black")
    ax_epoch.set_ylabel("leader epoch (0 = none)")
    ax_epoch.set_xlabel("time since drill start (s)")
    ax_epoch.grid(alpha=0.3)
    colours = ["#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
               "#bcbd22", "#1f77b4", "#2ca02c", "#7f7f7f", "#aec7e8", "#ff9896"]  # fmt: skip
    names = sorted({w.name for w in fault_windows(events)})
    for window in fault_windows(events):
        colour = colours[names.index(window.name) % len(colours)]
        for ax in (ax_lat, ax_epoch):
            ax.axvspan(window.start, max(window.end, window.start + 0.05), color=colour, alpha=0.15)
        ax_lat.annotate(
            f"{window.name} #{window.round}",
            xy=(window.start, 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=6,
            rotation=90,
            va="top",
            color=colour,
        )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
