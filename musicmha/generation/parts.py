"""The band keeps playing: every part of the prompt's last bars plays on in a continuation, resting no longer
than it rested there.

A continuation's instruments are masked to the prompt's (musicmha.generation.controls), but which of them
play is the model's choice, and a model lost in a pop song's texture lets the bass, the vocal and the pads
drop out after the boundary (issue 27: 75% of the parts kept playing on average, 25% on some songs). A
`PartTracker` follows one row of the grammar bar by bar. At the end of the conditioning tokens (`anchor`)
it reads, for every instrument that plays in their last `WINDOW` bars, the longest run of bars it rested
there: its budget. From then on a bar line (or the piece's end) waits until every part whose budget is
spent has played in the bar, so a bass that played every bar plays every bar, and a part that rested for
three bars may rest for three. Parts the request's instrument rule forbids are left out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

WINDOW = 8  # bars of the prompt's end whose parts must keep playing


class PartTracker:
    def __init__(self) -> None:
        self.bars: deque[set[int]] = deque(maxlen=WINDOW)  # programs of the last complete bars
        self.current: set[int] = set()  # programs that played in the bar being written
        self.budget: dict[int, int] | None = None  # program -> bars it may rest (after anchor)
        self.silent: dict[int, int] = {}  # program -> complete bars since it last played

    def note(self, program: int) -> None:
        self.current.add(program)

    def bar_line(self) -> None:
        """A bar ends (a Bar token, not the piece's first)."""
        if self.budget is not None:
            for program in self.budget:
                self.silent[program] = 0 if program in self.current else self.silent[program] + 1
        self.bars.append(self.current)
        self.current = set()

    def anchor(self, allowed: Callable[[int], bool]) -> None:
        """The conditioning tokens end here: every allowed part of the last WINDOW bars (this one included)
        gets its budget, the longest run of bars it rested in them, and its rest so far."""
        window = [*self.bars, self.current][-WINDOW:]
        self.budget, self.silent = {}, {}
        for program in set().union(*window):
            if not allowed(program):
                continue
            played = [program in bar for bar in window]
            longest = run = 0
            for in_bar in played:
                run = 0 if in_bar else run + 1
                longest = max(longest, run)
            self.budget[program] = longest
            trailing = 0
            for in_bar in reversed(played[:-1]):  # complete bars only: the current one may still come
                if in_bar:
                    break
                trailing += 1
            self.silent[program] = 0 if played[-1] else trailing

    def waiting(self) -> set[int]:
        """The parts that must still play before this bar may end."""
        if not self.budget:
            return set()
        return {program for program, budget in self.budget.items()
                if program not in self.current and self.silent[program] + 1 > budget}
