"""Machine state engine: PLC state codes and liveness in, exact state intervals out.

Pure code, no I/O. One StateTracker per machine is fed that machine's samples in time order.

Rules (the same for the live path and for recomputation from storage):
- A state sample's code is mapped through the machine class's state_codes; a code found in no
  list, or a state sample of bad quality, is UNKNOWN (counted in `unmapped`), never guessed.
- Every sample of the machine, whatever its signal, proves the machine is talking (liveness).
- Between two consecutive samples at most `timeout_ns` apart the previous state holds.
- A silence longer than `timeout_ns` is UNKNOWN for its whole length, from the last sample
  before it to the first sample after it: we do not know when the machine stopped talking,
  so none of that time is credited as running nor blamed as down.
- After a silence (and before the first state sample) the state is UNKNOWN until a state
  sample arrives; a state sample in the same timestamp as the liveness sample wins at once.
- Samples older than the newest one seen are ignored (counted in `late`): a stop that was
  already reported cannot be rewritten by a straggler; recomputation sorts its input.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from gwanje.model import MachineState

Code = Optional[float | str]


def canonical_code(code: object) -> Code:
    """The one form of a PLC state code, for config keys and reported values alike: a number
    (bool, int, float, or text that reads as one: "3", " 3.0 ") is a float, other text is
    stripped text, anything else (None, NaN, a list) is None. So a PLC that sends "3" and one
    that sends 3 mean the same state, in the engine, the tiles and the alarm rules."""
    if isinstance(code, bool):
        return float(code)
    if isinstance(code, (int, float)):
        f = float(code)
        return f if math.isfinite(f) else None
    if isinstance(code, str):
        text = code.strip()
        try:
            f = float(text)
        except ValueError:
            return text or None
        return f if math.isfinite(f) else text
    return None


class CodeMap:
    """A machine class's PLC codes -> states; the only place a code gets its meaning."""

    __slots__ = ("_map",)

    def __init__(self, mapping: dict) -> None:
        self._map: dict[float | str, MachineState] = {}
        for code, state in mapping.items():
            key = canonical_code(code)
            if key is None:
                raise ValueError(f"state code {code!r} is not a number or text")
            if key in self._map and self._map[key] != state:
                raise ValueError(f"state code {code!r} appears in both {self._map[key].value} and {state.value}")
            self._map[key] = state

    def get(self, code: object) -> Optional[MachineState]:
        """The state the code means, or None when the config does not map it."""
        st = self._map.get(code)  # type: ignore[arg-type]  # the common case: a float as sent
        if st is None and type(code) is not float:
            key = canonical_code(code)
            st = self._map.get(key) if key is not None else None
        return st

    def state(self, code: object, bad: bool = False) -> MachineState:
        """The state of a state sample: a bad-quality sample or an unmapped code is UNKNOWN."""
        if bad:
            return MachineState.UNKNOWN
        return self.get(code) or MachineState.UNKNOWN

    def items(self):
        return self._map.items()


@dataclass(frozen=True, slots=True)
class StateInterval:
    start_ns: int
    end_ns: int
    state: MachineState
    code: Code = None

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    def clip(self, start_ns: int, end_ns: int) -> Optional["StateInterval"]:
        a, b = max(self.start_ns, start_ns), min(self.end_ns, end_ns)
        return StateInterval(a, b, self.state, self.code) if a < b else None


class StateTracker:
    def __init__(self, mapping: "CodeMap | dict", timeout_ns: int) -> None:
        self.mapping = mapping if isinstance(mapping, CodeMap) else CodeMap(mapping)
        self.timeout_ns = timeout_ns
        self.state = MachineState.UNKNOWN
        self.code: Code = None
        self.since_ns: Optional[int] = None  # start of the current (open) interval
        self.last_seen_ns: Optional[int] = None
        self.late = 0
        self.unmapped = 0

    def map_code(self, code: Code, bad: bool = False) -> MachineState:
        if bad or code is None:
            return MachineState.UNKNOWN
        st = self.mapping.get(code)
        if st is None:
            self.unmapped += 1
            return MachineState.UNKNOWN
        return st

    def feed(self, ts: int, code: Code = None, is_state: bool = False, bad: bool = False) -> list[StateInterval]:
        """One sample at ts (is_state: it carries a state code). Returns intervals closed by it."""
        closed: list[StateInterval] = []
        last = self.last_seen_ns
        if last is not None and ts < last:
            self.late += 1
            return closed
        if last is None:
            self.since_ns = ts
        elif ts - last > self.timeout_ns:
            self._close(last, closed)
            if last < ts:
                closed.append(StateInterval(last, ts, MachineState.UNKNOWN, None))
            self.state, self.code, self.since_ns = MachineState.UNKNOWN, None, ts
        self.last_seen_ns = ts
        if is_state:
            st = self.map_code(code, bad)
            c = None if bad else code
            if st != self.state or c != self.code:
                self._close(ts, closed)
                self.state, self.code, self.since_ns = st, c, ts
        return closed

    def _close(self, end: int, out: list[StateInterval]) -> None:
        if self.since_ns is not None and end > self.since_ns:
            out.append(StateInterval(self.since_ns, end, self.state, self.code))

    def open_intervals(self, now_ns: int) -> list[StateInterval]:
        """The not-yet-closed part up to now_ns: the current state while the machine is still
        within the timeout, then UNKNOWN if it has been silent too long."""
        if self.since_ns is None or self.last_seen_ns is None:
            return []
        last = self.last_seen_ns
        if now_ns - last > self.timeout_ns:
            out = []
            if last > self.since_ns:
                out.append(StateInterval(self.since_ns, last, self.state, self.code))
            if now_ns > last:
                out.append(StateInterval(last, now_ns, MachineState.UNKNOWN, None))
            return out
        end = max(now_ns, last)
        return [StateInterval(self.since_ns, end, self.state, self.code)] if end > self.since_ns else []


def merge_intervals(intervals: list[StateInterval]) -> list[StateInterval]:
    """Join touching intervals of the same state and code (they arise at batch boundaries)."""
    out: list[StateInterval] = []
    for iv in intervals:
        if out and out[-1].end_ns == iv.start_ns and out[-1].state == iv.state and out[-1].code == iv.code:
            out[-1] = StateInterval(out[-1].start_ns, iv.end_ns, iv.state, iv.code)
        else:
            out.append(iv)
    return out
