"""'Add a part': an instrument picker in musical words under the prompt's roll and the handlers that run
`MusicGenerator.add_part` as Regenerate runs `infill`: the same settings (adventure, seed, variations, style,
density), background job, progress in bars, Stop and result cards. Each result is the whole piece with the
new part as one more track (every existing track unchanged), heard with the other parts and alone; its colour
is one no track of the prompt has, the same in every roll. 'Keep this one' puts it in the history. Bad
requests are the library's one-line message before anything on the page changes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import symusic

from musicmha.app import bars as bar_range
from musicmha.app.handlers import Handlers, has_music, plural, prompt_palette
from musicmha.app.job import GenerationJob
from musicmha.app.service import MAX_AUDIO_SECONDS, SAMPLE_RATE, audible_start, write_midi, write_wav
from musicmha.app.settings import MAX_VARIATIONS, asked_words, page_request
from musicmha.app.views import placeholder_html, roll_size, window
from musicmha.data.tokenizer import program_names
from musicmha.errors import ConfigError, MusicmhaError
from musicmha.generation import add_part as library
from musicmha.generation.grammar import TokenGrammar
from musicmha.render.audio import render_audio

NO_PROMPT = "adding a part needs a prompt: drop a MIDI file or pick an example first"
# The picker: the family words first (what a musician asks for), then every General MIDI program by number.
FAMILY_CHOICES = [("bass", "bass"), ("drums", "drums"), ("piano (comping)", "piano"), ("strings", "strings"),
                  ("guitar", "guitar"), ("brass", "brass"), ("lead (a synth melody)", "lead"),
                  ("pad (held synth chords)", "pad")]
PART_CHOICES = [*FAMILY_CHOICES, *((f"{i}: {name} (General MIDI)", str(i)) for i, name in enumerate(program_names()))]
WHOLE, SHADED = "whole", "shaded"
SCOPE_CHOICES = [("the whole piece", WHOLE), ("the shaded bars (From bar, To bar)", SHADED)]
# The page's settings a new part takes, in the API's order (after the prompt, instrument, where and the bars);
# then the whole-piece view, style and density, as /regenerate has them. No length (the piece or its bars), no
# instruments (the picker), no memory, tempo or meter (the piece keeps its own).
PART_SETTINGS = ("temperature", "top_k", "top_p", "seed", "random_seed", "variations", "checkpoint")


def part_word(instrument: Any, program: int) -> str:
    """The part's name on the page: the family word asked for ('bass', 'drums'), else its GM instrument."""
    word = str(instrument).strip().lower()
    if word in library.PART_WORDS:
        return word
    return "drums" if program == library.DRUMS else program_names()[program]


def part_edit(word: str, bars: tuple[int, int], whole: bool) -> str:
    """The history's record of an added part: '+bass' (the whole piece) or '+bass@3-4'."""
    return f"+{word}" + ("" if whole else f"@{bar_range.edit_name(*bars)}")


