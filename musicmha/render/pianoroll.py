"""Piano-roll pictures of a score: time across, pitch up, one color per track, drums in their own lane.

A track's color comes from its key (name, program, drum flag, and which of the tracks alike it is), placed in
a `palette` of keys (by default the score's own tracks, in order): pictures of one piece given the same
palette (its prompt's tracks) color each track the same, whichever tracks have notes in the part shown.

Drawn with Pillow (no matplotlib: importing it alone takes longer than drawing a minute of music) using
Pillow's bundled font, so nothing is fetched. A vertical red line can mark where a prompt ends and the
model's continuation begins; the prompt side is lightly shaded. `PianoRoll.x_of` maps times to pixels,
so callers and tests can find things in the picture.
"""

from __future__ import annotations

import functools
import io
import zlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import symusic
from PIL import Image, ImageDraw, ImageFont

from musicmha.data.midi_io import load_midi

Unit = Literal["seconds", "beats"]
Color = tuple[int, int, int]
# A track's name (stripped), program, drum flag, and how many earlier tracks with notes share those three
TrackKey = tuple[str, int, bool, int]

# Tableau-like colors without red (kept for the boundary) and gray (kept for drums).
PALETTE: tuple[Color, ...] = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189), (140, 86, 75),
                              (227, 119, 194), (188, 189, 34), (23, 190, 207), (0, 70, 140), (200, 150, 0))
DRUM_COLOR: Color = (70, 70, 70)
BOUNDARY_COLOR: Color = (220, 0, 0)
_PROMPT_SHADE: Color = (238, 242, 250)
_GRID: Color = (225, 225, 225)
_TEXT: Color = (60, 60, 60)
_AXIS_TEXT: Color = (120, 120, 120)
FAMILIES = ("Piano", "Chromatic perc.", "Organ", "Guitar", "Bass", "Strings", "Ensemble", "Brass", "Reed",
            "Pipe", "Synth lead", "Synth pad", "Synth FX", "Ethnic", "Percussive", "Sound FX")


