"""One music21 corpus file to MIDI files: the work of `musicmha corpus`'s pool workers (musicmha/data/corpus.py).

Each piece of the file (an ABC file holds many) is converted on its own under a CPU-time limit, so one bad or
slow piece is reported in its `PieceResult` and never costs the others. music21's readers leave some scores
that its MIDI writer refuses (shared meter objects, malformed repeats); those are mended here without
changing the music, or with the repeats played once, which the result notes.
"""

from __future__ import annotations

import copy
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

@dataclass
class PieceResult:
    id: str
    collection: str
    path: str | None = None  # MIDI file relative to the output folder; None when the piece failed
    notes: int = 0
    error: str | None = None
    note: str | None = None  # e.g. when repeats could not be expanded
    pickup: float | None = None  # quarter notes before the first full bar (the MIDI has no bar lines)
    extra: dict | None = None  # manifest fields of an arrangement (groove, tempo, program)


def corpus_root() -> Path:
    from music21 import common

    return Path(common.getCorpusFilePath())


class _Timeout(Exception):
    pass


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt slow music21 parsing after `seconds` of CPU time (SIGVTALRM): tasks run in the main thread of
    pool workers and music21 is pure Python, so the signal lands promptly. CPU time, not wall time, so a busy
    machine does not make pieces fail (a wall-clock limit lost a whole Essen file under load). A no-op
    where the signal is missing (Windows)."""
    if not hasattr(signal, "SIGVTALRM"):
        yield
        return

    def on_alarm(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGVTALRM, on_alarm)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


def _midi_name(rel: str, index: int | None) -> str:
    stem = rel.rsplit(".", 1)[0]
    return f"{stem}.mid" if index is None else f"{stem}-{index:04d}.mid"


def _unshare(score) -> None:
    """music21's ABC reader reuses one TimeSignature (or key, tempo, clef) object in several measures when a
    meter returns; `streamToMidiFile` then fails with "object already found in this Stream" (a quarter of
    the Essen songs). Giving each measure its own copy fixes it without changing the music."""
    seen: set[int] = set()
    for container in score.recurse(streamsOnly=True, includeSelf=True):
        for el in list(container.getElementsByClass(("TimeSignature", "KeySignature", "MetronomeMark", "Clef"))):
            if id(el) in seen:
                container.replace(el, copy.deepcopy(el))
            else:
                seen.add(id(el))


def _strip_repeats(score) -> None:
    """Replace repeat barlines and remove repeat expressions/brackets, for pieces whose repeat marks music21
    cannot expand ("badly formed repeats", mostly in the fiddle-tune collections): the MIDI then plays
    each section once instead of losing the whole tune."""
    from music21 import bar, repeat, spanner

    for measure in score.recurse().getElementsByClass("Measure"):
        for side in ("leftBarline", "rightBarline"):
            if isinstance(getattr(measure, side), bar.Repeat):
                setattr(measure, side, bar.Barline("regular"))
    for el in list(score.recurse().getElementsByClass((repeat.RepeatExpression, spanner.RepeatBracket))):
        if el.activeSite is not None:
            el.activeSite.remove(el)


def _pickup(score) -> float | None:
    """Length of an anacrusis in quarter notes (0.0 without one), or None when there are no measures.
    The MIDI starts with the pickup, so this is the only place that still knows where bar lines fall."""
    from music21 import stream

    part = score.parts[0] if isinstance(score, stream.Score) and score.parts else score
    measures = part.getElementsByClass(stream.Measure)
    if not measures:
        return None
    first = measures[0]
    meter = first.timeSignature or first.getContextByClass("TimeSignature")
    if meter is None:
        return None
    length, bar = float(first.duration.quarterLength), float(meter.barDuration.quarterLength)
    return length if 0 < length < bar else 0.0


def _to_midi(score) -> tuple[bytes, str | None]:
    from music21 import midi

    _unshare(score)
    try:
        return midi.translate.streamToMidiFile(score).writestr(), None
    except Exception as error:
        if "repeat" not in str(error):
            raise
        _strip_repeats(score)
        return midi.translate.streamToMidiFile(score).writestr(), "repeats not expanded (malformed repeat marks)"


def convert_file(rel: str, out: str, timeout: float, limit: int | None) -> list[PieceResult]:
    """Parse one corpus file and write each of its pieces as MIDI under `out`. Runs in a worker."""
    from music21 import corpus, stream

    from musicmha.data.midi_io import count_notes, load_midi

    collection = rel.split("/", 1)[0]
    try:
        with _time_limit(timeout):
            parsed = corpus.parse(str(corpus_root() / rel), forceSource=True)
    except _Timeout:
        return [PieceResult(rel, collection, error=f"parsing took longer than {timeout:g} s of CPU time")]
    except Exception as error:
        return [PieceResult(rel, collection, error=f"parse failed: {one_line(error)}")]

    if isinstance(parsed, stream.Opus):
        pieces = [(f"{rel}#{i}", i, s) for i, s in enumerate(parsed.scores, start=1)]
    else:
        pieces = [(rel, None, parsed)]
    if limit is not None:
        pieces = pieces[:limit]
    results = []
    for piece_id, index, score in pieces:
        result = PieceResult(piece_id, collection)
        try:
            with _time_limit(timeout):
                try:
                    result.pickup = _pickup(score)
                except Exception as error:  # a hint for arrangements only, never a reason to drop a piece
                    log.debug("%s: no pickup length: %s", piece_id, one_line(error))
                data, result.note = _to_midi(score)
            notes = count_notes(load_midi(data))  # MidiError("no notes") for empty pieces
            target = Path(out) / _midi_name(rel, index)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            result.path, result.notes = target.relative_to(out).as_posix(), notes
        except _Timeout:
            result.error = f"conversion took longer than {timeout:g} s of CPU time"
        except Exception as error:
            result.error = f"conversion failed: {one_line(error)}"
        results.append(result)
    return results
