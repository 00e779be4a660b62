"""Grammar-constrained decoding for REMI-family token streams (torch only; no miditok import).

`TokenGrammar` follows each generated row token by token and gives, at every step, the mask of tokens that
keep the sequence valid: the token-type successions of the tokenizer (Pitch -> Velocity -> Duration,
Program before Pitch, ...), Positions that move forward inside a bar, and no pitch repeated by the same
program at the same position. These include every check of miditok's `tokens_errors`, so constrained samples
measure 0 errors; a note twice at one onset is refused even where the tokenizer would keep it, since no
listener can hear it and it only piles notes up. With `limit_chords`, chords also stay within the sizes the
conditioning music has (see `_refuse_full_chords`), so time must move on. Beyond syntax it keeps the drum kit's
Program_-1 with PitchDrum tokens (and other programs with Pitch), and holds the meter once a TimeSig is
known (the output keeps the prompt's time signatures, so a continuation written in another meter would be
misplaced against its bar lines).

The generation controls (musicmha.generation.controls) are masks here too: instruments outside an `InstrumentRule`,
end-of-piece before a `LengthRule` is met, and forced opening tokens. With `syntax=False` only those
controls apply (unconstrained sampling that still keeps its promises).

Each row's time is kept in bars, quarter notes and seconds (through the Tempo tokens it reads), which
generation uses to stop after a number of bars or seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from musicmha.data.vocabulary import DRUMS, GrammarSpec
from musicmha.generation.parts import PartTracker

if TYPE_CHECKING:
    from musicmha.generation.controls import InstrumentRule, LengthRule

NOTE_TYPES = ("Pitch", "PitchDrum", "NoteOn")
DEFAULT_CHORD_LIMIT = 10  # notes of one instrument at one onset, when the conditioning tokens show none


@dataclass
class _Row:
    previous: str | None = None  # type of the last token; None at the start of a piece
    position: int = -1
    program: int = 0
    pitches: dict[int, set[int]] = field(default_factory=dict)
    bars: int = 0  # Bar tokens seen
    bar_start: float = 0.0  # quarter notes from the start to the current bar
    bar_positions: int = 32  # positions in the current bar (numerator * positions_per_beat)
    quarters_per_position: float = 0.125
    time_signature: int | None = None  # id of the TimeSig token in effect
    qpm: float = 120.0  # tempo in effect (miditok's default before any Tempo token)
    tempo_quarters: float = 0.0  # where that tempo started, in quarters ...
    tempo_seconds: float = 0.0  # ... and in seconds
    start_bars: int = 0  # time at the end of the conditioning tokens (see TokenGrammar.anchor)
    start_seconds: float = 0.0
    count: int = 0  # tokens since BOS, for the forced opening
    tempo_known: bool = False  # a Tempo token was read, or anchor() gave the tempo
    bar_notes: int = 0  # notes in the current bar
    largest_chord: dict[int, int] = field(default_factory=dict)  # program -> most notes at one onset so far
    chord_limit: dict[int, int] | None = None  # the largest chords of the conditioning tokens (limit_chords)
    parts: PartTracker = field(default_factory=PartTracker)  # who plays in each bar (keep_parts)
    finished: bool = False

    @property
    def quarters(self) -> float:
        """Time of the current position, in quarter notes since the first bar."""
        return self.bar_start + max(self.position, 0) * self.quarters_per_position

    @property
    def seconds(self) -> float:
        return self.tempo_seconds + (self.quarters - self.tempo_quarters) * 60.0 / self.qpm

    @property
    def new_bars(self) -> int:
        return self.bars - self.start_bars

    @property
    def new_seconds(self) -> float:
        return self.seconds - self.start_seconds


class TokenGrammar:
    """Call it with the sequences so far (B, T) to get the allowed-next-token mask (B, V)."""

    def __init__(self, spec: GrammarSpec, *, instruments: InstrumentRule | None = None,
                 length: LengthRule | None = None, opening: Sequence[int | None] = (), syntax: bool = True,
                 start_qpm: float = 120.0, hold_tempo: bool = False, no_empty_bars: bool = False,
                 limit_chords: bool = False, keep_parts: bool = False,
                 pitch_range: tuple[int, int] | None = None) -> None:
        self.spec, self.length, self.opening, self.syntax = spec, length, list(opening), syntax
        # The tempo holds once one is known (a prompt's, or the first one written from nothing): a model that
        # cannot use an instrument it was denied otherwise spends that probability on tempo changes, and a
        # continuation jumping between 40 and 250 BPM is the first thing a listener hears.
        self.hold_tempo = hold_tempo
        # A bar the model leaves empty still counts as a bar, so "8 bars" could end in silence (measured on
        # users' files: 12% of 8-bar continuations had empty last bars). With this, a new bar line needs a
        # note in the bar before it.
        self.no_empty_bars = no_empty_bars
        # An instrument's new chords hold no more notes than its largest chord in the conditioning tokens (an
        # instrument they lack: their largest chord; none at all: DEFAULT_CHORD_LIMIT). With no note twice at
        # one onset (always, with syntax), time must move on: an untrained or lost model once stacked 69 drum
        # hits on one tick, and two continuations piled 2,000 notes on the prompt's last onset.
        self.limit_chords = limit_chords
        # The parts of the conditioning music's last bars play on, resting no longer than they rested there
        # (musicmha.generation.parts): a bar line waits for a part whose rest is up.
        self.keep_parts = keep_parts
        self.start_qpm = start_qpm
        vocab = len(spec.tokens)
        self.types = [t.split("_", 1)[0] for t in spec.tokens]
        self.values = [t.split("_", 1)[1] if "_" in t else "" for t in spec.tokens]
        self.type_masks: dict[str, torch.Tensor] = {}
        for i, kind in enumerate(self.types):
            self.type_masks.setdefault(kind, torch.zeros(vocab, dtype=torch.bool))[i] = True
        self.specials = {spec.bos_id, spec.eos_id, spec.pad_id, *spec.special_ids}
        for special in self.specials:
            self.type_masks[self.types[special]][special] = False
        self.position_values = torch.tensor([int(v) if k == "Position" else -1
                                             for k, v in zip(self.types, self.values, strict=True)])
        self.pitch_values = torch.tensor([int(v) if k in NOTE_TYPES else -1
                                          for k, v in zip(self.types, self.values, strict=True)])
        self.start_types = {"Bar"} if "Bar" in spec.graph else set(spec.graph)
        empty = torch.zeros(vocab, dtype=torch.bool)
        self.drum_pitches = self.type_masks.get("PitchDrum", empty)
        # Tokens the instrument rule forbids: Program tokens outside it, and the drum pitches without drums.
        self.banned = empty.clone()
        if instruments is not None:
            for i, (kind, value) in enumerate(zip(self.types, self.values, strict=True)):
                if kind == "Program" and not instruments.allows(int(value)):
                    self.banned[i] = True
            if not instruments.drums:
                self.banned |= self.drum_pitches
        if pitch_range is not None:  # new pitched notes stay inside it (musicmha/generation/pitch_range.py)
            pitched = (self.pitch_values >= 0) & ~self.drum_pitches
            self.banned |= pitched & ((self.pitch_values < pitch_range[0]) | (self.pitch_values > pitch_range[1]))
        self.note_tokens = self.pitch_values >= 0  # every Pitch/PitchDrum/NoteOn token
        self.program_token = {int(v): i for i, (k, v) in enumerate(zip(self.types, self.values, strict=True))
                              if k == "Program"}
        self.rows: list[_Row] = []
        self._consumed = 0

    def reset(self, batch_size: int) -> None:
        self.rows = [self._new_row() for _ in range(batch_size)]
        self._consumed = 0

    def _new_row(self) -> _Row:
        ppb = self.spec.positions_per_beat  # 4/4 until a TimeSig says otherwise
        return _Row(bar_positions=4 * ppb, quarters_per_position=1.0 / ppb, qpm=self.start_qpm)

    def anchor(self, qpm: float | None = None) -> None:
        """Mark where the conditioning tokens end: lengths count from here. `qpm`, when given, is the tempo
        really in effect there (the prompt's exact tempo rather than its nearest token)."""
        for row in self.rows:
            if qpm is not None:
                row.tempo_seconds, row.tempo_quarters, row.qpm = row.seconds, row.quarters, qpm
                row.tempo_known = True
            row.start_bars, row.start_seconds = row.bars, row.seconds
            self._close_conditioning(row)

    def reached(self, sequences: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) bool: rows whose requested bars/seconds are complete (after reading `sequences`, if given: so it
        is also `generate`'s stop)."""
        if sequences is not None:
            self.follow(sequences)
        return torch.tensor([self.length is not None and self.length.reached(r.new_bars, r.new_seconds)
                             for r in self.rows], dtype=torch.bool)

    def advance(self, row: _Row, token: int) -> None:
        kind, value = self.types[token], self.values[token]
        if token == self.spec.bos_id:
            row.__dict__.update(self._new_row().__dict__)
            return
        if token == self.spec.eos_id:
            row.finished = True
            return
        if token in self.specials:  # PAD, or a sentinel that is not music
            return
        row.count += 1
        if kind == "Bar":
            if row.bars > 0:
                row.bar_start += row.bar_positions * row.quarters_per_position
                row.parts.bar_line()
            row.bars += 1
            row.position, row.pitches, row.bar_notes = -1, {}, 0
        elif kind == "TimeSig":
            numerator, denominator = (int(x) for x in value.split("/"))
            row.bar_positions = numerator * self.spec.positions_per_beat
            row.quarters_per_position = 4.0 / (denominator * self.spec.positions_per_beat)
            row.time_signature = token
        elif kind == "Position":
            row.position, row.pitches = int(value), {}
        elif kind == "Tempo":
            row.tempo_seconds, row.tempo_quarters, row.qpm = row.seconds, row.quarters, float(value)
            row.tempo_known = True
        elif kind == "Program":
            row.program = int(value)
        elif kind in NOTE_TYPES:
            chord = row.pitches.setdefault(row.program, set())
            chord.add(int(value))
            row.largest_chord[row.program] = max(row.largest_chord.get(row.program, 0), len(chord))
            row.parts.note(row.program)
            row.bar_notes += 1
        row.previous = kind

    def allowed(self, row: _Row) -> torch.Tensor:
        vocab = len(self.spec.tokens)
        mask = torch.zeros(vocab, dtype=torch.bool)
        if row.finished:
            mask[self.spec.eos_id] = True
            return mask
        if row.count < len(self.opening) and self.opening[row.count] is not None:
            mask[self.opening[row.count]] = True
            return mask
        may_end = self.length is None or self.length.may_end(row.new_bars, row.new_seconds)
        if not self.syntax:  # controls only: anything the rules allow, but never BOS/PAD mid-piece
            mask[:] = True
            mask[sorted(self.specials)] = False
            mask &= ~self.banned
            mask[self.spec.eos_id] = may_end
            return mask
        following = self.start_types if row.previous is None else self.spec.graph.get(row.previous, set())
        for kind in following:
            if kind in self.type_masks:
                mask |= self.type_masks[kind]
        if "Position" in following:  # forward in time, and inside the bar
            is_position = self.position_values >= 0
            mask &= ~(is_position & ((self.position_values <= row.position)
                                     | (self.position_values >= row.bar_positions)))
        if row.previous == "Program" and self.drum_pitches.any():  # the kit plays drum pitches, others pitches
            mask &= self.drum_pitches if row.program == DRUMS else ~self.drum_pitches
        if "TimeSig" in following and row.time_signature is not None:
            mask &= ~self.type_masks["TimeSig"]  # the meter holds (see the module docstring)
            mask[row.time_signature] = True
        if row.pitches.get(row.program):  # no note twice at one onset, pitch and instrument
            played = torch.tensor(sorted(row.pitches[row.program]))
            mask &= ~torch.isin(self.pitch_values, played)
        if self.limit_chords and row.chord_limit is not None:
            self._refuse_full_chords(row, mask)
        mask &= ~self.banned
        if self.hold_tempo and row.tempo_known and "Tempo" in self.type_masks:
            mask &= ~self.type_masks["Tempo"]
        if self.no_empty_bars and row.bars > 0 and row.bar_notes == 0 and "Bar" in self.type_masks:
            mask &= ~self.type_masks["Bar"]
        if row.previous is not None and "Bar" in following:
            mask[self.spec.eos_id] = may_end  # a piece may end wherever a new bar could start
        if self.keep_parts and row.parts.waiting():  # the bar (and the piece) waits for a part whose rest is up
            mask[self.spec.eos_id] = False
            if "Bar" in self.type_masks:
                mask &= ~self.type_masks["Bar"]
        if not mask.any():  # nothing fits (e.g. a bar already at its last position): start a new bar
            mask |= self.type_masks.get("Bar", torch.zeros(vocab, dtype=torch.bool))
            mask[self.spec.eos_id] = may_end or not mask.any()  # never an empty mask
        return mask

    def _close_conditioning(self, row: _Row) -> None:
        """The conditioning tokens end here: their largest chords and their parts become the limits."""
        row.chord_limit = dict(row.largest_chord)
        if self.keep_parts:
            row.parts.anchor(self._may_play)

    def _may_play(self, program: int) -> bool:
        """The instrument rule allows `program` (a Program token exists and is not banned)."""
        token = self.program_token.get(program)
        return token is not None and not bool(self.banned[token])

    def _refuse_full_chords(self, row: _Row, mask: torch.Tensor) -> None:
        """Mask, in place, the tokens that would grow a chord past its limit: the Program of every instrument
        whose chord at this onset is full, and every note while the current instrument's is."""
        limits = row.chord_limit or {}
        fallback = max(limits.values(), default=DEFAULT_CHORD_LIMIT)
        for program, chord in row.pitches.items():
            if len(chord) >= limits.get(program, fallback):
                if program in self.program_token:
                    mask[self.program_token[program]] = False
                if program == row.program:
                    mask &= ~self.note_tokens

    def prime(self, tokens: Sequence[int], batch_size: int, consumed: int) -> None:
        """Start every row in the state `tokens` leave it in, and treat the first `consumed` tokens of the
        sequences as already read. Infilling uses it: the sequence opens with a prefix · suffix scaffold, but
        the middle continues the prefix, so the grammar must stand at the prefix's end, not the suffix's."""
        self.reset(batch_size)
        for row in self.rows:
            for token in tokens:
                self.advance(row, token)
            self._close_conditioning(row)
        self._consumed = consumed

    def follow(self, sequences: torch.Tensor) -> None:
        """Advance every row over the tokens it has not seen yet (sequences only ever grow)."""
        if len(self.rows) != sequences.shape[0] or sequences.shape[1] < self._consumed:
            self.reset(sequences.shape[0])
        new = sequences[:, self._consumed:].tolist()
        for row, tokens in zip(self.rows, new, strict=True):
            for token in tokens:
                self.advance(row, token)
        self._consumed = sequences.shape[1]

    def __call__(self, sequences: torch.Tensor) -> torch.Tensor:
        self.follow(sequences)
        return torch.stack([self.allowed(row) for row in self.rows])
