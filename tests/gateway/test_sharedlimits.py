"""Shared limiters on a fake clock: two workers' views of one agent never exceed its limit."""

from __future__ import annotations

from pathlib import Path

from corral.gateway.sharedlimits import LimitPlan, SharedByteQuota, SharedTokenBucket, Slot, build


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_two_workers_share_one_byte_quota(tmp_path: Path) -> None:
    clock = Clock()
    a, b = (SharedByteQuota(10_000, clock, Slot(str(tmp_path / "q"))) for _ in range(2))
    sent = 0
    for step in range(100):
        q = a if step % 3 else b
        if not q.spend(700):
            sent += 700
    assert 10_000 - 700 < sent <= 10_000
    assert a.retry_after() > 0 and b.retry_after() > 0
    clock.now += 3600  # the next window starts afresh for both
    assert not a.spend(700) and not b.spend(700)


def test_two_workers_share_one_token_bucket(tmp_path: Path) -> None:
    clock = Clock()
    a, b = (SharedTokenBucket(10, clock, Slot(str(tmp_path / "r"))) for _ in range(2))
    passed = sum(1 for i in range(40) if (a if i % 2 else b).take() == 0)
    assert passed == 10
    clock.now += 6  # one token per 6 s
    assert a.take() == 0 and b.take() > 0


def test_replicas_divide_each_limit(tmp_path: Path) -> None:
    plan = LimitPlan(share=3, shared_dir=str(tmp_path))
    lim = build("agent", 10, 3_000_000, Clock(), plan)
    assert lim.key == (10, 3_000_000)  # rebuilt only when the policy's limits change
    assert lim.quota is not None and lim.quota.limit == 1_000_000
    assert LimitPlan(share=20).part(10) == 1
