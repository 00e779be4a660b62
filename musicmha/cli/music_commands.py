"""`musicmha generate | infill | add-part`: the subcommands that write music, and the options they share."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used, so `musicmha --help` stays fast
    from musicmha.generation.request import GenerationRequest


def _add_sampling_options(p: argparse.ArgumentParser, *, instruments: bool = True) -> None:
    """What generate, infill and add-part share: checkpoint, output, sampling, instruments (not for add-part,
    whose --instrument is the new part's), audio and roll."""
    p.add_argument("--checkpoint", default=None, help="model folder (default: the shipped checkpoint)")
    p.add_argument("--out", required=True, help="output .mid; several samples become out-1.mid, out-2.mid, ...")
    p.add_argument("--temperature", type=float, default=1.0, help="0: greedy; higher is wilder (default 1)")
    p.add_argument("--top-k", type=int, default=None, help="keep only the k likeliest tokens (0: off, the default)")
    p.add_argument("--top-p", type=float, default=None, help="keep the likeliest tokens holding this much "
                   "probability, in (0, 1] (1: off, the default)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one, printed)")
    p.add_argument("--num-samples", type=int, default=1)
    if instruments:
        _add_instrument_options(p)
    else:
        p.set_defaults(instruments=None, drums=None, allow_new_instruments=False)
    character = p.add_argument_group("character (needs a model trained with style and density tokens)")
    character.add_argument("--style", default=None, help="e.g. swing, bossa-nova, chorale (musicmha styles lists "
                           "them; default: the prompt's own)")
    character.add_argument("--density", default=None, metavar="LEVEL",
                           help="notes per bar: a level 1-7, a word (very calm, calm, moderate, lively, busy, "
                                "very busy, densest) or calmer / busier than the prompt")
    p.add_argument("--pitch-range", default=None, metavar="LOW-HIGH",
                   help="keep every new pitched note between two pitches, e.g. C3-C6 or 48-84 (middle C is C4; "
                        "any model; drums are not limited)")
    p.add_argument("--wav", default=None, help="also render audio (.wav, or .flac/.mp3 with ffmpeg)")
    p.add_argument("--png", default=None, help="also draw a piano roll")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--copy-boost", type=float, default=None, metavar="B",
                   help="how strongly the copy head repeats earlier music: its sampling boost (default: the "
                        "checkpoint's; 1: the fitted weights; higher repeats more)")
    p.add_argument("--no-copy-head", action="store_true",
                   help="sample from the model alone, without the checkpoint's copy head")


def _add_instrument_options(p: argparse.ArgumentParser) -> None:
    band = p.add_argument_group("instruments (default: the prompt's own; from nothing: any)")
    band.add_argument("--instruments", default=None, metavar="PROGRAMS",
                      help="General MIDI programs 0..127 the new notes may use, e.g. 0,33")
    band.add_argument("--drums", action=argparse.BooleanOptionalAction, default=None,
                      help="allow or forbid the drum kit (default: when the prompt has drums)")
    band.add_argument("--allow-new-instruments", action="store_true",
                      help="let the model bring in instruments the prompt does not have")


def add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="continue a MIDI prompt with a trained model (MIDI, WAV, PNG out)")
    p.add_argument("--prompt", default=None, help="MIDI file to continue (default: start from nothing)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--bars", type=int, default=None, help="stop after this many new bars")
    length.add_argument("--seconds", type=float, default=None, help="stop after this much new music")
    length.add_argument("--max-new-tokens", type=int, default=None, help="stop after this many tokens")
    p.add_argument("--prompt-tokens", type=int, default=None,
                   help="condition on at most this many prompt tokens (cut at a bar start)")
    p.add_argument("--unconstrained", action="store_true",
                   help="sample without the token grammar (instrument and length controls still hold)")
    p.add_argument("--allow-early-end", action="store_true",
                   help="let the model end the piece before the --bars/--seconds asked for")
    p.add_argument("--allow-empty-bars", action="store_true",
                   help="let the model leave whole bars silent (default: every new bar holds a note)")
    p.add_argument("--allow-parts-to-stop", action="store_true",
                   help="let parts of the prompt's last bars stop (default: each plays on, resting no longer "
                        "than it rested there)")
    p.add_argument("--allow-tempo-changes", action="store_true",
                   help="let the model change the tempo (default: the prompt's tempo, or the first one, holds)")
    opening = p.add_argument_group("from nothing (no --prompt)")
    opening.add_argument("--tempo", type=float, default=None, metavar="BPM", help="opening tempo")
    opening.add_argument("--time-signature", default=None, metavar="N/D", help="opening meter, e.g. 3/4")
    _add_sampling_options(p)
    p.set_defaults(run=_run_generate)