class AddPart:
    """The add-a-part handlers, sharing the app's handlers (config, jobs per session, Stop, result views)."""

    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers

    def bars(self, score: symusic.Score, scope: str | None, first: Any, last: Any) -> tuple[tuple[int, int], bool]:
        """The bars the part plays in, and whether that is the whole piece: every bar, or the shaded range
        (checked by the library's own rule: whole numbers, in order, inside the piece)."""
        count = bar_range.count_bars(score)
        scope = (scope or WHOLE).strip()
        scope = {label: value for label, value in SCOPE_CHOICES}.get(scope, scope)
        if scope == WHOLE:
            return (1, count), True
        if scope != SHADED:
            raise ConfigError(f"where the part plays must be {WHOLE!r} or {SHADED!r}, not {scope!r}")
        start, end = bar_range.whole(first), bar_range.whole(last)
        if start is None or end is None:
            raise ConfigError(f"bars must be whole numbers (from bar, to bar), not {first!r} to {last!r}")
        start, end = library.bar_span([(0, 0.0)] * (count + 1), (start, end))
        return (start, end), (start, end) == (1, count)

    def prepare(self, prompt: str | None, instrument: Any, scope: str | None, first: Any, last: Any,
                settings: dict[str, Any]) -> tuple:
        """Every check before anything changes: the settings, the prompt, the model, the instrument (a family
        word, a GM program or drums, one the model's tokenizer can write) and the bars."""
        _, score = self.handlers.read_prompt(prompt)
        if score is None:
            raise gr.Error(NO_PROMPT)
        try:
            request = library.check_request(page_request(**settings))
            generator = self.handlers.config.cache.get(self.handlers.checkpoint_folder(settings.get("checkpoint")))
            generator.check(request, has_prompt=True)
            if isinstance(instrument, float) and instrument.is_integer():  # a program sent as a number
                instrument = int(instrument)
            if instrument is None or (isinstance(instrument, str) and not instrument.strip()):
                raise ConfigError("choose the new part's instrument: a family word such as bass, or drums")
            chosen = library.resolve_instrument(instrument)
            if generator.spec is None:
                raise ConfigError("adding a part needs a model whose tokenizer has no BPE")
            if chosen.program not in TokenGrammar(generator.spec).program_token:
                raise ConfigError(f"this model's tokenizer cannot write {chosen.name} (program {chosen.program})")
            bars, whole = self.bars(score, scope, first, last)
        except MusicmhaError as error:
            raise gr.Error(str(error)) from None
        return generator, score, request, chosen, part_word(instrument, chosen.program), bars, whole

    def check(self, prompt: str | None, instrument: Any, scope: str | None, first: Any, last: Any,
              **settings: Any) -> None:
        """The page runs this first: a bad value gives one message and nothing else changes."""
        self.prepare(prompt, instrument, scope, first, last, settings)

    def add_part(self, prompt: str | None, instrument: Any, scope: str | None = WHOLE, first: Any = None,
                 last: Any = None, full_view: bool | None = False, session: dict | None = None,
                 request: gr.Request = None, **settings: Any) -> Iterator[tuple]:
        """Stream the same updates as Generate (status, seed, 4 audios, 4 rolls, 4 MIDI files, results): each
        result is the whole piece with the new part, shown around its bars (the whole piece: all of it)."""
        generator, score, asked, chosen, word, bars, whole = self.prepare(prompt, instrument, scope, first, last,
                                                                          settings)
        count = asked.num_samples
        base, steps, edits = self.handlers.lineage(prompt, session)
        target = "drums" if chosen.is_drum else chosen.program
        job = GenerationJob(generator, score, asked, self.handlers.config.time_limit, part=(target, bars))
        where = "the whole piece" if whole else bar_range.edit_name(*bars, words=True)
        waiting = [placeholder_html(f"Variation {i + 1}: adding {word} to {where}...") if i < count else ""
                   for i in range(MAX_VARIATIONS)]
        words = asked_words(asked.style, asked.density, asked.pitch_range)
        yield from self.handlers.follow(job, request, f"Adding {word} to {where} ({plural(count, 'variation')}"
                                        f"{', ' + words if words else ''})", waiting)
        yield self.finish(job, base, steps, bool(full_view), edits, word, bars, whole)

    def finish(self, job: GenerationJob, base: str, steps: int, full: bool, edits: list[str], word: str,
               bars: tuple[int, int], whole: bool) -> tuple:
        """The final update. Each record: the whole piece's MIDI (every track of the prompt, then the new one),
        the new part alone ('alone', with the piece's tempo and meter), and which track is new ('part')."""
        files, index = self.handlers.config.files, len(job.prompt.tracks)  # add_part appends the new track
        named = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{base}-{word}")
        partial = job.stopped or job.timed_out
        records = []
        for i, result in enumerate(job.results):
            track = result.score.tracks[index]
            alone = result.score.copy()
            for _ in range(index):
                del alone.tracks[0]
            records.append({
                "midi": str(write_midi(result.score, files, f"{named}-variation-{i + 1}.mid")),
                "alone": str(write_midi(alone, files, f"{named}-alone-variation-{i + 1}.mid")),
                "boundary": 0, "seed": result.seed, "base": base, "steps": steps, "partial": partial,
                "style": job.request.style, "density": job.request.density, "pitch_range": job.request.pitch_range,
                "count": len(job.results),
                "notes": track.note_num(), "palette": prompt_palette(job.prompt),
                "edits": [*edits, part_edit(word, bars, whole)],
                "part": {"index": index, "name": track.name, "word": word, "drum": bool(track.is_drum),
                         "bars": list(bars), "whole": whole}})
        views = self.handlers.views(full, records)
        seed = records[0]["seed"] if records else None
        if partial:
            status = self.handlers._stopped(job, records, job.seconds(), seed)
        else:
            where = "the whole piece" if whole else bar_range.edit_name(*bars, words=True)
            status = (f"Done: {len(records)} variation(s) of {word} added to {where} in {job.seconds():.1f} s, "
                      f"seed {seed}, notes of the new part: {', '.join(str(r['notes']) for r in records)}.")
        midis = [r["midi"] if has_music(r) else None for r in records] + [None] * (MAX_VARIATIONS - len(records))
        return (status, seed, *views[:MAX_VARIATIONS], *views[MAX_VARIATIONS:], *midis, records)

    # --- the new part alone ------------------------------------------------------------------------
    def alone_audio(self, index: int, record: dict, full: bool) -> str | None:
        """The new part alone, as a WAV over the same window (and from the same bar) as the variation's own
        player, so both play in step with the roll; None when it has no notes there."""
        score, alone = symusic.Score(record["midi"]), symusic.Score(record["alone"])
        bars = record["part"]["bars"]
        start, stop = (0, None) if full or record["part"]["whole"] else bar_range.focus(score, *bars)
        if not window(score, start, stop).note_num():
            start, stop = 0, None
        _, heard = audible_start(window(score, start, stop))
        shown = window(window(alone, start, stop), heard)
        if not shown.note_num():
            return None
        audio, rate = render_audio(shown, sample_rate=SAMPLE_RATE, max_seconds=MAX_AUDIO_SECONDS)
        name = f"{Path(record['alone']).stem}{'' if full else '-excerpt'}.wav"
        return str(write_wav((rate, audio), self.handlers.config.files, name))

    def players(self, records: list[dict] | None, full_view: bool | None = False) -> list:
        """4 'alone' players (shown under an added part's result, hidden otherwise), then the 4 results'
        players' labels ('with the other parts' under an added part)."""
        records, alone, labels = records or [], [], []
        for i in range(MAX_VARIATIONS):
            record = records[i] if i < len(records) else None
            part = record.get("part") if record else None
            if part and has_music(record) and record.get("notes"):
                try:
                    value = self.alone_audio(i, record, bool(full_view))
                except MusicmhaError as error:
                    raise gr.Error(f"cannot render variation {i + 1}'s new part: {error}") from None
                alone.append(gr.Audio(value=value, visible=True, playback_position=0,
                                      label=f"Variation {i + 1}: the {part['word']} alone"))
                labels.append(gr.Audio(label=f"Variation {i + 1}: with the other parts"))
            else:
                alone.append(gr.Audio(value=None, visible=False))
                labels.append(gr.Audio(label=f"Variation {i + 1}"))
        return [*alone, *labels]

