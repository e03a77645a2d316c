"""Leader election judges a Lease's expiry by observed time (as client-go does): a Lease is expired
when its record has not CHANGED for its duration on our own monotonic clock, whatever the holder's
clock wrote in renewTime; and every apiserver call of the election has a deadline inside the Lease."""
from __future__ import annotations

import datetime
import types

import pytest

from finetune_operator.runtime import leader
from finetune_operator.runtime.leader import LeaseElector


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class FakeLeases:
    """A coordination API holding one Lease another replica renews (or stops renewing)."""

    def __init__(self, holder: str, renew_time: datetime.datetime, duration: int = 15):
        self.rv = 1
        self.spec = types.SimpleNamespace(holder_identity=holder, renew_time=renew_time, acquire_time=renew_time,
                                          lease_duration_seconds=duration, lease_transitions=0)
        self.replaced, self.timeouts = [], []

    def renew(self, renew_time):
        self.spec.renew_time, self.rv = renew_time, self.rv + 1

    def read_namespaced_lease(self, name, namespace, _request_timeout=None):
        self.timeouts.append(_request_timeout)
        return types.SimpleNamespace(spec=self.spec, metadata=types.SimpleNamespace(resource_version=str(self.rv)))

    def replace_namespaced_lease(self, name, namespace, body, _request_timeout=None):
        self.timeouts.append(_request_timeout)
        self.replaced.append(body)
        self.spec.holder_identity, self.rv = body["spec"]["holderIdentity"], self.rv + 1


UTC = datetime.timezone.utc


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(leader.time, "monotonic", c)
    return c


def candidate(api):
    return LeaseElector(api, "sys", "finetune-operator", identity="b", lease_seconds=15, renew_seconds=2)


def test_a_live_holder_whose_clock_is_behind_keeps_its_lease(clock):
    # The holder's clock runs an hour behind ours: its renewTime always looks an hour old.
    behind = datetime.datetime.now(UTC) - datetime.timedelta(hours=1)
    api = FakeLeases("a", behind)
    me = candidate(api)
    for step in range(10):
        assert me._try_acquire_or_renew() is False, f"took a live Lease at step {step}"
        clock.t += 2
        api.renew(behind + datetime.timedelta(seconds=2 * (step + 1)))
    assert api.replaced == []


def test_a_dead_holder_whose_clock_was_ahead_loses_its_lease_after_one_duration(clock):
    # The holder wrote renewTimes an hour in our future, then died.
    ahead = datetime.datetime.now(UTC) + datetime.timedelta(hours=1)
    api = FakeLeases("a", ahead)
    me = candidate(api)
    assert me._try_acquire_or_renew() is False, "first sight: not yet seen unchanged for a duration"
    clock.t += 10
    assert me._try_acquire_or_renew() is False
    clock.t += 6  # 16 s unchanged on our clock > 15 s lease
    assert me._try_acquire_or_renew() is True
    assert api.replaced[-1]["spec"]["holderIdentity"] == "b"


def test_a_renewal_seen_resets_the_observed_time(clock):
    now = datetime.datetime.now(UTC)
    api = FakeLeases("a", now)
    me = candidate(api)
    me._try_acquire_or_renew()
    clock.t += 14
    api.renew(now + datetime.timedelta(seconds=14))
    assert me._try_acquire_or_renew() is False
    clock.t += 14  # 28 s since first sight, but only 14 s since the record last changed
    assert me._try_acquire_or_renew() is False


def test_every_election_call_has_a_deadline_shorter_than_the_renew_deadline(clock):
    api = FakeLeases("a", datetime.datetime.now(UTC))
    me = candidate(api)
    me._try_acquire_or_renew()
    assert api.timeouts and all(t is not None and t < me.lease_seconds * 0.66 - me.renew_seconds + 1e-9
                                for t in api.timeouts)


@pytest.mark.parametrize("seen,record,expected_since", [
    (None, ("a", "t1", "1"), 50.0),              # first sight: now
    (("a", "t1", "1"), ("a", "t1", "1"), 10.0),  # unchanged: when first seen so
    (("a", "t1", "1"), ("a", "t2", "2"), 50.0),  # renewed: now
    (("a", "t1", "1"), ("c", "t1", "2"), 50.0),  # another holder: now
])
def test_observe_resets_only_when_the_record_changed(seen, record, expected_since):
    assert leader.observe(seen, 10.0, record, 50.0) == (record, expected_since)


@pytest.mark.parametrize("seen_at,now,is_expired", [(0.0, 15.0, False), (0.0, 15.1, True), (100.0, 90.0, False)])
def test_expired_is_measured_on_the_local_monotonic_clock(seen_at, now, is_expired):
    assert leader.expired(seen_at, now, 15) is is_expired