@functools.lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font (needs FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def track_label(track: symusic.core.TrackTick | symusic.core.TrackSecond, number: int | None = None) -> str:
    """Legend text: the track's name, else its General MIDI family, with the program number; `number`
    tells apart tracks that would read the same ('Piano 1 (0)', 'Piano 2 (0)')."""
    nth = f" {number}" if number else ""
    if track.is_drum:
        return f"Drums{nth}{': ' + track.name.strip() if track.name.strip() else ''}"
    name = track.name.strip() or FAMILIES[int(track.program) // 8]
    return f"{name}{nth} ({int(track.program)})"


def track_keys(score: symusic.Score) -> list[TrackKey | None]:
    """One key per track of `score` (in its order; None for a track without notes): what colors it, the same
    in every picture of the piece."""
    seen: dict[tuple[str, int, bool], int] = {}
    keys: list[TrackKey | None] = []
    for track in score.tracks:
        if not track.note_num():
            keys.append(None)
            continue
        alike = (track.name.strip(), int(track.program), bool(track.is_drum))
        keys.append((*alike, seen.get(alike, 0)))
        seen[alike] = seen.get(alike, 0) + 1
    return keys


def track_colors(keys: Sequence[TrackKey | None], palette: Sequence[TrackKey]) -> dict[int, Color]:
    """Track index -> color: drums gray; a pitched track in `palette` the color of its place among the
    palette's pitched tracks; one that is not (an instrument a continuation added) a color the palette
    leaves free, chosen from its key (so it too is the same in every picture), not one used in this picture."""
    pitched = [tuple(k) for k in dict.fromkeys(tuple(k) for k in palette) if not k[2]]
    place = {key: i % len(PALETTE) for i, key in enumerate(pitched)}
    taken, used, colors = set(place.values()), set(), {}
    for index, key in enumerate(keys):
        if key is None:
            continue
        key = tuple(key)
        if key[2]:
            colors[index] = DRUM_COLOR
            continue
        if key in place:
            choice = place[key]
        else:
            start = zlib.crc32(repr(key).encode()) % len(PALETTE)
            free = ([c for c in range(len(PALETTE)) if c not in taken and c not in used]
                    or [c for c in range(len(PALETTE)) if c not in used] or list(range(len(PALETTE))))
            choice = min(free, key=lambda c: (c - start) % len(PALETTE))
        used.add(choice)
        colors[index] = PALETTE[choice]
    return colors


def _nice_step(span: float, max_ticks: int, unit: Unit = "seconds") -> float:
    """A round grid step giving at most `max_ticks` lines over `span`: 1, 2 or 5 times a power of ten
    for seconds, a power of two for beats (so lines fall on bars in 4/4)."""
    raw = max(span / max(max_ticks, 1), 1e-9)
    if unit == "beats":
        return 2.0 ** math.ceil(math.log2(raw))
    base = 10.0 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)


@dataclass(frozen=True)
class PianoRoll:
    """A drawn piano roll and the geometry needed to read it."""

    image: Image.Image
    plot: tuple[int, int, int, int]  # left, top, right, bottom of the note area, in pixels
    end: float                       # time at the right edge, in `unit` (the left edge is 0)
    unit: Unit
    colors: dict[int, Color]         # track index -> fill color of its notes
    legend: list[tuple[str, Color]] = field(default_factory=list)  # (label, color) of each track drawn

    def x_of(self, time: float) -> int:
        """Pixel column of `time` (in `unit`)."""
        left, _, right, _ = self.plot
        return int(round(left + (right - left) * time / self.end))

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG", optimize=False)  # optimize=True is ~5x slower for ~10% less
        return buffer.getvalue()


def piano_roll(score: symusic.Score | str | os.PathLike | bytes, *, boundary: float | None = None,
               boundary_tick: int | None = None, unit: Unit = "seconds", width: int = 1200, height: int = 480,
               title: str | None = None, keys: Sequence[TrackKey | None] | None = None,
               palette: Sequence[TrackKey] | None = None) -> PianoRoll:
    """Draw `score` (a tick Score, a path or MIDI bytes). `boundary` (in `unit`) or `boundary_tick` (in the
    score's ticks) marks the end of the prompt. `keys` (one per track of `score`; default `track_keys(score)`)
    and `palette` (default: the same keys) choose the colors, see `track_colors`: a part of a piece is drawn
    with the whole piece's keys, and every picture of a piece with its prompt's keys as palette."""
    if unit not in ("seconds", "beats"):
        raise ValueError(f"unit must be 'seconds' or 'beats', not {unit!r}")
    if width < 200 or height < 120:
        raise ValueError(f"piano roll too small: {width}x{height} (at least 200x120)")
    tick_score = load_midi(score)
    if tick_score.ttype != symusic.core.Tick:  # boundary_tick and the tempo map need tick time
        tick_score = tick_score.to("tick")
    timed = tick_score.to("second" if unit == "seconds" else "quarter")
    if boundary_tick is not None:
        marker = symusic.Score(tick_score.ticks_per_quarter)
        marker.tempos = tick_score.tempos  # same tempo map, so the tick converts exactly like the notes
        marker.tracks.append(symusic.Track(notes=[symusic.Note(int(boundary_tick), 0, 60, 1)]))
        boundary = float(marker.to("second" if unit == "seconds" else "quarter").tracks[0].notes[0].time)
    tracks = [(i, t) for i, t in enumerate(timed.tracks) if t.note_num()]
    keys = list(track_keys(tick_score) if keys is None else keys)
    if len(keys) != len(timed.tracks):
        raise ValueError(f"{len(keys)} track keys for {len(timed.tracks)} tracks")
    own = track_keys(tick_score)
    keys = [key if key is not None else own[i] for i, key in enumerate(keys)]  # notes the whole piece lacked
    palette = [k for k in keys if k is not None] if palette is None else list(palette)
    end = max([float(timed.end()), boundary or 0.0, 1e-3]) * 1.02  # a little room after the last note

    font, small = _font(11), _font(9)  # the time axis smaller: bar numbers (written over the roll) come first
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    legend_w = min(190, width // 4)
    left, top, right, bottom = 34, 18, width - legend_w - 8, height - 20
    roll = PianoRoll(image, (left, top, right, bottom), end, unit, track_colors(keys, palette))
    has_drums = any(t.is_drum for _, t in tracks)
    drum_h = max(16, (bottom - top) // 7) if has_drums else 0
    pitch_bottom = bottom - drum_h - (4 if has_drums else 0)

    pitches = [int(n.pitch) for _, t in tracks if not t.is_drum for n in t.notes]
    low, high = (min(pitches) - 1, max(pitches) + 1) if pitches else (47, 73)
    row = (pitch_bottom - top) / (high - low + 1)

    def y_of(pitch: int) -> float:  # top edge of a pitch's row
        return pitch_bottom - (pitch - low + 1) * row

    if boundary is not None and boundary > 0:
        draw.rectangle([left, top, roll.x_of(boundary), bottom], fill=_PROMPT_SHADE)
    step = _nice_step(end, max(2, (right - left) // 80), unit)
    for k in range(int(end / step) + 1):
        x = roll.x_of(k * step)
        draw.line([x, top, x, bottom], fill=_GRID)
        draw.text((x, bottom + 3), f"{k * step:g}", fill=_AXIS_TEXT, font=small, anchor="mt")
    draw.text((right + 10, bottom + 3), "seconds" if unit == "seconds" else "beats", fill=_AXIS_TEXT, font=small,
              anchor="lt")
    for pitch in range(low, high + 1):
        if pitch % 12 == 0 and row * 12 >= 12:  # label each C (C4 = 60) when there is room for it
            y = y_of(pitch) + row / 2
            draw.line([left, y, right, y], fill=_GRID)
            draw.text((left - 3, y), f"C{pitch // 12 - 1}", fill=_TEXT, font=font, anchor="rm")
    if has_drums:
        draw.rectangle([left, bottom - drum_h, right, bottom], outline=_GRID)
        draw.text((left - 3, bottom - drum_h / 2), "dr", fill=_TEXT, font=font, anchor="rm")

    for index in [i for i in roll.colors if not timed.tracks[i].note_num()]:
        del roll.colors[index]  # colored like the whole piece, but nothing to draw here
    alike = [tuple(k[:3]) for k in [*keys, *palette] if k is not None and k[3] > 0]
    for index, track in tracks:
        key = keys[index]
        number = key[3] + 1 if tuple(key[:3]) in alike else None
        roll.legend.append((track_label(track, number), roll.colors[index]))
    for index, track in tracks:
        color = roll.colors[index]
        for note in track.notes:
            x0 = roll.x_of(float(note.time))
            if track.is_drum:  # a short mark per hit, placed in the lane by key number (35..81)
                y = bottom - 3 - (drum_h - 6) * min(max(int(note.pitch) - 35, 0), 46) / 46
                draw.rectangle([x0, y - 2, x0 + 1, y + 2], fill=color)
                continue
            x1 = max(x0, roll.x_of(float(note.time + note.duration)) - 1)  # a gap between repeated notes
            y0 = y_of(int(note.pitch))
            draw.rectangle([x0, round(y0), x1, max(round(y0), round(y0 + row) - 1)], fill=color)

    if boundary is not None:
        x = roll.x_of(boundary)
        draw.line([x, top, x, bottom], fill=BOUNDARY_COLOR, width=2)
        draw.text((x - 4, top - 3), "prompt", fill=BOUNDARY_COLOR, font=font, anchor="rd")
        if x + 4 + draw.textlength("continuation", font=font) <= right:
            draw.text((x + 4, top - 3), "continuation", fill=BOUNDARY_COLOR, font=font, anchor="ld")
    if title:
        draw.text((left, top - 3), title, fill=_TEXT, font=font, anchor="ld")

    ly, lx = top, right + 12
    for shown, (index, track) in enumerate(tracks):
        if ly + 14 > bottom:
            draw.text((lx, ly), f"+{len(tracks) - shown} more", fill=_TEXT, font=font)
            break
        label, color = roll.legend[shown]
        draw.rectangle([lx, ly + 1, lx + 10, ly + 11], fill=color)
        while len(label) > 3 and draw.textlength(label, font=font) > legend_w - 20:
            label = label[:-2] + "…"
        draw.text((lx + 15, ly), label, fill=_TEXT, font=font)
        ly += 16
    return roll


def piano_roll_png(score: symusic.Score | str | os.PathLike | bytes, path: str | os.PathLike | None = None, *,
                   boundary: float | None = None, boundary_tick: int | None = None, unit: Unit = "seconds",
                   width: int = 1200, height: int = 480, title: str | None = None) -> bytes:
    """PNG bytes of `piano_roll(...)`; also written to `path` when given."""
    data = piano_roll(score, boundary=boundary, boundary_tick=boundary_tick, unit=unit, width=width,
                      height=height, title=title).png()
    if path is not None:
        Path(path).write_bytes(data)
    return data
