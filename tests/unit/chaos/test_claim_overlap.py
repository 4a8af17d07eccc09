"""The election bench's dual-leader judgement: overlapping beliefs, not late packets."""

from __future__ import annotations

from chaos.bench.election import is_overlap


def test_a_claim_found_fresh_after_the_newer_epochs_first_is_an_overlap() -> None:
    assert is_overlap(10.5, 10.0)
    assert is_overlap(10.0, 10.0)


def test_a_claim_found_fresh_before_but_delivered_after_is_no_overlap() -> None:
    # The old leader checked its lease at 9.0, was paused, and sent at 12.0.
    assert not is_overlap(9.0, 10.0)


def test_claims_without_times_are_judged_as_before() -> None:
    assert is_overlap(None, 10.0)
    assert is_overlap(9.0, None)
