"""The `musicmha` console command.

Each subcommand is an argparse parser plus a small `_run_*` function that imports its implementation only
when called, so `musicmha --help` stays fast and light. Errors meant for users (MusicmhaError) are printed
as one line with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from musicmha.errors import MusicmhaError

if TYPE_CHECKING:  # imported where used, so `musicmha --help` stays fast
    from musicmha.generation.options import SamplingOptions

Runner = Callable[[argparse.Namespace], int | None]


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a checkpoint folder: configuration and parameter count")
    p.add_argument("checkpoint", help="folder with config.json and model.safetensors")
    p.set_defaults(run=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    import json

    from musicmha.nn.model import MusicTransformer

    model = MusicTransformer.from_pretrained(args.checkpoint)
    print(json.dumps(model.config.to_dict(), indent=2))
    print(f"parameters: {model.num_parameters():,}")
    return 0


def _add_corpus(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("corpus", help="convert music21's bundled scores (Bach, Palestrina, folk tunes, ...) to MIDI")
    p.add_argument("--out", required=True, help="output folder, e.g. data/corpus (manifest.json is written there)")
    p.add_argument("--collections", default=None,
                   help="comma-separated collections, e.g. bach,palestrina (default: all, then arrangements); "
                        "'arrangements' arranges already converted pieces with mma (drums, bass, comping)")
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: all cores)")
    p.add_argument("--timeout", type=float, default=60.0, help="CPU seconds allowed per file parse and per piece")
    p.add_argument("--limit", type=int, default=None,
                   help="at most N files per collection and N pieces per file (quick tests)")
    p.add_argument("--arrangements", type=int, default=2000,
                   help="how many converted pieces to arrange (needs Debian's mma: apt-get install mma)")
    p.add_argument("--seed", type=int, default=0, help="seed for each arrangement's groove, tempo and instrument")
    p.add_argument("--list", action="store_true", help="list the collections and their file counts, then exit")
    p.set_defaults(run=_run_corpus)


def _run_corpus(args: argparse.Namespace) -> int:
    from musicmha.data.corpus import CorpusConfig, available_collections, build_corpus, collections_arg, summary

    if args.list:
        for name, files in available_collections().items():
            print(f"{name}: {len(files)} files")
        return 0
    cfg = CorpusConfig(out=args.out, collections=collections_arg(args.collections), workers=args.workers,
                       timeout=args.timeout, limit=args.limit, arrangements=args.arrangements, seed=args.seed)
    for line in summary(build_corpus(cfg)):
        print(line)
    return 0


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="tokenize a folder of MIDI files into train/validation/test token shards")
    p.add_argument("input", help="folder searched recursively for .mid/.midi files")
    p.add_argument("--out", required=True, help="token folder, e.g. data/tokens")
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: all cores)")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="train a BPE tokenizer of this vocabulary size on the train split first")
    p.add_argument("--tokenizer", default=None, help="reuse this tokenizer.json (or folder) instead of the default")
    p.add_argument("--seed", type=int, default=0, help="seed for the random augmentation choices")
    p.add_argument("--transpose", default="",
                   help="train-split pitch shifts in semitones, e.g. --transpose=-2,-1,1,2 (drums are not shifted)")
    p.add_argument("--velocity-shift", default="", help="train-split velocity offsets, e.g. --velocity-shift=-8,8")
    p.add_argument("--tempo-scale", default="", help="train-split tempo factors, e.g. 0.9,1.1")
    p.add_argument("--augment-per-piece", type=int, default=0,
                   help="pick this many random augmentation combinations per train piece (0: all of them)")
    p.set_defaults(run=_run_prepare)


def _run_prepare(args: argparse.Namespace) -> int:
    from musicmha.data.prepare import PrepareConfig, prepare, summary

    cfg = PrepareConfig.from_cli(args)
    for line in summary(prepare(cfg)):
        print(line)
    return 0


def _add_dataclass_options(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One --option per dataclass field, documented from the field's metadata (help, choices, and what a
    default of None or "" stands for). Every flag defaults to None so that presets and config files fill
    the gaps; the help shows the dataclass default instead."""
    types = {"int": int, "float": float, "str": str}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        base = str(f.type).split("|")[0].strip()
        help_text = f"{f.metadata['help']} (default: {shown_default(f)})".replace("%", "%%")
        if base == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            choices = f.metadata.get("choices")
            parser.add_argument(flag, type=types[base], default=None, choices=choices, help=help_text,
                                metavar=None if choices else f.metadata.get("metavar") or base.upper())