def add_styles(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("styles", help="list the styles and density levels --style and --density take")
    p.set_defaults(run=_run_styles)


def _run_styles(args: argparse.Namespace) -> int:
    from musicmha.data.styles import DENSITY_BOUNDS, DENSITY_WORDS, RELATIVE_DENSITIES, STYLES

    width = max(map(len, STYLES))
    print("styles (--style):")
    for name, words in STYLES.items():
        print(f"  {name:<{width}}  {words}")
    print("density (--density), notes per bar:")
    bounds = [0, *DENSITY_BOUNDS]
    for level, word in enumerate(DENSITY_WORDS, start=1):
        span = f"over {bounds[-1]:g}" if level == len(DENSITY_WORDS) else f"{bounds[level - 1]:g}-{bounds[level]:g}"
        print(f"  {level}  {word:<10} {span}")
    print(f"  or {' / '.join(RELATIVE_DENSITIES)}: one level from the prompt's own")
    return 0


def _numbered(path: str, index: int, count: int) -> Path:
    path = Path(path)
    return path if count == 1 else path.with_name(f"{path.stem}-{index}{path.suffix}")


def request_from_args(args: argparse.Namespace, *, infill: bool = False) -> GenerationRequest:
    """The flags as one GenerationRequest, checked before the model loads (a typo costs no time); the
    sampling flags are read exactly as the app reads its fields (SamplingOptions.from_inputs)."""
    from musicmha.errors import ConfigError
    from musicmha.generation.controls import parse_programs, parse_time_signature
    from musicmha.generation.options import SamplingOptions
    from musicmha.generation.request import GenerationRequest

    if args.copy_boost is not None and args.no_copy_head:
        raise ConfigError("--copy-boost sets the copy head's strength: it cannot go with --no-copy-head")
    fields = dict(sampling=SamplingOptions.from_inputs(args.temperature, args.top_k, args.top_p, args.seed),
                  num_samples=args.num_samples, copy_boost=args.copy_boost, drums=args.drums,
                  instruments=parse_programs(args.instruments) if args.instruments is not None else None,
                  allow_new_instruments=args.allow_new_instruments, style=args.style, density=args.density,
                  pitch_range=args.pitch_range)
    if not infill:
        fields.update(max_new_tokens=args.max_new_tokens, bars=args.bars, seconds=args.seconds,
                      prompt_tokens=args.prompt_tokens, constrained=not args.unconstrained,
                      allow_early_end=args.allow_early_end, tempo=args.tempo,
                      time_signature=parse_time_signature(args.time_signature),
                      allow_tempo_changes=args.allow_tempo_changes, allow_empty_bars=args.allow_empty_bars,
                      allow_parts_to_stop=args.allow_parts_to_stop)
    return GenerationRequest(**fields)


def _generator(args: argparse.Namespace):
    """The MusicGenerator the flags ask for."""
    from musicmha.generation.music_generator import MusicGenerator

    return MusicGenerator.from_pretrained(args.checkpoint, device=args.device, copy_head=not args.no_copy_head)


def _run_generate(args: argparse.Namespace) -> int:
    request = request_from_args(args)
    results = _generator(args).continue_midi(args.prompt, request)
    _write_results(args, results)
    return 0


def add_infill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infill", help="regenerate bars inside a MIDI piece, keeping everything around them")
    p.add_argument("--prompt", required=True, help="the MIDI piece")
    p.add_argument("--bars", required=True, metavar="FIRST-LAST",
                   help="the bars to regenerate, counted from 1 on the piece's own time signatures, e.g. 9-12")
    _add_sampling_options(p)
    p.set_defaults(run=_run_infill)


def _bar_range(text: str) -> tuple[int, int]:
    """--bars FIRST-LAST as two whole numbers (the range itself is checked against the piece later)."""
    from musicmha.errors import ConfigError

    try:
        first, last = (int(x) for x in text.replace(" ", "").split("-"))
    except ValueError:
        raise ConfigError(f"--bars takes a range of bars like 9-12, got {text!r}") from None
    return first, last


def _run_infill(args: argparse.Namespace) -> int:
    first, last = _bar_range(args.bars)
    request = request_from_args(args, infill=True)
    results = _generator(args).infill(args.prompt, first, last, request)
    _write_results(args, results)
    return 0


def add_add_part(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("add-part", help="write a new part (bass, drums, piano, ...) into a MIDI piece as its own "
                                        "track, keeping every note that is there")
    p.add_argument("--prompt", required=True, help="the MIDI piece")
    p.add_argument("--instrument", required=True,
                   help="a General MIDI program 0..127, drums, or bass, piano, guitar, strings, brass, lead, pad")
    p.add_argument("--bars", default=None, metavar="FIRST-LAST",
                   help="the bars the part plays in, counted from 1, e.g. 1-16 (default: the whole piece)")
    p.add_argument("--layout", default="interleaved", choices=("interleaved", "lead", "after"),
                   help="how the model writes the part: slipped into the piece's stream (any model), or in the "
                        "layout a model was trained on (lead, after)")
    _add_sampling_options(p, instruments=False)
    p.set_defaults(run=_run_add_part)


def _run_add_part(args: argparse.Namespace) -> int:
    from musicmha.generation.add_part import resolve_instrument

    bars = _bar_range(args.bars) if args.bars is not None else None
    resolve_instrument(args.instrument)  # a typo is refused before the model loads
    request = request_from_args(args, infill=True)  # infill's fields: no length, no tempo or meter
    results = _generator(args).add_part(args.prompt, request, instrument=args.instrument, bars=bars,
                                        layout=args.layout)
    _write_results(args, results)
    return 0


def _write_results(args: argparse.Namespace, results: list) -> None:
    from musicmha.atomic_files import write_atomic

    for index, result in enumerate(results, start=1):
        midi = _numbered(args.out, index, len(results))
        write_atomic(midi, lambda tmp, score=result.score: tmp.write_bytes(score.dumps_midi()))
        written = [str(midi)]
        if args.wav:
            from musicmha.render.audio import render_audio
            from musicmha.render.wav import write_audio

            audio, rate = render_audio(result.score)
            written.append(str(write_audio(_numbered(args.wav, index, len(results)), audio, rate)))
        if args.png:
            from musicmha.render.pianoroll import piano_roll_png

            png = _numbered(args.png, index, len(results))
            piano_roll_png(result.score, png, boundary_tick=result.boundary_tick)
            written.append(str(png))
        print(f"{', '.join(written)}: {result.continuation.note_num()} new notes, "
              f"{len(result.new_token_ids)} tokens, seed {result.seed}")
