from __future__ import annotations

from mailgate.core.limits import SlidingWindow


def test_limit_per_key_within_the_window() -> None:
    window = SlidingWindow(limit=3, window=60)
    assert [window.allow("10.0.0.1", t) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert window.allow("10.0.0.2", 3)
    assert not window.allow("10.0.0.1", 59.9)
    assert window.allow("10.0.0.1", 60.5)


def test_refused_events_do_not_count() -> None:
    window = SlidingWindow(limit=1, window=10)
    assert window.allow("a", 0)
    assert not window.allow("a", 5)
    assert window.allow("a", 10.1)


def test_stale_keys_are_pruned() -> None:
    window = SlidingWindow(limit=5, window=1)
    for i in range(2048):
        window.allow(f"ip{i}", float(i))
    assert len(window) < 1100
