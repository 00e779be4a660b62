"""`musicmha info | corpus | prepare | render`: the subcommands that read or make files, not models."""

from __future__ import annotations

import argparse


def add_info(sub: argparse._SubParsersAction) -> None:
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


def add_corpus(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("corpus", help="convert music21's bundled scores (Bach, Palestrina, folk tunes, ...) to MIDI")
    p.add_argument("--out", required=True, help="output folder, e.g. data/corpus (manifest.json is written there)")
    p.add_argument("--collections", default=None,
                   help="comma-separated collections, e.g. bach,palestrina (default: all, then arrangements); "
                        "'arrangements' arranges already converted pieces with mma (drums, bass, comping)")
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: all cores)")
    p.add_argument("--timeout", type=float, default=60.0, help="CPU seconds allowed per file parse and per piece")
    p.add_argument("--limit", type=int, default=None,
                   help="at most N files per collection and N pieces per file (quick tests)")
    p.add_argument("--arrangements", type=int, default=None,
                   help="how many arrangements to make, several per source melody past the ~12,000 sources "
                        "(default 24000; needs Debian's mma: apt-get install mma); a rebuild reuses the files")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for each arrangement's groove, texture, instruments, tempo and key")
    p.add_argument("--report", action="store_true",
                   help="print the coverage of the corpus in --out (programs, drums, meters, tempi, keys, "
                        "grooves) instead of building; see benchmarks/corpus_coverage.py for tokens")
    p.add_argument("--list", action="store_true", help="list the collections and their file counts, then exit")
    p.set_defaults(run=_run_corpus)


def _run_corpus(args: argparse.Namespace) -> int:
    from musicmha.data.corpus import CorpusConfig, available_collections, build_corpus, collections_arg, summary

    if args.list:
        for name, files in available_collections().items():
            print(f"{name}: {len(files)} files")
        return 0
    if args.report:
        from musicmha.data.coverage import corpus_coverage, format_coverage

        print(format_coverage({args.out: corpus_coverage(args.out)}))
        return 0
    extra = {} if args.arrangements is None else {"arrangements": args.arrangements}
    cfg = CorpusConfig(out=args.out, collections=collections_arg(args.collections), workers=args.workers,
                       timeout=args.timeout, limit=args.limit, seed=args.seed, **extra)
    for line in summary(build_corpus(cfg)):
        print(line)
    return 0


def add_prepare(sub: argparse._SubParsersAction) -> None:
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



def add_render(sub: argparse._SubParsersAction) -> None:
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
