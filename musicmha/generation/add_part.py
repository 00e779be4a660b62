"""Add a part to a piece: a new track (a bass, drums, piano comping, ...) over the whole piece or a bar range,
written by the continuation model with no retraining (issue 27, item 2), or by a model trained on part rows
in their layout when asked (`layout`: LEAD interleaves the part a bar behind the piece, below; AFTER writes
it after the other parts, musicmha/generation/part_after.py).

The model reads the piece's own token stream from its start, token for token, and may slip the new part's
notes in between, at the piece's onsets or between them (interleaved constrained decoding: the mask is
musicmha/generation/part_walk.py). Each new note is sampled hearing everything before it, the other parts
included, but not what comes after it. Rows sample as one batch on the model's KV cache, which slides when the
piece is longer than the model's context (musicmha/generation/sampling.py); before the range, the piece is read
in one pass, and a row stops at the range's end.

The output is an untouched copy of the prompt (every track, name, note, tempo and meter as it was) with the
new part appended as its own track: its program (the kit for drums), its notes cut to end by the range's end.
An instrument the piece already has is allowed: the new part is a second track of that program, and the log
says so. Bars are counted from 1 on the piece's own time signatures, as infill counts them.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import symusic
import torch

from musicmha.data.instruments import lead_range, program_family
from musicmha.data.tokenizer import program_names
from musicmha.data.vocabulary import DRUMS
from musicmha.errors import ConfigError
from musicmha.generation import infill as fill
from musicmha.generation.grammar import TokenGrammar
from musicmha.data.part_rows import LEAD_BARS, part_sentinel, with_lead_bars
from musicmha.generation.part_after import AFTER, INTERLEAVED, LAYOUTS, LEAD, write_after
from musicmha.generation.part_walk import Part, PartWalk
from musicmha.generation.request import GenerationRequest
from musicmha.generation.result import GenerationResult, cut_to_span, new_notes, to_prompt_time
from musicmha.generation.sampling import generate, row_seed

if TYPE_CHECKING:
    from musicmha.generation.music_generator import MusicGenerator, Prompt

logger = logging.getLogger(__name__)

# The family words a user types, each as a sensible General MIDI program of that family (program_family:
# piano, guitar, bass, ensemble, brass, synth lead, synth pad); "drums" is the kit.
PART_WORDS = {"piano": 0, "guitar": 25, "bass": 33, "strings": 48, "brass": 61, "lead": 80, "pad": 89}
DRUM_WORDS = ("drums", "drum kit", "drum", "kit")
BASS_RANGE = (28, 67)  # E1..G4: where bass lines live (instruments.py ranges are for leads)
DEFAULT_RANGE = (36, 96)
CHORD_LIMITS = {"bass": 2}  # notes per onset, by GM family; 4 for the others and the kit
DEFAULT_CHORD_LIMIT = 4
# what a request gives add_part
PART_FIELDS = ("num_samples", "sampling", "copy_boost", "style", "density", "pitch_range")
NOTES_PER_BAR = 32  # the most new notes in a bar (every position of a 4/4 bar)


@dataclasses.dataclass(frozen=True)
class Instrument:
    program: int  # GM program, or DRUMS
    name: str

    @property
    def is_drum(self) -> bool:
        return self.program == DRUMS


def resolve_instrument(instrument: int | str) -> Instrument:
    """A GM program 0..127 (or its number as text), a family word (PART_WORDS), a GM family name
    ("organ", "reed", ...: its first program), a GM instrument name, or drums."""
    names = program_names()
    if isinstance(instrument, str):
        word = instrument.strip().lower()
        if word in DRUM_WORDS:
            return Instrument(DRUMS, "Drums")
        if word.isdigit():
            instrument = int(word)
        elif word in PART_WORDS:
            instrument = PART_WORDS[word]
        else:
            family = [p for p in range(128) if program_family(p) == word]
            exact = [p for p, name in enumerate(names) if name.lower() == word]
            if not family and not exact:
                raise ConfigError(f"unknown instrument {instrument!r}: give a GM program 0..127, drums, or one of "
                                  f"{', '.join(sorted(PART_WORDS))} (or a GM family or instrument name)")
            instrument = (family or exact)[0]
    if isinstance(instrument, bool) or not isinstance(instrument, int) or not 0 <= instrument <= 127:
        raise ConfigError(f"instrument must be a GM program 0..127, drums or a family word "
                          f"({', '.join(sorted(PART_WORDS))}), got {instrument!r}")
    return Instrument(instrument, names[instrument])


def part_range(program: int, tokenizer_range: tuple[int, int], asked: tuple[int, int] | None = None) -> tuple[int, int]:
    """The pitches [low, high] the new part may play: the range asked (a request's pitch_range), else the
    instrument's, inside the tokenizer's."""
    low, high = tokenizer_range[0], tokenizer_range[1] - 1
    if program == DRUMS:
        return low, high  # PitchDrum tokens: the tokenizer's kit
    if asked is not None:
        span = asked
    elif program_family(program) == "bass":
        span = BASS_RANGE
    else:
        try:
            span = lead_range(program)
        except KeyError:
            span = DEFAULT_RANGE
    return max(low, span[0]), min(high, span[1])


def check_request(request: GenerationRequest) -> GenerationRequest:
    """The request, refused in one line where it asks what a new part takes no value for."""
    defaults = GenerationRequest()
    given = [f.name for f in dataclasses.fields(request)
             if f.name not in PART_FIELDS and getattr(request, f.name) != getattr(defaults, f.name)]
    if given:
        raise ConfigError(f"add_part takes no {', '.join(given)}: the part's length is the piece or its bars, its "
                          f"instrument is `instrument`; it takes {', '.join(PART_FIELDS)}")
    return request


def bar_span(lines: list[tuple[int, float]], bars: tuple[int, int] | None) -> tuple[int, int]:
    """(first, last) bar of the request, checked against the piece's bars (`fill.bar_lines`)."""
    count = len(lines) - 1
    if bars is None:
        return 1, count
    if not isinstance(bars, tuple | list) or len(bars) != 2 or not all(isinstance(b, int) and not isinstance(b, bool)
                                                          for b in bars):
        raise ConfigError(f"bars must be (first, last), whole numbers counted from 1, got {bars!r}")
    first, last = bars
    if first > last:
        raise ConfigError(f"bars {first}-{last}: the range is reversed (give the first bar, then the last)")
    if first < 1 or last > count:
        raise ConfigError(f"bars {first}-{last} are outside the piece: it has bars 1-{count}")
    return first, last


def check_layout(layout: str, trained: str | None) -> str:
    """`layout`, refused in one line unless it is INTERLEAVED or the layout the model was trained on."""
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    if layout != INTERLEAVED and layout != trained:
        raise ConfigError(f"layout {layout!r} needs a model trained on {layout} part rows (musicmha train "
                          f"--part-rate 0.25 --part-layout {layout}); this one writes "
                          f"{', '.join(sorted({INTERLEAVED, trained} - {None}))}")
    return layout


def add_part(generator: MusicGenerator, prompt: Prompt, request: GenerationRequest, *, instrument: int | str,
             bars: tuple[int, int] | None = None, layout: str = INTERLEAVED,
             callback: Callable[[int, torch.Tensor], bool | None] | None = None) -> list[GenerationResult]:
    """`MusicGenerator.add_part`'s work, for a request already checked (and seeded)."""
    spec, tokenizer = generator.spec, generator.tokenizer
    if spec is None:
        raise ConfigError("adding a part needs a tokenizer without BPE")
    chosen = resolve_instrument(instrument)
    if chosen.program not in TokenGrammar(spec).program_token:
        raise ConfigError(f"this model's tokenizer cannot write {chosen.name} (program {chosen.program})")
    score, ids = generator._read_prompt(prompt)
    lines = fill.bar_lines(TokenGrammar(spec), ids)
    first, last = bar_span(lines, bars)
    if any((t.is_drum if chosen.is_drum else not t.is_drum and t.program == chosen.program) for t in score.tracks):
        logger.info("the piece already has %s: the new part is a second track of that %s",
                    chosen.name, "kit" if chosen.is_drum else "program")
    family = "drums" if chosen.is_drum else program_family(chosen.program)
    low, high = part_range(chosen.program, tokenizer.pitch_range, request.pitch_range)
    part = Part(chosen.program, low, high, first, last, chord_limit=CHORD_LIMITS.get(family, DEFAULT_CHORD_LIMIT),
                bar_limit=NOTES_PER_BAR)
    tpq = score.ticks_per_quarter
    span = (round(lines[first - 1][1] * tpq), round(lines[last][1] * tpq))
    if layout == AFTER:
        scores, rows = write_after(generator, ids, lines, part, request, tpq, callback)
        new_tokens = rows
        tracks = [_as_track(chosen, cut_to_span(fresh, *span)) for fresh in scores]
    else:
        rows, new_tokens, tracks = _interleave(generator, ids, part, request, tpq, span, chosen, callback,
                                               lead=layout == LEAD)
    results = []
    for k, (track, row) in enumerate(zip(tracks, rows)):
        merged = score.copy()
        merged.tracks.append(track)
        alone = symusic.Score(tpq)
        alone.tracks.append(track.copy())
        results.append(GenerationResult(merged, alone, row, new_tokens[k], span[0],
                                        row_seed(request.sampling.seed, k), span))
        if not len(track.notes):
            logger.warning("sample %d wrote no notes for %s in bars %d-%d", k + 1, chosen.name, first, last)
    return results


def _interleave(generator: MusicGenerator, ids: list[int], part: Part, request: GenerationRequest, tpq: int,
                span: tuple[int, int], chosen: Instrument, callback,
                lead: bool = False) -> tuple[list[list[int]], list[list[int]], list[symusic.Track]]:
    """(rows, the tokens each wrote, the new tracks): the part slipped into the piece's own stream. With `lead`
    (a model trained on LEAD part rows, musicmha/data/part_rows.py) the rows open with `FIM_Middle Program_p`
    and the part's bar b is written into the piece's bar b + 1, the other parts a bar ahead as training lays
    them out: one empty bar is added after the piece for the part's last bar, and the new notes are moved
    back a bar."""
    tokenizer, spec = generator.tokenizer, generator.spec
    opening = [tokenizer.bos_id, *generator.conditioning_tokens(request, ids)]
    if lead:
        opening += part_sentinel(spec, tokenizer.fim_tokens.middle, part.program)
        ids = with_lead_bars(ids, spec)
        part = dataclasses.replace(part, first_bar=part.first_bar + LEAD_BARS, last_bar=part.last_bar + LEAD_BARS)
    lines = fill.bar_lines(TokenGrammar(spec), ids)
    start_index, end_index = lines[part.first_bar - 1][0], lines[part.last_bar][0]
    walk = PartWalk(spec, ids, part, offset=len(opening), end=end_index, time_from_offset=lead)
    start = torch.tensor([opening + ids[:start_index]] * request.num_samples)
    budget = end_index + 1 - start_index + 5 * NOTES_PER_BAR * (part.last_bar - part.first_bar + 1)
    out = generate(generator.model, start, request.sampling, budget, callback=callback, allowed=walk,
                   eos_token_id=tokenizer.eos_id, stop=walk.stop, copy_head=generator.copy_head,
                   copy_boost=request.copy_boost)
    walk.follow(out.cpu())
    rows = out.tolist()
    starts = [round(quarters * tpq) for _, quarters in lines] if lead else None
    tracks = [_new_track(tokenizer, chosen, row[len(opening):], ids[:walk.forced_count(k)], tpq, span, starts)
              for k, row in enumerate(rows)]
    return rows, [walk.walks[k].new for k in range(len(rows))], tracks


def _back_a_bar(score: symusic.Score, starts: list[int]) -> symusic.Score:
    """`score` (the prompt's ticks) with each note moved from its bar (`starts`: each bar's first tick) to the
    same place in the bar LEAD_BARS before."""
    out = symusic.Score(score.ticks_per_quarter)
    for track in score.tracks:
        moved = symusic.Track(name=track.name, program=track.program, is_drum=track.is_drum)
        for note in track.notes:
            bar = bisect.bisect_right(starts, note.time) - 1
            if bar >= LEAD_BARS:
                moved.notes.append(symusic.Note(starts[bar - LEAD_BARS] + note.time - starts[bar], note.duration,
                                                note.pitch, note.velocity))
        out.tracks.append(moved)
    return out


def _new_track(tokenizer, chosen: Instrument, row: list[int], forced: list[int], tpq: int,
               span: tuple[int, int], lead_starts: list[int] | None = None) -> symusic.Track:
    """The new part of one row as a track of the prompt's ticks: what decoding the row adds to decoding the
    piece's tokens it read, on the part's instrument (moved back a bar in the LEAD layout), inside the range."""
    piece = [t for t in row if t != tokenizer.eos_id]
    full = tokenizer.decode(piece)
    before = tokenizer.decode(forced) if forced else symusic.Score(full.ticks_per_quarter)
    fresh = to_prompt_time(new_notes(full, before, full.ticks_per_quarter), tpq, 0)
    if lead_starts is not None:
        fresh = _back_a_bar(fresh, lead_starts)
    return _as_track(chosen, cut_to_span(fresh, *span))


def _as_track(chosen: Instrument, fresh: symusic.Score) -> symusic.Track:
    """The notes of `fresh` on the part's instrument as the new track (named "<instrument> (added)")."""
    track = symusic.Track(name=f"{chosen.name} (added)", program=max(chosen.program, 0), is_drum=chosen.is_drum)
    for decoded in fresh.tracks:
        if decoded.is_drum == chosen.is_drum and (chosen.is_drum or decoded.program == chosen.program):
            track.notes.extend(decoded.notes)
        elif len(decoded.notes):
            logger.debug("%d decoded notes of program %d are not the new part's", len(decoded.notes),
                         decoded.program)
    track.notes.sort()
    return track
