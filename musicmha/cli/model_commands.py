"""`musicmha train | merge-lora | eval | fit-copy-head | app`: the subcommands that make, score or serve a model.

Training options come from TrainConfig's fields (one --flag per field, help from the field's metadata), so
the dataclass stays the one owner of every option's default and meaning.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


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


def add_train(sub: argparse._SubParsersAction) -> None:
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


def add_merge_lora(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge-lora", help="fold a LoRA adapter (RUN/adapter) into its base: a full checkpoint folder")
    p.add_argument("adapter", help="adapter folder (adapter.json + adapter.safetensors), e.g. runs/mine/adapter")
    p.add_argument("--out", required=True, help="the checkpoint folder to write")
    p.add_argument("--base", default=None, help="base checkpoint (default: the one adapter.json names)")
    p.set_defaults(run=_run_merge_lora)


def _run_merge_lora(args: argparse.Namespace) -> int:
    from musicmha.training.export import merge_adapter

    print(f"merged model written to {merge_adapter(Path(args.adapter), Path(args.out), args.base)}")
    return 0


def add_eval(sub: argparse._SubParsersAction) -> None:
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


def add_fit_copy_head(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit-copy-head", help="fit a checkpoint's copy head on a token split and save it beside it")
    p.add_argument("--checkpoint", required=True, help="exported model folder")
    p.add_argument("--data", required=True, help="prepared token folder (never its test split)")
    p.add_argument("--split", default="validation", choices=["train", "validation"])
    p.add_argument("--max-pieces", type=int, default=None)
    p.add_argument("--sampling-boost", type=float, default=1.0,
                   help="generation multiplies each weight's odds by this (calibrate with benchmarks/sample_stats.py "
                        "--split validation --copy-boost B: sampled continuations should repeat bars as often as "
                        "the true ones; the shipped model uses 3)")
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default auto)")
    p.set_defaults(run=_run_fit_copy_head)


def _run_eval(args: argparse.Namespace) -> int:
    import json

    from musicmha.evaluation.evaluate import eval_device, evaluate
    from musicmha.generation.copy_head import load_copy_head
    from musicmha.nn.model import MusicTransformer
    from musicmha.data.tokenizer import MusicTokenizer

    device = eval_device(args.device)  # checked before the model is read
    model = MusicTransformer.from_pretrained(args.checkpoint, device=device)
    tokenizer = MusicTokenizer.load(args.checkpoint)
    head = None if args.no_copy_head else load_copy_head(args.checkpoint, tokenizer)
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
    from musicmha.generation.copy_head import checked_sampling_boost, save_copy_head
    from musicmha.nn.model import MusicTransformer
    from musicmha.data.tokenizer import MusicTokenizer

    checked_sampling_boost(args.sampling_boost)  # a bad boost fails before the model is read
    device = eval_device(args.device)
    model = MusicTransformer.from_pretrained(args.checkpoint, device=device)
    head = fit_copy_head(model, MusicTokenizer.load(args.checkpoint), args.data, split=args.split,
                         max_pieces=args.max_pieces, sampling_boost=args.sampling_boost)
    written = save_copy_head(args.checkpoint, head)
    fit = head.fitted_on
    print(f"copy head written to {written}: weights {list(head.weights)} for match "
          f"lengths from {list(head.bucket_starts)}; {args.split} NLL {fit['nll_model']:.4f} -> "
          f"{fit['nll_with_head']:.4f} nats/token over {fit['targets']:,} tokens; sampling boost {head.sampling_boost:g}")
    return 0



def add_app(sub: argparse._SubParsersAction) -> None:
    from musicmha.app.server import add_arguments

    p = sub.add_parser("app", help="start the web app (Gradio) on http://127.0.0.1:7860")
    add_arguments(p)
    p.set_defaults(run=_run_app)


def _run_app(args: argparse.Namespace) -> int:
    from musicmha.app import launch

    launch(args)
    return 0
