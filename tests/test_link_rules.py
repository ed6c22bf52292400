"""The life of a link (app/link_rules.py): claim, resume, budget, window, revocation, settling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.link_rules import (
    BUDGET_FACTOR,
    BURNED,
    MAX_REQUESTS,
    RESERVE_BLOCK,
    LinkRefused,
    LinkState,
    admit,
    covers,
    reserve_more,
    revoke,
    settle,
    spent_reason,
    union,
)

SIZE = 1000
ETAG = "ab" * 32
WINDOW = 3600


def claim(state=None, *, rid="r1", now=100.0, ranged=False, planned=SIZE, etag=ETAG, size=SIZE, window=WINDOW,
          whole=False):
    return admit(state, rid=rid, now=now, window=window, etag=etag, size=size, ranged=ranged, planned=planned,
                 whole=whole)


def test_the_first_request_claims_and_reserves_what_it_plans():
    state, reserved = claim()
    assert reserved == SIZE
    assert state.claimed_at == 100.0 and state.etag == ETAG and state.size == SIZE
    assert state.sent == SIZE and state.pending == {"r1": SIZE} and state.requests == 1
    assert spent_reason(state, 101, WINDOW) is None  # claimed, not spent: the transfer is running


def test_a_completed_transfer_spends_the_link():
    state, _ = claim()
    state = settle(state, "r1", ((0, SIZE),), SIZE)
    assert state.complete and spent_reason(state, 101, WINDOW) == "completed"
    with pytest.raises(LinkRefused, match="completed"):
        claim(state, rid="r2", ranged=True)


def test_a_broken_transfer_resumes_with_range_only():
    state, _ = claim()
    state = settle(state, "r1", ((0, 400),), 500)  # 500 handed over, 400 written
    assert state.sent == 500 and not state.complete
    with pytest.raises(LinkRefused, match="second_copy"):
        claim(state, rid="r2", ranged=False)
    state, reserved = claim(state, rid="r2", ranged=True, planned=600)
    assert reserved == 600 and state.requests == 2
    state = settle(state, "r2", ((400, SIZE),), 600)
    assert spent_reason(state, 200, WINDOW) == "completed"
    assert state.sent == 1100  # what was written under the link, the overlap included


def test_parallel_segments_are_admitted_while_the_first_request_runs():
    """aria2c: a plain GET, then ranged segments while it still runs; the link is spent once they cover it all."""
    state, _ = claim(rid="a")
    for rid, (start, end) in zip("bcd", [(250, 500), (500, 750), (750, 1000)], strict=True):
        state, _ = claim(state, rid=rid, ranged=True, planned=end - start)
    state = settle(state, "a", ((0, 300),), 300)
    assert spent_reason(state, 101, WINDOW) is None
    for rid, span in zip("bcd", [(250, 500), (500, 750), (750, 1000)], strict=True):
        state = settle(state, rid, (span,), span[1] - span[0])
    assert state.covered == ((0, SIZE),) and spent_reason(state, 101, WINDOW) == "completed"


def test_reservations_stop_at_the_budget_whatever_the_order():
    state, _ = claim(planned=SIZE)
    budget = BUDGET_FACTOR * SIZE
    state, reserved = claim(state, rid="r2", ranged=True, planned=SIZE)
    assert state.sent == budget and reserved == SIZE
    with pytest.raises(LinkRefused, match="budget"):
        claim(state, rid="r3", ranged=True, planned=1)
    with pytest.raises(LinkRefused, match="budget"):
        reserve_more(state, "r2", 1)
    # r2 was broken at once: what it did not write comes back, and a later resume may use it.
    state = settle(state, "r2", (), 0)
    state, reserved = claim(state, rid="r3", ranged=True, planned=SIZE)
    assert reserved == SIZE


def test_large_packages_reserve_a_block_at_a_time():
    size = 10 * RESERVE_BLOCK
    state, reserved = claim(size=size, planned=size)
    assert reserved == RESERVE_BLOCK
    state, more = reserve_more(state, "r1", RESERVE_BLOCK)
    assert more == RESERVE_BLOCK and state.pending["r1"] == 2 * RESERVE_BLOCK


def test_nginx_reserves_the_whole_package_at_once():
    size = 10 * RESERVE_BLOCK
    state, reserved = claim(size=size, planned=size, whole=True)
    assert reserved == size


def test_the_window_closes_resumes():
    state, _ = claim(now=100.0)
    state = settle(state, "r1", ((0, 10),), 10)
    claim(state, rid="r2", ranged=True, now=100.0 + WINDOW, planned=10)
    with pytest.raises(LinkRefused, match="window"):
        claim(state, rid="r3", ranged=True, now=100.0 + WINDOW + 1, planned=10)
    assert spent_reason(state, 100.0 + WINDOW + 1, WINDOW) == "window"


def test_a_zero_window_is_strict_single_use():
    state, _ = claim(window=0)
    with pytest.raises(LinkRefused, match="used"):
        claim(state, rid="r2", ranged=True, window=0)


def test_a_package_changed_since_the_claim_is_never_mixed_in():
    state, _ = claim()
    state = settle(state, "r1", ((0, 10),), 10)
    with pytest.raises(LinkRefused, match="changed"):
        claim(state, rid="r2", ranged=True, etag="cd" * 32)


def test_revocation_before_and_after_the_claim():
    revoked = revoke(None, 50.0)
    with pytest.raises(LinkRefused, match="revoked"):
        claim(revoked)
    state, _ = claim()
    state = revoke(state, 150.0)
    assert revoke(state, 160.0).revoked_at == 150.0
    with pytest.raises(LinkRefused, match="revoked"):
        claim(state, rid="r2", ranged=True)
    # the running transfer may finish: it can still reserve and settle
    state, _ = reserve_more(state, "r1", 10)
    assert spent_reason(settle(state, "r1", ((0, 100),), 100), 151, WINDOW) == "revoked"


def test_a_claim_that_wrote_nothing_leaves_the_link_unused():
    state, _ = claim()
    assert settle(state, "r1", (), 0) is None
    # ... unless something else happened under it
    state, _ = claim()
    state, _ = claim(state, rid="r2", ranged=True, planned=10)
    assert settle(state, "r1", (), 0) is not None


def test_settling_twice_changes_nothing():
    state, _ = claim()
    once = settle(state, "r1", ((0, 100),), 100)
    assert settle(once, "r1", ((0, SIZE),), SIZE) == once


def test_the_number_of_requests_is_bounded():
    state, _ = claim(planned=1)
    state = settle(state, "r1", ((0, 1),), 1)
    for index in range(MAX_REQUESTS - 1):
        state, _ = claim(state, rid=f"x{index}", ranged=True, planned=1)
        state = settle(state, f"x{index}", ((1, 2),), 1)
    with pytest.raises(LinkRefused, match="budget"):
        claim(state, rid="last", ranged=True, planned=1)


def test_state_round_trips_through_json_and_old_burns_are_spent():
    state, _ = claim()
    state = settle(state, "r1", ((0, 10), (20, 30)), 30)
    assert LinkState.from_json(state.to_json()) == state
    legacy = LinkState.from_json(BURNED)
    assert spent_reason(legacy, 0, WINDOW) == "used"
    with pytest.raises(LinkRefused, match="used"):
        claim(legacy, ranged=True)


def test_an_empty_package_is_complete_once_claimed():
    state, reserved = claim(size=0, planned=0)
    assert reserved == 0
    assert spent_reason(settle(state, "r1", (), 0), 101, WINDOW) == "completed"


intervals = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=12)


@given(intervals)
def test_union_covers_exactly_the_same_points(spans):
    merged = union(tuple(spans))
    points = {p for start, end in spans for p in range(start, end)}
    assert {p for start, end in merged for p in range(start, end)} == points
    assert all(a[1] < b[0] for a, b in zip(merged, merged[1:], strict=False))  # sorted, disjoint, not touching


@given(intervals, st.integers(0, 60))
def test_covers_means_every_byte(spans, size):
    points = {p for start, end in spans for p in range(start, end)}
    assert covers(union(tuple(spans)), size) == all(p in points for p in range(size))


def test_an_assumed_claim_whose_one_write_failed_is_undone():
    """A body claimed as written whole (one write: a small package streamed, or sent whole by nginx) that then
    failed: nothing written leaves the link unused, nginx's report of 0 bytes ((0, 0)) included; part written is
    resumable."""
    whole = ((0, SIZE),)
    state, reserved = admit(None, rid="r1", now=100.0, window=WINDOW, etag=ETAG, size=SIZE, ranged=False,
                            planned=SIZE, whole=True, assume_written=whole)
    assert reserved == SIZE and spent_reason(state, 101.0, WINDOW) == "completed"
    assert settle(state, "r1", (), 0) is None
    assert settle(state, "r1", ((0, 0),), 0) is None
    broken = settle(state, "r1", ((0, 400),), 400)
    assert broken.covered == ((0, 400),) and broken.sent == 400 and spent_reason(broken, 101.0, WINDOW) is None
