"""The benchmark's window accounting (``chaos.bench._pki_phases.credit``)."""

from __future__ import annotations

from chaos.bench._pki_phases import credit


def test_items_inside_count_whole_and_items_cut_by_the_end_count_by_their_share() -> None:
    spans = [(0.0, 1.0), (1.0, 2.0), (2.0, 4.0)]  # the last one is half outside [0, 3]
    assert credit(spans, 0.0, 3.0) == 2.5


def test_degenerate_spans_are_ignored() -> None:
    assert credit([(1.0, 1.0)], 0.0, 2.0) == 0.0
