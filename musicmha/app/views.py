"""What a variation looks like in the page, without gradio: the window it is heard and seen in (the prompt's
last bars, then the continuation; or the bars around a regenerated range), its piano roll as HTML with a
playhead, bar numbers and its legend (the page's script and style: page_script.py).

The audio and the roll of one view are made from the same windowed score, so second 0 of the audio is the
roll's left edge and the script can place the playhead from the audio element's currentTime alone.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass

import symusic

from musicmha.data.midi_io import bar_starts
from musicmha.render.pianoroll import TrackKey, piano_roll

CONTEXT_BARS = 2  # bars of the prompt heard and shown before the continuation


def window_start(score: symusic.Score, boundary_tick: int, bars: int = CONTEXT_BARS) -> int:
    """Tick where the short view starts: the start of the `bars`-th last bar of the prompt, i.e. the bar
    holding the prompt's end and the ones before it (0 when the prompt is shorter)."""
    if boundary_tick <= 0:
        return 0
    starts = bar_starts(score, 0, boundary_tick)
    return starts[-bars] if len(starts) >= bars else 0


def window(score: symusic.Score, start: int, stop: int | None = None) -> symusic.Score:
    """`score` from tick `start` on (up to `stop`, when given), moved so that `start` is 0; the tempo and meter
    in force at `start` are kept (symusic's clip moves them there). Notes that began before `start` or from
    `stop` on are left out; the ones kept sound to their end."""
    if start <= 0 and stop is None:
        return score
    end = max(int(score.end()), start) + 1 if stop is None else stop
    return score.clip(max(start, 0), end, clip_end=False).shift_time(-max(start, 0))


def seconds_at(score: symusic.Score, ticks: list[int]) -> list[float]:
    """The times in seconds of `ticks` in `score`, through its tempo map (the piano roll's time axis)."""
    if not ticks:
        return []
    marker = symusic.Score(score.ticks_per_quarter)
    marker.tempos = score.tempos  # the same tempo map: the ticks convert exactly like the notes
    order = sorted(set(int(t) for t in ticks))
    marker.tracks.append(symusic.Track(notes=[symusic.Note(t, 1, 60, 1) for t in order]))
    seconds = dict(zip(order, sorted(float(n.time) for n in marker.to("second").tracks[0].notes)))
    return [seconds[int(t)] for t in ticks]


@dataclass(frozen=True)
class BarMarks:
    """Bar numbers to write over a roll and the range of bars to shade, in the drawn score's ticks."""
    bars: tuple[tuple[int, int], ...]  # (bar number as a musician counts it, tick where it starts)
    span: tuple[int, int] | None = None  # [start, end) of the chosen bars
    label: str = ""  # written in the shaded range, e.g. "bars 3-4"


@dataclass(frozen=True)
class RollSize:
    width: int
    height: int


def roll_size(variations: int) -> RollSize:
    """Pixel size of a result's roll, so its text stays readable at the width one result gets on a
    laptop screen (1 per row, 2 per row, 3 per row, 2 x 2)."""
    return {1: RollSize(1150, 340), 2: RollSize(640, 300), 3: RollSize(480, 280)}.get(variations,
                                                                                      RollSize(640, 300))


