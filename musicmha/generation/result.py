"""What a generation returns: the new notes and tempo changes of a decoded continuation, merged into an
untouched copy of the prompt (`GenerationResult`).

The model's tokens are decoded twice, with and without the new ones; what the longer decoding has beyond the
shorter is the continuation. Merged, the prompt's notes, tracks, tempos and time signatures come out exactly as
they went in, and the model's tempo changes are kept only after the prompt's end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import symusic

from musicmha.data.midi_io import add_notes


@dataclass
class GenerationResult:
    score: symusic.Score  # prompt + continuation, in the prompt's ticks per quarter
    continuation: symusic.Score  # the new notes alone, same time base and offset
    token_ids: list[int]  # the conditioning tokens (BOS + prompt tail) followed by the new ones
    new_token_ids: list[int]
    boundary_tick: int  # where the prompt ends (its last note-off) in `score` ticks; an infill: where the range starts
    seed: int  # this sample's own seed: continue_midi(..., seed=seed, num_samples=1) makes it again
    span: tuple[int, int] | None = None  # an infill's regenerated range [start, end) in `score` ticks


def _note_keys(track) -> Counter:
    return Counter((n.time, n.duration, n.pitch, n.velocity) for n in track.notes)


def new_notes(full: symusic.Score, prompt: symusic.Score, tpq: int) -> symusic.Score:
    """The notes of `full` that are not in `prompt` (both decoded from tokens, prompt a prefix of full)."""
    known = {(t.program, t.is_drum): _note_keys(t) for t in prompt.tracks}
    out = symusic.Score(tpq)
    for track in full.tracks:
        seen = Counter(known.get((track.program, track.is_drum), Counter()))
        fresh = symusic.Track(name=track.name, program=track.program, is_drum=track.is_drum)
        for note in track.notes:
            key = (note.time, note.duration, note.pitch, note.velocity)
            if seen[key] > 0:
                seen[key] -= 1
            else:
                fresh.notes.append(note)
        if len(fresh.notes):
            out.tracks.append(fresh)
    return out


def new_tempos(full: symusic.Score, prompt: symusic.Score) -> list:
    """Tempo changes in `full` that `prompt` lacks: the ones the model wrote."""
    seen = Counter((t.time, round(t.qpm, 3)) for t in prompt.tempos)
    fresh = []
    for tempo in full.tempos:
        key = (tempo.time, round(tempo.qpm, 3))
        if seen[key] > 0:
            seen[key] -= 1
        else:
            fresh.append(tempo)
    return fresh


def to_prompt_time(notes: symusic.Score, tpq: int, offset_ticks: int) -> symusic.Score:
    """Decoded new music moved onto the prompt's time axis: resampled to its ticks per quarter (no note
    shorter than a tick) and shifted to where its tokens started in the piece."""
    return notes.resample(tpq, min_dur=1).shift_time(offset_ticks)


def merge_into_prompt(prompt: symusic.Score, new: symusic.Score,
                      replace_span: tuple[int, int] | None = None) -> symusic.Score:
    """An untouched copy of `prompt` with `new`'s notes (already in the prompt's ticks) added to the tracks
    of their instrument (musicmha.data.midi_io.add_notes) and its tempo changes after the prompt's end.

    replace_span (start, end) in ticks: an infill. The prompt's notes that start in [start, end) are dropped,
    and of `new` only the notes starting there are added, cut to end by `end`, so the music after the range
    starts where it did."""
    merged = prompt.copy()
    end = prompt.end()
    # The model's tempo changes play the continuation as it was timed; the ones before the prompt's end
    # (rare: between its last onset and last note-off) are left out so the prompt plays exactly as given.
    later = [t for t in new.tempos if t.time >= end]
    if later:
        merged.tempos.extend(later)
        merged.tempos.sort()
    tracks = new.tracks
    if replace_span is not None:
        start_tick, end_tick = replace_span
        for track in merged.tracks:
            kept = [n for n in track.notes if not start_tick <= n.time < end_tick]
            track.notes.clear()
            track.notes.extend(kept)
        tracks = cut_to_span(new, start_tick, end_tick).tracks
    add_notes(merged, tracks)
    return merged


def cut_to_span(score: symusic.Score, start_tick: int, end_tick: int) -> symusic.Score:
    """A copy of `score` with only the notes that start in [start_tick, end_tick), shortened to end by
    end_tick (an infill's new notes: the music after the range must start where it did)."""
    out = symusic.Score(score.ticks_per_quarter)
    for track in score.tracks:
        kept = symusic.Track(name=track.name, program=track.program, is_drum=track.is_drum)
        for note in track.notes:
            if start_tick <= note.time < end_tick:
                note = note.copy()
                note.duration = max(1, min(note.duration, end_tick - note.time))
                kept.notes.append(note)
        out.tracks.append(kept)
    return out


def tempo_at_end(score: symusic.Score | None) -> float | None:
    """The prompt's tempo where it ends, exactly (its tokens round tempos to the tokenizer's bins)."""
    if score is None:
        return None
    before = [t for t in score.tempos if t.time <= score.end()]
    return before[-1].qpm if before else None
