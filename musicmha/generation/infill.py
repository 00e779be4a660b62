"""Regenerate bars inside a piece, keeping everything around them (fill-in-the-middle at generation time).

The model reads `FIM_Suffix · suffix · FIM_Prefix · prefix · FIM_Middle · FIM_Bars<n> · Bar · TimeSig` (the
SPM order of musicmha/data/fim.py, with the middle's first bar line and meter forced) and writes the n bars; it
stops where it starts bar n + 1. Training makes PSM and SPM examples alike; at generation SPM, where the
prefix runs straight into the middle, scores the true middle lower than PSM for every length measured
(docs/results.md section 10), so it is the default order. The prompt itself is never re-rendered from tokens:

- every note that starts outside the range comes back exactly (pitch, start, duration, velocity, track),
  with the prompt's tempos and time signatures;
- a note that starts before the range and sounds into it is kept as it is (it started outside);
- the notes that start inside the range are replaced by the new ones, and a new note that would sound past
  the range's end is shortened to end there, so the music after the range starts where it did and as it did.

Bars are counted from 1 as a musician counts them, on the prompt's own time signatures (the bar lines the
tokenizer writes: from the file's start).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import symusic

from musicmha.errors import ConfigError, MidiError
from musicmha.data.fim import MAX_FILL_BARS
from musicmha.generation.grammar import TokenGrammar
from musicmha.generation.result import GenerationResult, cut_to_span, merge_into_prompt, new_notes, to_prompt_time

logger = logging.getLogger(__name__)

MIN_SIDE_TOKENS = 64  # context kept for prefix and suffix together, at the least
FILL_ORDERS = ("psm", "spm")  # the two layouts of musicmha/data/fim.py


@dataclass
class InfillPlan:
    """What the model reads and where its bars go, for one request."""

    scaffold: list[int]  # the tokens before the middle's first note: prefix, suffix, sentinels, Bar, TimeSig
    prefix: list[int]  # the prefix tokens alone (decoding the middle after them gives its times)
    prefix_quarters: float  # where `prefix` starts in the piece, in quarter notes
    start_quarters: float  # the range, in quarter notes from the piece's start
    end_quarters: float
    new_token_limit: int  # room left in the context for the middle


def bar_lines(grammar: TokenGrammar, ids: list[int]) -> list[tuple[int, float]]:
    """(index in ids, quarter notes from the start) of every Bar token, as the tokenizer counts bars; and one
    more for the end of the last bar."""
    grammar.reset(1)
    row, bar_id = grammar.rows[0], grammar.spec.bar_id
    lines = []
    for i, token in enumerate(ids):
        grammar.advance(row, token)
        if token == bar_id:
            lines.append((i, row.bar_start))
    if lines:
        lines.append((len(ids), row.bar_start + row.bar_positions * row.quarters_per_position))
    return lines


def plan(grammar: TokenGrammar, ids: list[int], start_bar: int, end_bar: int, *, context: int,
         fim, bos_id: int, eos_id: int, order: str = "spm", condition: Sequence[int] = ()) -> InfillPlan:
    """Check the request against the piece and the model, and lay out the scaffold in `order` (FILL_ORDERS:
    "psm" puts the suffix just before the middle, "spm" the prefix, as training does half of the time).
    `condition` (style and density tokens) opens the prefix, after its BOS, where a training row that was
    conditioned before its FIM rearrangement has them."""
    if order not in FILL_ORDERS:
        raise ConfigError(f"fill order must be one of {', '.join(FILL_ORDERS)}, got {order!r}")
    lines = bar_lines(grammar, ids)
    bars = len(lines) - 1
    if not isinstance(start_bar, int) or not isinstance(end_bar, int) or isinstance(start_bar, bool):
        raise ConfigError(f"bars must be whole numbers, got {start_bar!r}-{end_bar!r}")
    if start_bar > end_bar:
        raise ConfigError(f"bars {start_bar}-{end_bar}: the range is reversed (give the first bar, then the last)")
    if start_bar < 1 or end_bar > bars:
        raise ConfigError(f"bars {start_bar}-{end_bar} are outside the piece: it has bars 1-{bars}")
    n = end_bar - start_bar + 1
    if n > MAX_FILL_BARS:
        raise ConfigError(f"bars {start_bar}-{end_bar}: at most {MAX_FILL_BARS} bars can be regenerated at once, "
                          f"this range has {n}")
    first, last = lines[start_bar - 1][0], lines[end_bar][0]
    names = grammar.spec.tokens
    signatures = {ids[i + 1] for i, _ in lines[start_bar - 1:end_bar]
                  if i + 1 < len(ids) and names[ids[i + 1]].startswith("TimeSig_")}
    if len(signatures) > 1:
        raise ConfigError(f"bars {start_bar}-{end_bar} change time signature; regenerate bars within one meter")
    outside = ids[:first] + ids[last:]
    if not any(names[t].startswith(("Pitch_", "PitchDrum_")) for t in outside):
        raise MidiError(f"there is no music around bars {start_bar}-{end_bar} to fill between: "
                        "the piece has notes only inside the range")
    middle_tokens = last - first
    reserve = max(int(1.5 * middle_tokens) + 16, 32 * n)
    if middle_tokens + MIN_SIDE_TOKENS + 8 > context:
        raise ConfigError(f"bars {start_bar}-{end_bar} hold {middle_tokens} tokens, more than this model's context "
                          f"of {context} leaves room for; choose a shorter range")
    reserve = min(reserve, context - MIN_SIDE_TOKENS - 6)
    room = context - reserve - 6 - len(condition)  # sentinels, count, Bar, TimeSig, conditioning
    suffix_all = ids[last:] + [eos_id]
    suffix = _head(suffix_all, lines, last, max(room // 3, room - first - 1))
    prefix_cut = _tail_cut(lines, first, room - len(suffix))
    prefix = ([bos_id] if prefix_cut == 0 else []) + ids[prefix_cut:first]
    opening = [fim.bar]
    signature = ids[first + 1] if first + 1 < len(ids) and names[ids[first + 1]].startswith("TimeSig_") else None
    if signature is not None:
        opening.append(signature)
    opened = prefix[:1] + list(condition) + prefix[1:] if prefix[:1] == [bos_id] else list(condition) + prefix
    sides = [fim.prefix, *opened, fim.suffix, *suffix] if order == "psm" else [fim.suffix, *suffix, fim.prefix, *opened]
    scaffold = [*sides, fim.middle, fim.bars_token(n), *opening]
    prefix_quarters = next((q for i, q in lines if i == prefix_cut), 0.0)
    return InfillPlan(scaffold, prefix, prefix_quarters, lines[start_bar - 1][1], lines[end_bar][1],
                      new_token_limit=max(1, context - len(scaffold)))


def _head(suffix: list[int], lines: list[tuple[int, float]], offset: int, budget: int) -> list[int]:
    """The suffix's first bars that fit `budget` tokens (all of it when it fits), cut at a bar line."""
    if len(suffix) <= budget:
        return suffix
    cuts = [i - offset for i, _ in lines if offset < i and i - offset <= budget]
    return suffix[:cuts[-1]] if cuts else suffix[:max(budget, 0)]


