"""What the alarm tests share: the repository path, a settable clock, time units."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
S = 10**9  # one second in ns


class Clock:
    """A clock the test sets (ns since epoch); services and notifiers read it."""

    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t
