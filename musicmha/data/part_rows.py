"""One part taken out of a REMI token stream, and put back: the data side of a trained add-part layout (issue 27,
item 3; docs/long-run.md, the next run's plan).

`split_part(ids, spec, program)` cuts a piece's tokens (REMI with programs: Bar, TimeSig, Position, Tempo,
then Program · Pitch · Velocity · Duration per note) into
- `others`: the same stream without the part's notes; a Position that held only the part's notes (and no
  Tempo) goes too, so the stream stays what the tokenizer would write for the piece without that part;
- `part`: the part alone on the same bars: every Bar (with its TimeSig), and a Position before each onset
  where the part plays, then its notes, in their order.

`merge_part(others, part, spec)` is the inverse: the notes of both at each (bar, position), the others' first,
as one stream; `split_part` then `merge_part` gives back the same notes (tests/data/test_part_rows.py).

The training task is `part_row`: a window's whole bars with one part p taken out and written again, in one
of two layouts (each announced by `FIM_Middle Program_p`):

    LEAD:   [Style Density]  FIM_Middle Program_p  others and part merged, the others one bar ahead
    AFTER:  [Style Density]  others (bars k..m without p)  FIM_Middle Program_p  part p (bars k..m)

In LEAD (the anticipation of Thickstun et al. 2023, by one bar) bar j of the stream holds the other parts'
bar j and the part's bar j - 1, so each note of the part is written having heard its own bar whole and the
next one up to its position, a few hundred tokens back at most; add_part then interleaves the part into the
others' stream moved a bar ahead (musicmha/generation/add_part.py, `_interleave`). In AFTER ("part in the middle", like our
FIM) the part hears everything, but must find its bar in the others' stream far back; measured, a model
fine-tuned on it had not learned that after 240 steps (docs/long-run.md, session 5). FIM_Middle never opens
a row's music or follows a plain stream in an infill row (there it follows FIM_Prefix/FIM_Suffix segments and
precedes a FIM_Bars token), so the tasks share the sentinel without ambiguity and the vocabulary does not
grow. No miditok here: the token names of the grammar spec say what each token is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from musicmha.data.vocabulary import GrammarSpec

NOTE_PARTS = ("Pitch", "PitchDrum", "Velocity", "Duration")


def _kind(spec: GrammarSpec, token: int) -> str:
    return spec.tokens[token].split("_", 1)[0]


def _events(ids: Sequence[int], spec: GrammarSpec) -> list[tuple[str, list[int]]]:
    """The stream as events: ("bar", [Bar, TimeSig...]), ("position", [Position, Tempo...]) and
    ("note", [Program, Pitch, Velocity, Duration]); other tokens (BOS, EOS, conditions) as ("other", [t])."""
    events: list[tuple[str, list[int]]] = []
    for token in ids:
        kind = _kind(spec, token)
        if kind == "Bar":
            events.append(("bar", [token]))
        elif kind == "Position":
            events.append(("position", [token]))
        elif kind == "Program":
            events.append(("note", [token]))
        elif kind in ("TimeSig", "Tempo") and events and events[-1][0] in ("bar", "position"):
            events[-1][1].append(token)
        elif kind in NOTE_PARTS and events and events[-1][0] == "note":
            events[-1][1].append(token)
        else:
            events.append(("other", [token]))
    return events


def split_part(ids: Sequence[int], spec: GrammarSpec, program: int) -> tuple[list[int], list[int]]:
    """(others, part) of a token stream for GM `program` (-1: the drum kit); see the module docstring."""
    program_name = f"Program_{program}"
    others: list[int] = []
    part: list[int] = []
    position: list[int] | None = None  # the current Position event, not yet written to either stream
    in_others = in_part = False
    for kind, tokens in _events(ids, spec):
        if kind == "bar":
            others += tokens
            part += [t for t in tokens if _kind(spec, t) in ("Bar", "TimeSig")]
            position, in_others, in_part = None, False, False
        elif kind == "position":
            position, in_others, in_part = tokens, False, False
            if len(tokens) > 1:  # a Tempo change stays in the others' stream, with its Position
                others += tokens
                in_others = True
        elif kind == "note":
            mine = spec.tokens[tokens[0]] == program_name
            if mine and not in_part and position is not None:
                part.append(position[0])
                in_part = True
            elif not mine and not in_others and position is not None:
                others += position
                in_others = True
            (part if mine else others).extend(tokens)
        else:
            others += tokens
    return others, part


def bar_skeleton(ids: Sequence[int], spec: GrammarSpec) -> list[int]:
    """The bar lines of a stream (each Bar with its TimeSig), no notes: the bars a new part is written over."""
    return [t for kind, tokens in _events(ids, spec) if kind == "bar" for t in tokens
            if _kind(spec, t) in ("Bar", "TimeSig")]


def _by_onset(ids: Sequence[int], spec: GrammarSpec) -> tuple[list[list[int]], dict[tuple[int, int], list[int]]]:
    """The bar events in order, and the notes (and Tempo) of each (bar index, Position token) of a stream."""
    bars: list[list[int]] = []
    onsets: dict[tuple[int, int], list[int]] = {}
    key: tuple[int, int] | None = None
    for kind, tokens in _events(ids, spec):
        if kind == "bar":
            bars.append(tokens)
            key = None
        elif kind == "position":
            key = (len(bars) - 1, tokens[0])
            onsets.setdefault(key, []).extend(tokens[1:])  # a Tempo, if any
        elif kind == "note" and key is not None:
            onsets[key].extend(tokens)
    return bars, onsets


def merge_part(others: Sequence[int], part: Sequence[int], spec: GrammarSpec, lead: int = 0) -> list[int]:
    """One stream holding the notes of `others` and of `part` (split_part's two streams, or a new part on the
    others' bars): at each onset the others' tokens first, then the part's; positions in order. With `lead`,
    the others run that many bars ahead: bar j of the stream holds the others' bar j and the part's bar
    j - lead (the LEAD layout), and the stream ends with the part's last bars."""
    bars, onsets = _by_onset(others, spec)
    part_bars, part_onsets = _by_onset(part, spec)
    for (index, position), tokens in part_onsets.items():
        onsets.setdefault((index + lead, position), []).extend(tokens)
    position_value = {t: int(name.split("_", 1)[1]) for t, name in enumerate(spec.tokens)
                      if name.startswith("Position_")}
    merged: list[int] = []
    for index in range(max(len(bars), len(part_bars) + lead)):
        merged += bars[index] if index < len(bars) else part_bars[index - lead]
        for key in sorted((k for k in onsets if k[0] == index), key=lambda k: position_value[k[1]]):
            merged += [key[1], *onsets[key]]
    return merged


MIN_PART_NOTES = 4  # a part drawn for a row plays at least this many notes in it, and so do the others
AFTER, LEAD = "after", "lead"  # the two layouts of a part row (module docstring)
LAYOUTS = (LEAD, AFTER)
LEAD_BARS = 1  # in the LEAD layout the other parts run this many bars ahead of the part


def part_sentinel(spec: GrammarSpec, middle_id: int, program: int) -> list[int]:
    """`FIM_Middle Program_p`: the two tokens that announce a part row's part p (module docstring)."""
    return [middle_id, spec.tokens.index(f"Program_{program}")]


def with_lead_bars(ids: Sequence[int], spec: GrammarSpec, lead: int = LEAD_BARS) -> list[int]:
    """`ids` with `lead` empty bars (a bar line and the last meter) added at the end: where the LEAD layout
    writes the part's last bars, the other parts being over."""
    meter = [t for t in ids if spec.tokens[t].startswith("TimeSig_")][-1:]
    return [*ids, *[spec.bar_id, *meter] * lead]


def window_programs(window: Sequence[int], spec: GrammarSpec) -> dict[int, int]:
    """Notes per program (-1: drums) in a token sequence."""
    counts: dict[int, int] = {}
    for token in window:
        name = spec.tokens[token]
        if name.startswith("Program_"):
            program = int(name.split("_", 1)[1])
            counts[program] = counts.get(program, 0) + 1
    return counts


def part_row(window: np.ndarray, spec: GrammarSpec, middle_id: int, rng: np.random.Generator,
             layout: str = LEAD) -> np.ndarray | None:
    """A part row in `layout` of the same length as `window` (module docstring), or None where the window
    holds no whole bar with two parts of MIN_PART_NOTES notes. The tokens before its first bar line that are
    not music (BOS, Style, Density) open the row; the whole bars that follow, up to the piece's end or the
    window's last bar line, are split; the part is drawn uniformly among the programs that play enough. After
    the part the row reads on from the piece's end (its EOS, the next piece) where the piece ended inside the
    window; a row longer than the window loses its last tokens, a shorter one is padded with PAD."""
    tokens = [int(t) for t in window]
    bars = [i for i, t in enumerate(tokens) if t == spec.bar_id]
    if not bars:
        return None
    first = bars[0]
    ends = [i for i in range(first, len(tokens)) if tokens[i] in (spec.eos_id, spec.bos_id)]
    end = ends[0] if ends else bars[-1]  # the piece's end, else the window's last whole bar
    segment = tokens[first:end]
    counts = window_programs(segment, spec)
    total = sum(counts.values())
    candidates = sorted(p for p, n in counts.items() if n >= MIN_PART_NOTES and total - n >= MIN_PART_NOTES)
    if not candidates or segment.count(spec.bar_id) < 2:
        return None
    program = candidates[int(rng.integers(len(candidates)))]
    head = [t for t in tokens[:first] if t in spec.special_ids]
    others, part = split_part(segment, spec, program)
    sentinel = part_sentinel(spec, middle_id, program)
    if layout == AFTER:
        row = head + others + sentinel + part
    else:
        row = head + sentinel + merge_part(others, part, spec, lead=LEAD_BARS)
    if ends:  # the piece ended in the window: the stream goes on (EOS, the next piece) as it did
        row += tokens[end:]
    row = row[:len(tokens)] + [spec.pad_id] * max(0, len(tokens) - len(row))
    return np.asarray(row, dtype=window.dtype)


def apply_to_rows(batch: np.ndarray, spec: GrammarSpec, middle_id: int, chosen: np.ndarray,
                  row_seeds: np.ndarray, layout: str = LEAD) -> tuple[np.ndarray, np.ndarray]:
    """The rows of `batch` (B, L) where `chosen` is True made into part-in-the-middle rows, each from its own
    seed (rows without two parts stay as they were); the others are untouched, as fim.apply_to_rows does.
    Returns the rows and which of them became part rows."""
    out, made = batch.copy(), np.zeros(len(batch), dtype=bool)
    for r in np.flatnonzero(chosen):
        row = part_row(batch[r], spec, middle_id, np.random.default_rng(int(row_seeds[r])), layout)
        if row is not None:
            out[r], made[r] = row, True
    return out, made