def shown_default(f) -> str:
    """A dataclass field's default as `--help` shows it: the value itself, or for None (filled in later) and
    "" (required) what the field's metadata says that stands for."""
    if f.default in (None, "") or f.default is dataclasses.MISSING:
        return f.metadata["shown"]
    if isinstance(f.default, bool):
        return "true" if f.default else "false"
    return str(f.default)


def _add_train(sub: argparse._SubParsersAction) -> None:
    from musicmha.training.config import TrainConfig

    p = sub.add_parser("train", help="train a model on a prepared token folder (accelerate: CPU, GPUs, nodes)",
                       description="Options: preset < --config file (YAML/JSON) < flags. "
                                   "Multi-GPU: accelerate launch -m musicmha train ...")
    p.add_argument("--config", metavar="FILE",
                   help="YAML or JSON file of training options, below the flags and above the preset")
    _add_dataclass_options(p, TrainConfig)
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from musicmha.training.train import train
    from musicmha.training.config import TrainConfig

    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    result = train(TrainConfig.from_sources(args.config, **options))
    if result.is_main_process:
        print(f"trained {result.steps} steps ({result.tokens_seen:,} tokens): train loss "
              f"{result.final_train_loss:.4f}, validation NLL {result.final_validation_nll:.4f}; "
              f"model exported to {result.export_dir}")
    return 0


def _add_merge_lora(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge-lora", help="fold a LoRA adapter (RUN/adapter) into its base: a full checkpoint folder")
    p.add_argument("adapter", help="adapter folder (adapter.json + adapter.safetensors), e.g. runs/mine/adapter")
    p.add_argument("--out", required=True, help="the checkpoint folder to write")
    p.add_argument("--base", default=None, help="base checkpoint (default: the one adapter.json names)")
    p.set_defaults(run=_run_merge_lora)


def _run_merge_lora(args: argparse.Namespace) -> int:
    from musicmha.nn.lora import merge_adapter

    print(f"merged model written to {merge_adapter(Path(args.adapter), Path(args.out), args.base)}")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="NLL, perplexity and bits per note of a checkpoint on a token split")
    p.add_argument("--checkpoint", required=True, help="exported model folder (config.json, tokenizer.json...)")
    p.add_argument("--data", required=True, help="prepared token folder")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--mode", default="windows", choices=["windows", "pieces"])
    p.add_argument("--window", type=int, default=None, help="tokens per window (default: max_seq_len)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-pieces", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--device", default="auto",
                   help="cpu, cuda or cuda:N (default auto: the GPU when there is one); fp32 weights either way")
    p.add_argument("--no-copy-head", action="store_true",
                   help="score the model alone, without the checkpoint's copy head")
    p.set_defaults(run=_run_eval)

    p = sub.add_parser("fit-copy-head", help="fit a checkpoint's copy head on a token split and save it beside it")
    p.add_argument("--checkpoint", required=True, help="exported model folder")
    p.add_argument("--data", required=True, help="prepared token folder (never its test split)")
    p.add_argument("--split", default="validation", choices=["train", "validation"])
    p.add_argument("--max-pieces", type=int, default=None)
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default auto)")
    p.set_defaults(run=_run_fit_copy_head)


def _run_eval(args: argparse.Namespace) -> int:
    import json

    from musicmha.evaluation.evaluate import eval_device, evaluate
    from musicmha.nn.copy_head import CopyHead
    from musicmha.nn.model import MusicTransformer
    from musicmha.data.tokenizer import MusicTokenizer

    device = eval_device(args.device)  # checked before the model is read
    model = MusicTransformer.from_pretrained(args.checkpoint, device=device)
    tokenizer = MusicTokenizer.load(args.checkpoint)
    head = None if args.no_copy_head else CopyHead.load(args.checkpoint)
    result = evaluate(model, tokenizer, args.data, split=args.split, mode=args.mode, window=args.window,
                      batch_size=args.batch_size, max_pieces=args.max_pieces, copy_head=head)
    if args.json:
        print(json.dumps({**result.to_dict(), "copy_head": head is not None}, indent=2))
    else:
        print(f"{result.split}: {result.pieces} pieces, {result.tokens:,} tokens, {result.notes:,} notes; "
              f"NLL {result.nll:.4f} nats/token, perplexity {result.perplexity:.2f}, "
              f"{result.bits_per_note:.3f} bits/note ({'with' if head else 'without'} a copy head)")
    return 0


