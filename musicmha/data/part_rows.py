"""One part taken out of a REMI token stream, and put back: the data side of a trained add-part layout (issue 27,
item 3; docs/long-run.md, the next run's plan).

`split_part(ids, spec, program)` cuts a piece's tokens (REMI with programs: Bar, TimeSig, Position, Tempo,
then Program · Pitch · Velocity · Duration per note) into
- `others`: the same stream without the part's notes; a Position that held only the part's notes (and no
  Tempo) goes too, so the stream stays what the tokenizer would write for the piece without that part;
- `part`: the part alone on the same bars: every Bar (with its TimeSig), and a Position before each onset
  where the part plays, then its notes, in their order.

`merge_part(others, part, spec)` is the inverse: the notes of both at each (bar, position), the others' first,
as one stream; `split_part` then `merge_part` gives back the same notes (tests/data/test_part_rows.py). A
training task can read `others` and learn to write `part` after it (the part hears every other part, before and
after each of its notes), and add_part can then write a part the same way. No miditok here: the token names of
the grammar spec say what each token is.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def merge_part(others: Sequence[int], part: Sequence[int], spec: GrammarSpec) -> list[int]:
    """One stream holding the notes of `others` and of `part` (split_part's two streams, or a new part on the
    others' bars): at each onset the others' tokens first, then the part's; positions in order."""
    bars, onsets = _by_onset(others, spec)
    part_bars, part_onsets = _by_onset(part, spec)
    for key, tokens in part_onsets.items():
        onsets.setdefault(key, []).extend(tokens)
    position_value = {t: int(name.split("_", 1)[1]) for t, name in enumerate(spec.tokens)
                      if name.startswith("Position_")}
    merged: list[int] = []
    for index in range(max(len(bars), len(part_bars))):
        merged += bars[index] if index < len(bars) else part_bars[index]
        for key in sorted((k for k in onsets if k[0] == index), key=lambda k: position_value[k[1]]):
            merged += [key[1], *onsets[key]]
    return merged
