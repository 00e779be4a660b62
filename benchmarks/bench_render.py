"""Time audio rendering (each synthesizer, each SoundFont found) and piano-roll drawing for N seconds of music.

    python benchmarks/bench_render.py [--seconds 30] [--repeats 5] [--midi FILE] [--sample-rate 44100]

Without --midi the music is generated: four tracks (piano chords, bass, strings, drums) at 120 bpm, about
the density of a generated continuation. Prints a Markdown table (median and best of the repeats).
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import time
from pathlib import Path

import symusic

from musicmha.render import audio as render
from musicmha.render.pianoroll import piano_roll_png
from musicmha.render.audio import render_audio


def generated_score(seconds: float) -> symusic.Score:
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, 120))
    beats = int(seconds * 2)  # 120 bpm
    piano, bass = symusic.Track("piano", program=0), symusic.Track("bass", program=33)
    strings, drums = symusic.Track("strings", program=48), symusic.Track("drums", program=0, is_drum=True)
    chords = ((60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62))
    for beat in range(beats):
        chord = chords[(beat // 4) % 4]
        for pitch in chord:
            piano.notes.append(symusic.Note(beat * 480, 400, pitch, 80))
        bass.notes.append(symusic.Note(beat * 480, 240, chord[0] - 24, 90))
        if beat % 4 == 0:
            strings.notes.append(symusic.Note(beat * 480, 1900, chord[2] + 12, 70))
        for half in (0, 240):
            drums.notes.append(symusic.Note(beat * 480 + half, 60, 42, 70))
        drums.notes.append(symusic.Note(beat * 480, 60, 36 if beat % 2 == 0 else 38, 100))
    score.tracks.extend([piano, bass, strings, drums])
    return score


def timed(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def soundfonts() -> list[Path]:
    found = [render.find_soundfont()]
    import pretty_midi

    found.append(Path(pretty_midi.__file__).parent / "TimGM6mb.sf2")
    found += sorted(Path(d) / n for d in render.SOUNDFONT_DIRS for n in ("FluidR3_GM.sf2",)
                    if (Path(d) / n).is_file())
    unique: list[Path] = []
    for path in found:
        if path is not None and path.is_file() and path.resolve() not in [p.resolve() for p in unique]:
            unique.append(path)
    return unique


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--midi", default=None, help="time this file instead of generated music")
    parser.add_argument("--sample-rate", type=int, default=44100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    score = symusic.Score(args.midi) if args.midi else generated_score(args.seconds)
    music = render.music_end_seconds(score)
    print(f"# {args.midi or 'generated 4-track music'}: {music:.1f} s, {score.note_num()} notes, "
          f"{args.sample_rate} Hz; {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print("\n| what | median s | best s | x real time |\n|---|---:|---:|---:|")

    def row(name: str, fn) -> None:
        median, best = timed(fn, args.repeats)
        print(f"| {name} | {median:.3f} | {best:.3f} | {music / median:.0f} |", flush=True)

    row("numpy synthesizer", lambda: render_audio(score, sample_rate=args.sample_rate, synthesizer="numpy"))
    if render.fluidsynth_command() is None:
        print("| fluidsynth | - | - | not installed |")
    else:
        for sf in soundfonts():
            row(f"fluidsynth CLI, {sf.name} ({sf.stat().st_size / 1e6:.0f} MB)",
                lambda sf=sf: render_audio(score, sample_rate=args.sample_rate, soundfont=sf,
                                           synthesizer="fluidsynth"))
    piano_roll_png(score)  # first call loads the font
    row("piano roll PNG 1200x480", lambda: piano_roll_png(score, boundary=music / 2))


if __name__ == "__main__":
    main()
