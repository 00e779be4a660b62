"""The density control, kept by decoding (issue 28, item 3): every new bar holds the notes its level asks for.

A request's `density` is a level 1..7 (notes per bar, all parts and drums counted: musicmha.data.styles) or
"calmer"/"busier", one level from the prompt's own. A model trained with the Density_ tokens reads the level
after BOS, as in training; but measured on the long run's model, the token alone does not move the output
(docs/results.md §20: the same seed gave the same notes at every level). Training gave each row its own
density, which the music before a position already shows, so the token taught the model nothing the prompt
did not say. So the level is also kept here, for every model, by masking the grammar's choices bar by bar:

- a new bar that holds the level's most notes takes no new onset, instrument or note: only its bar line;
- a new bar with fewer than the level's least notes cannot end yet (its bar line and the piece's end wait),
  nor skip to an onset after which too few onsets are left for the notes it still needs (one a position), so
  a model that would rather rest is led to the least; where nothing else fits, the grammar's choice stands.

The rule holds from the end of the conditioning tokens, in the bar in progress there too (its notes before
the end count). The grammar's own rules come first: where the prompt's parts must play on (`keep_parts`) in a
bar already at its most, they still play, so a very calm level under a four-part prompt gets its four notes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from musicmha.data.styles import DENSITY_BOUNDS, DENSITY_LEVELS, RELATIVE_DENSITIES, check_density, density_level
from musicmha.data.vocabulary import GrammarSpec
from musicmha.generation.grammar import NOTE_TYPES, TokenGrammar


def level_bounds(level: int) -> tuple[int, int | None]:
    """(least, most) notes in a bar of a level, whose notes per bar lie in (lower bound, upper bound]; the
    densest level has no most, and every level holds at least one note."""
    check_density(level)
    low = DENSITY_BOUNDS[level - 2] if level > 1 else 0
    high = DENSITY_BOUNDS[level - 1] if level <= len(DENSITY_BOUNDS) else None
    return max(1, math.floor(low) + 1), (math.floor(high) if high is not None else None)


def prompt_level(spec: GrammarSpec, ids: Sequence[int]) -> int:
    """The density level of tokenized music: its notes per bar (one bar at least)."""
    notes = sum(spec.tokens[i].split("_", 1)[0] in NOTE_TYPES for i in ids)
    bars = sum(i == spec.bar_id for i in ids)
    return density_level(notes, bars)


def resolve_level(density: int | str | None, spec: GrammarSpec, prompt_ids: Sequence[int]) -> int | None:
    """The level a request's density asks for: itself, or one from the prompt's own for calmer/busier."""
    if density not in RELATIVE_DENSITIES:
        return density
    own = prompt_level(spec, prompt_ids)
    return min(DENSITY_LEVELS, max(1, own + (1 if density == "busier" else -1)))


class BarDensity:
    """A TokenGrammar's mask (the `allowed` of musicmha.generation.sampling.generate), narrowed so that every
    new bar holds between `level_bounds(level)` notes. It reads the grammar's rows, so the grammar must be the
    one that follows the sequences (its `stop` and time stay the grammar's)."""

    def __init__(self, grammar: TokenGrammar, level: int) -> None:
        self.grammar = grammar
        self.least, self.most = level_bounds(level)
        vocab = len(grammar.spec.tokens)
        none = torch.zeros(vocab, dtype=torch.bool)
        self.bar_line = grammar.type_masks.get("Bar", none).clone()
        self.bar_line[grammar.spec.eos_id] = True  # ending the piece ends the bar too
        self.positions = grammar.position_values.clone()  # -1 for every other token: never late
        self.onsets = grammar.note_tokens | grammar.type_masks.get("Position", none) \
            | grammar.type_masks.get("Program", none)

    def __call__(self, sequences: torch.Tensor) -> torch.Tensor:
        mask = self.grammar(sequences)
        for b, row in enumerate(self.grammar.rows):
            if row.finished or row.previous == "Program":  # a started note gets its pitch
                continue
            if self.most is not None and row.bar_notes >= self.most:
                narrowed = mask[b] & ~self.onsets
            elif row.bar_notes < self.least:
                needed = self.least - row.bar_notes  # onsets left from a position p: bar_positions - p
                late = (self.positions >= 0) & (self.positions > row.bar_positions - needed)
                narrowed = mask[b] & ~self.bar_line & ~late
            else:
                continue
            if narrowed.any():  # nothing else fits: the grammar's own choice stands
                mask[b] = narrowed
        return mask


def with_density(grammar: TokenGrammar, density: int | str | None, prompt_ids: Sequence[int]):
    """The grammar itself without a density; else the grammar narrowed to the level asked (calmer/busier: one
    from `prompt_ids`' own)."""
    if density is None:
        return grammar
    return BarDensity(grammar, resolve_level(density, grammar.spec, prompt_ids))