def _run_fit_copy_head(args: argparse.Namespace) -> int:
    from musicmha.evaluation.copy_fit import fit_copy_head
    from musicmha.evaluation.evaluate import eval_device
    from musicmha.nn.copy_head import COPY_HEAD_FILE
    from musicmha.nn.model import MusicTransformer
    from musicmha.data.tokenizer import MusicTokenizer

    device = eval_device(args.device)
    model = MusicTransformer.from_pretrained(args.checkpoint, device=device)
    head = fit_copy_head(model, MusicTokenizer.load(args.checkpoint), args.data, split=args.split,
                         max_pieces=args.max_pieces)
    head.save(args.checkpoint)
    fit = head.fitted_on
    print(f"copy head written to {Path(args.checkpoint) / COPY_HEAD_FILE}: weights {list(head.weights)} for match "
          f"lengths from {list(head.bucket_starts)}; {args.split} NLL {fit['nll_model']:.4f} -> "
          f"{fit['nll_with_head']:.4f} nats/token over {fit['targets']:,} tokens")
    return 0


def _add_render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="render a MIDI file to audio (FluidSynth + SoundFont, else built-in synth)")
    p.add_argument("input", help="MIDI file")
    p.add_argument("output", help="audio file: .wav (or .flac/.mp3 when ffmpeg is installed)")
    p.add_argument("--soundfont", default=None, help="SoundFont (.sf2/.sf3); default: $MUSICMHA_SOUNDFONT, "
                   "then /usr/share/sounds/sf2 and friends, then pretty_midi's TimGM6mb.sf2")
    p.add_argument("--synth", choices=["auto", "fluidsynth", "numpy"], default="auto",
                   help="synthesizer (auto: FluidSynth when installed, else the built-in numpy one)")
    p.add_argument("--max-seconds", type=float, default=300.0, help="render at most this many seconds")
    p.add_argument("--sample-rate", type=int, default=44100, help="samples per second (8000..96000)")
    p.set_defaults(run=_run_render)


def _run_render(args: argparse.Namespace) -> int:
    from musicmha.render.audio import render_audio
    from musicmha.render.wav import check_audio_path, write_audio

    check_audio_path(args.output)  # refuse an unusable output before spending time on rendering
    audio, rate = render_audio(args.input, sample_rate=args.sample_rate, soundfont=args.soundfont,
                               synthesizer=args.synth, max_seconds=args.max_seconds)
    path = write_audio(args.output, audio, rate)
    print(f"{path}: {len(audio) / rate:.1f} s, {rate} Hz, {audio.shape[1]} channels")
    return 0


def _add_sampling_options(p: argparse.ArgumentParser) -> None:
    """What generate and infill share: checkpoint, output, sampling, instruments, audio and roll."""
    p.add_argument("--checkpoint", default=None, help="model folder (default: the shipped checkpoint)")
    p.add_argument("--out", required=True, help="output .mid; several samples become out-1.mid, out-2.mid, ...")
    p.add_argument("--temperature", type=float, default=1.0, help="0: greedy; higher is wilder (default 1)")
    p.add_argument("--top-k", type=int, default=None, help="keep only the k likeliest tokens (0: off, the default)")
    p.add_argument("--top-p", type=float, default=None, help="keep the likeliest tokens holding this much "
                   "probability, in (0, 1] (1: off, the default)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one, printed)")
    p.add_argument("--num-samples", type=int, default=1)
    band = p.add_argument_group("instruments (default: the prompt's own; from nothing: any)")
    band.add_argument("--instruments", default=None, metavar="PROGRAMS",
                      help="General MIDI programs 0..127 the new notes may use, e.g. 0,33")
    band.add_argument("--drums", action=argparse.BooleanOptionalAction, default=None,
                      help="allow or forbid the drum kit (default: when the prompt has drums)")
    band.add_argument("--allow-new-instruments", action="store_true",
                      help="let the model bring in instruments the prompt does not have")
    p.add_argument("--wav", default=None, help="also render audio (.wav, or .flac/.mp3 with ffmpeg)")
    p.add_argument("--png", default=None, help="also draw a piano roll")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--no-copy-head", action="store_true",
                   help="sample from the model alone, without the checkpoint's copy head")


def _add_generate(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--allow-tempo-changes", action="store_true",
                   help="let the model change the tempo (default: the prompt's tempo, or the first one, holds)")
    opening = p.add_argument_group("from nothing (no --prompt)")
    opening.add_argument("--tempo", type=float, default=None, metavar="BPM", help="opening tempo")
    opening.add_argument("--time-signature", default=None, metavar="N/D", help="opening meter, e.g. 3/4")
    _add_sampling_options(p)
    p.set_defaults(run=_run_generate)