def roll_html(score: symusic.Score, audio_id: str, *, boundary_tick: int | None = None,
              size: RollSize = RollSize(1000, 340), title: str | None = None, note: str = "",
              marks: BarMarks | None = None, keys: Sequence[TrackKey | None] | None = None,
              palette: Sequence[TrackKey] | None = None, heard_tick: int = 0) -> str:
    """The piano roll as an inline PNG with a playhead that follows the audio player `audio_id`. The data
    attributes give the plot's left/right edges (fractions of the width) and the time at the right edge,
    which is all the page script needs, and the legend (`data-tracks`: [label, color] per track drawn; also
    written under the picture, shown where the picture's own legend is too small to read). `marks` adds bar
    numbers and a shaded range over the picture (HTML, so they stay sharp and the page can find them).
    `keys` and `palette` color the tracks (`musicmha.render.pianoroll.track_colors`): the whole piece's keys
    when `score` is a part of it, the prompt's keys so every roll of the page agrees. `heard_tick`: where the
    player's audio starts (a long piece is heard from its last bars): the part before it is shaded, and the
    playhead is placed from there (`data-heard`, in seconds)."""
    roll = piano_roll(score, boundary_tick=boundary_tick, width=size.width, height=size.height, title=title,
                      keys=keys, palette=palette)
    colors = [(label, "#%02x%02x%02x" % color) for label, color in roll.legend]
    left, top, right, bottom = roll.plot
    png = base64.b64encode(roll.png()).decode("ascii")
    w, h = size.width, size.height
    caption = f'<div class="mm-caption">{html.escape(note)}</div>' if note else ""
    overlay = _marks_html(score, roll, marks, size) if marks is not None else ""
    heard = seconds_at(score, [heard_tick])[0] if heard_tick > 0 else 0.0
    if heard:
        x = min(max(roll.x_of(heard), left), right)
        overlay += (f'<div class="mm-unheard" style="left:{100 * left / w:.2f}%;width:{100 * (x - left) / w:.2f}%;'
                    f'top:{100 * top / h:.2f}%;height:{100 * (bottom - top) / h:.2f}%">'
                    f'<span>not in the player</span></div>')
    legend = "".join(f'<span><i style="background:{color}"></i>{html.escape(label)}</span>' for label, color in colors)
    return (f'<div class="mm-roll" data-audio="{html.escape(audio_id)}" data-x0="{left / w:.5f}" '
            f'data-x1="{right / w:.5f}" data-end="{roll.end:.4f}" data-heard="{heard:.4f}" '
            f'data-tracks="{html.escape(json.dumps(colors))}">'
            f'<img src="data:image/png;base64,{png}" alt="piano roll{": " + html.escape(title) if title else ""}">'
            f'{overlay}'
            f'<div class="mm-playhead" style="top:{100 * top / h:.2f}%;height:{100 * (bottom - top) / h:.2f}%">'
            f'</div></div><div class="mm-legend">{legend}</div>{caption}')


LABEL_GAP = 22  # pixels of the drawn picture between two bar numbers written over it


def bar_labels(bars: Sequence[tuple[int, float]], right: float, gap: float = LABEL_GAP) -> list[tuple[int, float]]:
    """The bar numbers to write over a roll: of `bars` ((number, x in pixels), in order), those left of
    `right`, every k-th one (1, 2, 4, 5, 10, 20, ... counted from bar 1) when bars are less than `gap` pixels
    apart, so that numbers never run together at the picture's size. The page thins them again when the
    picture is shown smaller (page_script.py)."""
    xs = [x for _, x in bars]
    spacing = (xs[-1] - xs[0]) / (len(xs) - 1) if len(xs) > 1 else gap
    # Bars drawn on top of one another (a tempo so fast that the whole piece is a pixel wide): bar 1 alone.
    every = next((k for k in (1, 2, 4, 5, 10, 20, 50, 100) if k * spacing >= gap), 10**9)
    return [(number, x) for number, x in bars if (number - 1) % every == 0 and x < right]


def _marks_html(score: symusic.Score, roll, marks: BarMarks, size: RollSize) -> str:
    """Bar numbers along the plot's top (every k-th bar when they would crowd) and the shaded range, placed
    in percent of the picture so they follow it when the page scales it."""
    left, top, right, bottom = roll.plot
    ticks = [tick for _, tick in marks.bars] + (list(marks.span) if marks.span else [])
    times = seconds_at(score, ticks)
    xs = [min(max(roll.x_of(t), left), right) for t in times]
    bar_xs = xs[:len(marks.bars)]

    def pct(x: float) -> float:
        return 100 * x / size.width

    y0, y1 = 100 * top / size.height, 100 * (bottom - top) / size.height
    parts = []
    if marks.span:
        a, b = xs[len(marks.bars):]
        parts.append(f'<div class="mm-range" style="left:{pct(a):.2f}%;width:{pct(max(b - a, 1)):.2f}%;'
                     f'top:{y0:.2f}%;height:{y1:.2f}%"><span>{html.escape(marks.label)}</span></div>')
    for number, x in bar_labels([(n, x) for (n, _), x in zip(marks.bars, bar_xs)], right):
        parts.append(f'<span class="mm-bar" style="left:{pct(x):.2f}%;top:{y0:.2f}%">{number}</span>')
    return "".join(parts)


def placeholder_html(text: str) -> str:
    return f'<div class="mm-roll mm-empty">{html.escape(text)}</div>'
