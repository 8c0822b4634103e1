"""Count events per key in a sliding window, to cap connections and messages per client.

Time is an argument (seconds on any monotonic scale), so the limiter is pure
and testable without sleeping.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class SlidingWindow:
    """At most ``limit`` events per ``window`` seconds for each key."""

    limit: int
    window: float = 60.0
    _events: dict[str, deque[float]] = field(default_factory=dict)
    _checks: int = 0

    def allow(self, key: str, now: float) -> bool:
        """Record an event for ``key`` at ``now`` if under the limit; False when over it."""
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self.window:
            events.popleft()
        self._checks += 1
        if self._checks % 1024 == 0:
            self._prune(now)
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True

    def _prune(self, now: float) -> None:
        stale = [k for k, v in self._events.items() if not v or v[-1] <= now - self.window]
        for key in stale:
            del self._events[key]

    def __len__(self) -> int:
        return len(self._events)