def _numbered(path: str, index: int, count: int) -> Path:
    path = Path(path)
    return path if count == 1 else path.with_name(f"{path.stem}-{index}{path.suffix}")


def _sampling(args: argparse.Namespace) -> SamplingOptions:
    """The sampling flags as one SamplingOptions, read exactly as the app reads its fields (checked before the
    model loads)."""
    from musicmha.generation.options import SamplingOptions

    return SamplingOptions.from_inputs(args.temperature, args.top_k, args.top_p, args.seed)


def _checked_instruments(args: argparse.Namespace) -> list[int] | None:
    """--instruments parsed and checked before the model loads, so a typo costs no time."""
    from musicmha.generation.controls import InstrumentRule, parse_programs

    instruments = parse_programs(args.instruments) if args.instruments is not None else None
    if instruments is not None:
        InstrumentRule(frozenset(instruments))
    return instruments


def _run_generate(args: argparse.Namespace) -> int:
    from musicmha.generation.controls import LengthRule, Opening, parse_time_signature
    from musicmha.generation.music_generator import MusicGenerator

    sampling = _sampling(args)
    instruments = _checked_instruments(args)
    time_signature = parse_time_signature(args.time_signature) if args.time_signature is not None else None
    LengthRule(args.max_new_tokens, args.bars, args.seconds, args.allow_early_end)
    Opening(args.tempo, time_signature)
    generator = MusicGenerator.from_pretrained(args.checkpoint, device=args.device, copy_head=not args.no_copy_head)
    results = generator.continue_midi(
        args.prompt, max_new_tokens=args.max_new_tokens, bars=args.bars, seconds=args.seconds,
        sampling=sampling, num_samples=args.num_samples, prompt_tokens=args.prompt_tokens,
        constrained=not args.unconstrained,
        instruments=instruments, drums=args.drums, allow_new_instruments=args.allow_new_instruments,
        allow_early_end=args.allow_early_end, tempo=args.tempo, time_signature=time_signature,
        allow_tempo_changes=args.allow_tempo_changes, allow_empty_bars=args.allow_empty_bars)
    _write_results(args, results)
    return 0


def _add_infill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infill", help="regenerate bars inside a MIDI piece, keeping everything around them")
    p.add_argument("--prompt", required=True, help="the MIDI piece")
    p.add_argument("--bars", required=True, metavar="FIRST-LAST",
                   help="the bars to regenerate, counted from 1 on the piece's own time signatures, e.g. 9-12")
    _add_sampling_options(p)
    p.set_defaults(run=_run_infill)


def _run_infill(args: argparse.Namespace) -> int:
    from musicmha.errors import ConfigError
    from musicmha.generation.music_generator import MusicGenerator

    try:
        first, last = (int(x) for x in args.bars.replace(" ", "").split("-"))
    except ValueError:
        raise ConfigError(f"--bars takes a range of bars like 9-12, got {args.bars!r}") from None
    sampling = _sampling(args)
    instruments = _checked_instruments(args)
    generator = MusicGenerator.from_pretrained(args.checkpoint, device=args.device, copy_head=not args.no_copy_head)
    results = generator.infill(args.prompt, first, last, sampling=sampling, num_samples=args.num_samples,
                               instruments=instruments, drums=args.drums,
                               allow_new_instruments=args.allow_new_instruments)
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


def _add_app(sub: argparse._SubParsersAction) -> None:
    from musicmha.app.server import add_arguments

    p = sub.add_parser("app", help="start the web app (Gradio) on http://127.0.0.1:7860")
    add_arguments(p)
    p.set_defaults(run=_run_app)


def _run_app(args: argparse.Namespace) -> int:
    from musicmha.app import launch

    launch(args)
    return 0


# Subcommands, in the order `musicmha --help` lists them. Later pipelines add theirs here.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_info,
    _add_corpus,
    _add_prepare,
    _add_train,
    _add_merge_lora,
    _add_eval,
    _add_generate,
    _add_infill,
    _add_render,
    _add_app,
]


def build_parser() -> argparse.ArgumentParser:
    from musicmha import __version__

    parser = argparse.ArgumentParser(
        prog="musicmha",
        description="Symbolic music generation with a causal multi-head attention transformer.",
    )
    parser.add_argument("--version", action="version", version=f"musicmha {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except MusicmhaError as error:
        print(f"musicmha {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"musicmha {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
