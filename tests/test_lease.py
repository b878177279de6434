"""LeaseAccount: local spending of store-granted tokens."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ratemw.leases.account import LeaseAccount


def test_new_account_holds_nothing_and_needs_a_lease() -> None:
    account = LeaseAccount()
    assert account.tokens == 0
    assert not account.spend(1, 0.0)
    assert account.needs_refresh(0.0)
    assert account.leftover(0.0) == 0


def test_spend_within_grant_and_deadline() -> None:
    account = LeaseAccount()
    account.grant(10, deadline=11.0, now=10.0)
    assert account.spend(4, 10.1)
    assert account.spend(6, 10.2)
    assert not account.spend(1, 10.3)
    assert account.tokens == 0
    account.refund(2)
    assert account.spend(2, 10.4)


def test_expired_lease_cannot_be_spent_and_is_returned() -> None:
    account = LeaseAccount()
    account.grant(10, deadline=11.0, now=10.0)
    assert account.spend(3, 10.5)
    assert account.leftover(10.9) == 0  # still live
    assert not account.spend(1, 11.0)
    assert account.leftover(11.0) == 7
    assert account.expire() == 7
    assert account.tokens == 0
    assert account.expire() == 0


def test_needs_refresh_when_low_or_late() -> None:
    account = LeaseAccount()
    account.grant(20, deadline=2.0, now=1.0)
    assert not account.needs_refresh(1.1)
    assert account.needs_refresh(1.8)  # last 20 % of the lifetime
    assert account.spend(18, 1.1)
    assert not account.needs_refresh(1.1)  # 2 of 20 is exactly 10 %
    assert account.spend(1, 1.1)
    assert account.needs_refresh(1.1)


def test_grant_merges_live_tokens_and_drops_expired_ones() -> None:
    account = LeaseAccount()
    account.grant(5, deadline=2.0, now=1.0)
    account.grant(5, deadline=2.5, now=1.5)
    assert account.tokens == 10
    assert account.deadline == 2.5
    account.grant(3, deadline=4.0, now=3.0)  # the 10 expired unreturned: not revived
    assert account.tokens == 3


@settings(deadline=None, max_examples=200)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["grant", "spend", "refund", "expire"]),
            st.integers(min_value=1, max_value=10),
            st.floats(min_value=0.0, max_value=0.7),
        ),
        max_size=50,
    )
)
def test_never_spends_more_than_granted_minus_returned(
    ops: list[tuple[str, int, float]],
) -> None:
    account = LeaseAccount()
    now = 0.0
    granted = returned = spent = 0
    spends: list[int] = []
    for op, n, dt in ops:
        now += dt
        if op == "grant":
            account.grant(n, now + 1.0, now)
            granted += n
        elif op == "spend":
            if account.spend(n, now):
                spent += n
                spends.append(n)
        elif op == "refund" and spends:
            cost = spends.pop()
            account.refund(cost)
            spent -= cost
        elif op == "expire":
            returned += account.expire()
        assert account.tokens >= 0
        assert spent <= granted - returned
