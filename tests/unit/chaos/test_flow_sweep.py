"""``pfxha bench flow --sweep-rtt``: its option is checked before anything starts."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from chaos.bench.flow import command as bench_flow
from chaos.bench.flow_sweep import parse_rtts


def test_round_trips_are_seconds_separated_by_commas() -> None:
    assert parse_rtts("0,0.02, 0.08,0.15") == [0.0, 0.02, 0.08, 0.15]
    for bad in ("", "0,fast", "-0.02", "12"):
        with pytest.raises(ValueError, match="--sweep-rtt"):
            parse_rtts(bad)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sweep-rtt", "0,x"], "--sweep-rtt"),
        (["--sweep-rtt", "0,0.08", "--wan-rtt", "0.08"], "not with --*-rtt"),
        (["--sweep-rtt", "0", "--zk-rtt", "0.001"], "not with --*-rtt"),
    ],
)
def test_a_bad_sweep_is_refused_before_anything_starts(args: list[str], message: str) -> None:
    result = CliRunner().invoke(bench_flow, args)
    assert result.exit_code != 0, result.output
    assert message in result.output
