"""The mask that writes a new part into a piece: interleaved constrained decoding over the piece's own tokens.

The piece is one REMI stream sorted by time (Bar, TimeSig, Position, Tempo, then Program, Pitch, Velocity,
Duration per note). `PartWalk` follows each sampled row through that stream and, at every step, allows:

- the piece's next token (a forced continuation: the existing music comes back token for token), and,
  inside the bar range, where the stream may take a note there,
- a new note of the part at the current onset (`Program_P`), once that onset's existing notes are all
  written (where the tokenizer itself puts a track added last), or a new onset strictly between the current
  position and the piece's next onset in this bar (`Position_x`, then `Program_P` only);
- inside a new note, its Pitch (PitchDrum for the kit) in the part's range, above the part's other new
  notes at this onset (the tokenizer's order) and never a pitch the program already plays there, then any
  Velocity and Duration; then the walk goes back to the piece.

A chord of the new part holds at most `Part.chord_limit` notes and a bar at most `Part.bar_limit`, so the
walk always moves on; a bar of the range holds at least `Part.bar_minimum` (one by default): at the bar's last
chance (the piece's next token closes the bar) the piece waits while a new note still fits, so a part asked
for is never silent because the model hesitated. Outside the range only the piece's own tokens are allowed.
A row is done when it has read the bar line after the range (the rest of the piece is known: the model need
not read it), or EOS at the piece's end. It plugs into `sampling.generate` as its `allowed` mask and its
`stop`, like `TokenGrammar`, whose rows keep each walk's time (bar, position, meter, the pitches at this onset).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from musicmha.data.vocabulary import DRUMS, GrammarSpec
from musicmha.generation.grammar import TokenGrammar

NOTE_STEPS = {"Program": "Pitch", "Pitch": "Velocity", "Velocity": "Duration", "Duration": ""}  # "": the piece
ENDS_AN_ONSET = ("Position", "Bar", "EOS")  # the piece's next token, where the current onset's notes are all read


@dataclass(frozen=True)
class Part:
    """The new part: its program (DRUMS for the kit), pitch range [low, high], the bars it may play in
    (counted from 1, inclusive), and its limits per onset and per bar."""

    program: int
    low: int
    high: int
    first_bar: int
    last_bar: int
    chord_limit: int = 4
    bar_limit: int = 32
    bar_minimum: int = 1


@dataclass
class _Walk:
    next: int = 0  # index in the piece's tokens of the next one to come
    step: str = ""  # the token type a new note needs next ("Program", "Pitch", ...); "" on the piece
    chord: list[int] = field(default_factory=list)  # the part's new pitches at the current onset
    bar_notes: int = 0  # the part's new notes in the current bar
    new: list[int] = field(default_factory=list)  # the tokens this row wrote (not the piece's)
    done: bool = False


class PartWalk:
    """allowed(sequences (B, t)) -> (B, V) bool, and stop(sequences) -> (B,) bool, for `generate`. The
    sequences open with `offset` tokens (BOS, style, density) before the piece's `ids`; `end` is the index
    in `ids` of the bar line after the range (len(ids) when the range runs to the piece's end). With
    `time_from_offset`, the rows' time starts at `ids` (the opening is other music, as when the part is written
    after the other parts: musicmha/generation/part_after.py); else it counts the opening too."""

    def __init__(self, spec: GrammarSpec, ids: Sequence[int], part: Part | None, *, offset: int, end: int,
                 time_from_offset: bool = False) -> None:
        self.grammar = TokenGrammar(spec)  # reused for its rows' time and its token tables
        self.ids, self.part, self.offset, self.end = list(ids), part, offset, end
        self.time_from = offset if time_from_offset else 0
        self.eos = spec.eos_id
        types, g = self.grammar.types, self.grammar
        self.next_kind = [types[t] for t in self.ids] + ["EOS"]
        self.walks: list[_Walk] = []
        self._consumed = 0
        if part is None:  # the piece alone: the reference walk
            return
        self.program_id = g.program_token[part.program]
        kind = g.drum_pitches if part.program == DRUMS else g.note_tokens & ~g.drum_pitches
        self.pitches = kind & (g.pitch_values >= part.low) & (g.pitch_values <= part.high)
        self.note_masks = {step: g.type_masks[step] for step in ("Velocity", "Duration")}

    def reset(self, batch: int) -> None:
        self.grammar.reset(batch)
        self.walks = [_Walk() for _ in range(batch)]
        self._consumed = 0

    def follow(self, sequences: torch.Tensor) -> None:
        """Read every row's tokens it has not read yet (sequences only ever grow)."""
        if len(self.walks) != sequences.shape[0] or sequences.shape[1] < self._consumed:
            self.reset(sequences.shape[0])
        for b, tokens in enumerate(sequences[:, self._consumed:].tolist()):
            for column, token in enumerate(tokens, start=self._consumed):
                if column >= self.time_from:
                    self._advance(b, token, column >= self.offset)
        self._consumed = sequences.shape[1]

    def _advance(self, b: int, token: int, in_piece: bool) -> None:
        row, walk = self.grammar.rows[b], self.walks[b]
        self.grammar.advance(row, token)
        if token == self.eos:
            walk.done = True
        if not in_piece or walk.done:
            return
        kind = self.grammar.types[token]
        if kind in ("Bar", "Position"):
            walk.chord = []
            if kind == "Bar":
                walk.bar_notes = 0
        if walk.step == "" and walk.next < len(self.ids) and token == self.ids[walk.next]:
            walk.next += 1
            walk.done = walk.next > self.end
            return
        walk.new.append(token)
        if walk.step == "":  # a new onset, or a new note at this one
            walk.step = "Program" if kind == "Position" else "Pitch"
            return
        if walk.step == "Pitch":
            walk.chord.append(int(self.grammar.pitch_values[token]))
            walk.bar_notes += 1
        walk.step = NOTE_STEPS[walk.step]

    def _pitch_mask(self, b: int) -> torch.Tensor:
        """The pitches the part's next note at this onset may take."""
        row, walk = self.grammar.rows[b], self.walks[b]
        # pitched notes at one onset go up, as the tokenizer writes them; the kit keeps a file's own order (70
        # then 42), so its hits need only be new (measured: 7% of held-out drum tokens came after a higher one)
        floor = -1 if self.part.program == DRUMS else max(walk.chord, default=-1)
        mask = self.pitches & (self.grammar.pitch_values > floor)
        played = row.pitches.get(self.part.program)
        if played:
            mask &= ~torch.isin(self.grammar.pitch_values, torch.tensor(sorted(played)))
        return mask

    def allowed(self, b: int) -> torch.Tensor:
        """The tokens row b may take next."""
        walk, g = self.walks[b], self.grammar
        mask = torch.zeros(len(g.types), dtype=torch.bool)
        if walk.done:
            mask[self.eos] = True
            return mask
        if walk.step == "Program":
            mask[self.program_id] = True
        elif walk.step == "Pitch":
            mask |= self._pitch_mask(b)
        elif walk.step:
            mask |= self.note_masks[walk.step]
        else:
            piece_next = self.ids[walk.next] if walk.next < len(self.ids) else self.eos
            mask[piece_next] = True
            if self.part is not None and self._offer_new_notes(b, mask) and self._bar_still_short(b):
                mask[piece_next] = False  # the bar closes next: one of the offered notes comes first
        return mask

    def _bar_still_short(self, b: int) -> bool:
        """Whether the piece's next token closes a bar of the range that has fewer new notes than its minimum."""
        walk = self.walks[b]
        return self.next_kind[walk.next] in ("Bar", "EOS") and walk.bar_notes < self.part.bar_minimum

    def _offer_new_notes(self, b: int, mask: torch.Tensor) -> bool:
        """Add, in place, the starts of a new note that fit here (see the module docstring); say if any did."""
        row, walk, part, g = self.grammar.rows[b], self.walks[b], self.part, self.grammar
        following = self.next_kind[walk.next]
        if not part.first_bar <= row.bars <= part.last_bar or walk.bar_notes >= part.bar_limit \
                or following not in ENDS_AN_ONSET:
            return False
        offered = False
        if row.previous in ("Duration", "Tempo", "Position") and row.position >= 0 \
                and len(walk.chord) < part.chord_limit and bool(self._pitch_mask(b).any()):
            mask[self.program_id] = offered = True
        if row.previous in ("Duration", "Tempo", "TimeSig"):
            limit = int(g.position_values[self.ids[walk.next]]) if following == "Position" else row.bar_positions
            positions = (g.position_values > row.position) & (g.position_values < limit)
            mask |= positions
            offered = offered or bool(positions.any())
        return offered

    def __call__(self, sequences: torch.Tensor) -> torch.Tensor:
        self.follow(sequences)
        return torch.stack([self.allowed(b) for b in range(len(self.walks))])

    def stop(self, sequences: torch.Tensor) -> torch.Tensor:
        """(B,) bool: the rows that have read past the range (or the piece's end)."""
        self.follow(sequences)
        return torch.tensor([walk.done for walk in self.walks], dtype=torch.bool)

    def forced_count(self, b: int) -> int:
        """How many of the piece's tokens row b has read."""
        return self.walks[b].next