def _tail_cut(lines: list[tuple[int, float]], first: int, budget: int) -> int:
    """Where the prefix starts: the earliest bar line whose tail up to `first` fits `budget` tokens."""
    if first + 1 <= budget:
        return 0
    fitting = [i for i, _ in lines if i <= first and first - i <= budget]
    return fitting[0] if fitting else first


def middle_tokens(row: list[int], scaffold_length: int, bar_id: int, n_bars: int, eos_id: int) -> list[int]:
    """The middle's tokens from a generated row: after the scaffold, up to (not including) bar n + 1 or EOS."""
    new, bars = [], 1  # the scaffold already opened bar 1
    for token in row[scaffold_length:]:
        if token == eos_id:
            break
        if token == bar_id:
            bars += 1
            if bars > n_bars:
                break
        new.append(token)
    return new


def prime_middle_rows(grammar: TokenGrammar, infill: InfillPlan, batch: int) -> None:
    """Stand the grammar at the prefix's end (plus the forced Bar and meter), counting bars from there."""
    opening = infill.scaffold[infill.scaffold.index(grammar.spec.tokens.index("FIM_Middle")) + 2:]
    grammar.prime([*infill.prefix, *opening], batch, consumed=len(infill.scaffold))
    for row in grammar.rows:  # lengths count from the middle's first bar line, which the scaffold forced
        row.start_bars, row.start_seconds = row.bars - 1, row.seconds
        row.tempo_known = True  # the piece's tempo map stays as it is: no tempo token in the middle


def to_ticks(quarters: float, tpq: int) -> int:
    return int(round(quarters * tpq))


def decode_middle(tokenizer, infill: InfillPlan, new: list[int], prompt_tpq: int) -> symusic.Score:
    """The new notes alone, in the prompt's ticks, at their place in the piece: decoded after the prefix (so
    they get its meter and bar count) and kept where the prefix's own decoding has no such note."""
    opening = infill.scaffold[infill.scaffold.index(tokenizer.fim_tokens.middle) + 2:]
    full = tokenizer.decode([*infill.prefix, *opening, *new])
    if len([t for t in infill.prefix if t != tokenizer.bos_id]):
        before = tokenizer.decode(infill.prefix)
    else:
        before = symusic.Score(full.ticks_per_quarter)
    notes = new_notes(full, before, full.ticks_per_quarter)
    return to_prompt_time(notes, prompt_tpq, to_ticks(infill.prefix_quarters, prompt_tpq))


def result(tokenizer, prompt: symusic.Score, infill: InfillPlan, row: list[int], n_bars: int,
           seed: int) -> GenerationResult:
    """One generated row as a result: the prompt with the range's notes replaced by the new ones."""
    tpq = prompt.ticks_per_quarter
    span = (to_ticks(infill.start_quarters, tpq), to_ticks(infill.end_quarters, tpq))
    new = middle_tokens(row, len(infill.scaffold), tokenizer.fim_tokens.bar, n_bars, tokenizer.eos_id)
    middle = cut_to_span(decode_middle(tokenizer, infill, new, tpq), *span)
    merged = merge_into_prompt(prompt, middle, replace_span=span)
    return GenerationResult(merged, middle, infill.scaffold + new, new, span[0], seed, span)
