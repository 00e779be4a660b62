"""`musicmha prepare`: tokenize a folder of MIDI files into train/validation/test token shards.

Files are found recursively, assigned a split (the corpus manifest's when the folder has one, else the hash
of the relative path), tokenized in worker processes and appended to the shards in file order as results
return: memory stays flat however large the corpus, and the shards are identical for any worker count.
Bad files are skipped with their reason. Never imports torch (training imports this module's outputs only).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from musicmha.data import augment
from musicmha.data.manifest import TOKENS_KIND, read_corpus_splits, read_corpus_styles, write_manifest
from musicmha.errors import ConfigError, MidiError, MusicmhaError
from musicmha.data.midi_io import MAX_BYTES, load_midi
from musicmha.data.shards import ShardWriter
from musicmha.data.split import SPLITS, path_key, read_recorded_splits, record_splits, split_of
from musicmha.data.split import assign_splits as assign_splits_of
from musicmha.data.tokenizer import MAX_VOCAB, MusicTokenizer, TokenizerConfig
from musicmha.files import SPLITS_FILE, TOKENIZER_FILE

log = logging.getLogger(__name__)
MIDI_SUFFIXES = (".mid", ".midi")
SMALL_CORPUS = 50  # fewer pieces than this: from scratch gives noise; fine-tuning is the way


@dataclass
class PrepareConfig:
    input: Path
    out: Path
    workers: int = 0  # 0: all cores
    vocab_size: int | None = None  # train BPE up to this size on the train split
    tokenizer: Path | None = None  # reuse an existing tokenizer.json (e.g. to fine-tune a model)
    tokenizer_config: TokenizerConfig = field(default_factory=TokenizerConfig)
    augment: augment.AugmentConfig = field(default_factory=augment.AugmentConfig)
    seed: int = 0
    max_bytes: int = MAX_BYTES

    def __post_init__(self) -> None:
        self.input, self.out = Path(self.input), Path(self.out)
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0 (0 means all cores), got {self.workers}")
        if self.vocab_size is not None and not 0 < self.vocab_size <= MAX_VOCAB:
            raise ConfigError(f"vocab size must be in 1..{MAX_VOCAB} (tokens are stored as uint16)")
        if self.vocab_size is not None and self.tokenizer is not None:
            raise ConfigError("give either --vocab-size (train a new BPE tokenizer) or --tokenizer, not both")

    @classmethod
    def from_cli(cls, args) -> PrepareConfig:
        def numbers(text: str, kind):
            try:
                return tuple(kind(x) for x in text.split(",") if x.strip())
            except ValueError:
                raise ConfigError(f"expected comma-separated numbers, got {text!r}") from None

        aug = augment.AugmentConfig(transpose=numbers(args.transpose, int), velocity=numbers(args.velocity_shift, int),
                                    tempo=numbers(args.tempo_scale, float), per_piece=args.augment_per_piece)
        return cls(input=args.input, out=args.out, workers=args.workers, vocab_size=args.vocab_size,
                   tokenizer=Path(args.tokenizer) if args.tokenizer else None, augment=aug, seed=args.seed)


def find_midi_files(folder: Path) -> list[Path]:
    """Every .mid/.midi file under `folder` (any letter case), sorted by relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MusicmhaError(f"input folder not found: {folder}")
    files = [p for p in folder.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file()]
    if not files:
        raise MusicmhaError(f"no .mid/.midi files in {folder}")
    return sorted(files, key=lambda p: path_key(p, folder))


def assign_splits(folder: Path, files: list[Path]) -> tuple[dict[str, str], str]:
    """Relative path -> split, and where the split came from: a corpus folder's manifest, else the record
    of earlier runs in the folder (SPLITS_FILE) and the hash rule for new files, recorded in turn."""
    keys = [path_key(f, folder) for f in files]
    from_manifest = read_corpus_splits(folder) or {}
    if from_manifest:
        return {k: from_manifest.get(k) or split_of(k) for k in keys}, "corpus manifest (hash of piece id)"
    recorded = read_recorded_splits(folder)
    splits, moved = assign_splits_of(keys, recorded)
    if moved:
        log.info("small corpus: %s moved from train so that validation and test are not empty", ", ".join(moved))
    record_splits(folder, splits, recorded)
    source = f"hash of relative path, recorded in {SPLITS_FILE}" + (f" ({len(moved)} moved: small corpus)" if moved else "")
    return splits, source


# Worker state: one tokenizer per process, loaded once by the pool initializer.
_worker: dict = {}


def _init_worker(tokenizer_json: str, aug: augment.AugmentConfig, seed: int, max_bytes: int) -> None:
    _worker.update(tok=MusicTokenizer.load(tokenizer_json), aug=aug, seed=seed, max_bytes=max_bytes)


def _tokenize(task: tuple[str, str, str]) -> tuple[str, str, list[tuple[str, np.ndarray]] | str]:
    """(path, rel, split) -> (rel, split, [(variant name, BOS+ids+EOS), ...] or the reason it was skipped)."""
    path, rel, split = task
    tok: MusicTokenizer = _worker["tok"]
    try:
        score = load_midi(path, max_bytes=_worker["max_bytes"])
        variants = [augment.Variant()]
        if split == "train" and _worker["aug"].enabled:
            pitch_range = tok.pitch_range
            variants += [v for v in _worker["aug"].variants(rel, _worker["seed"]) if augment.fits(score, v, pitch_range)]
        out = []
        for variant in variants:
            ids = tok.encode(augment.apply(score, variant) if variant.name else score)
            if not ids:
                if not variant.name:
                    return rel, split, "no tokens (every note is outside the tokenizer's pitch range?)"
                continue
            out.append((variant.name, np.array([tok.bos_id, *ids, tok.eos_id], dtype=np.uint16)))
        return rel, split, out
    except MidiError as error:
        return rel, split, str(error)
    except Exception as error:  # a tokenizer bug on one odd file must not stop a 100k-file run
        return rel, split, f"tokenization failed: {type(error).__name__}: {str(error)[:200]}"


def _build_tokenizer(cfg: PrepareConfig, files: list[Path], splits: dict[str, str]) -> MusicTokenizer:
    if cfg.tokenizer is not None:
        return MusicTokenizer.load(cfg.tokenizer)
    tok = MusicTokenizer.from_config(cfg.tokenizer_config)
    if cfg.vocab_size is not None:
        train = [f for f in files if splits[path_key(f, cfg.input)] == "train"]
        good = []
        for f in tqdm(train, desc="checking BPE files", unit="file", dynamic_ncols=True):
            try:
                load_midi(f, max_bytes=cfg.max_bytes)
                good.append(f)
            except MidiError:
                pass  # reported by the main pass
        tok.train_bpe(good, cfg.vocab_size)
    return tok


def prepare(cfg: PrepareConfig) -> dict:
    """Tokenize `cfg.input` into `cfg.out`; returns the manifest (also written to `cfg.out/manifest.json`)."""
    started = time.perf_counter()
    files = find_midi_files(cfg.input)
    splits, split_source = assign_splits(cfg.input, files)
    tok = _build_tokenizer(cfg, files, splits)
    styles = read_corpus_styles(cfg.input) if tok.condition_tokens is not None else {}
    if tok.vocab_size > MAX_VOCAB:
        raise ConfigError(f"vocabulary of {tok.vocab_size} tokens does not fit uint16 shards")
    cfg.out.mkdir(parents=True, exist_ok=True)
    tok_file = tok.save(cfg.out)
    workers = min(cfg.workers or os.cpu_count() or 1, len(files))
    tasks = [(str(f), path_key(f, cfg.input), splits[path_key(f, cfg.input)]) for f in files]
    writer = ShardWriter(cfg.out)
    skipped = []
    bar = tqdm(total=len(tasks), desc="prepare", unit="file", dynamic_ncols=True)
    try:  # the bar and the shard files are closed on errors too
        with multiprocessing.Pool(workers, initializer=_init_worker,
                                  initargs=(str(tok_file), cfg.augment, cfg.seed, cfg.max_bytes)) as pool:
            # imap (ordered), not imap_unordered: shards come out identical whatever the worker count.
            for rel, split, result in pool.imap(_tokenize, tasks, chunksize=8):
                if isinstance(result, str):
                    skipped.append({"path": rel, "reason": result})
                else:
                    for aug_name, ids in result:
                        writer.add(split, rel, aug_name, ids, styles.get(rel))
                bar.update(1)
                bar.set_postfix(tokens=sum(writer.tokens.values()), skipped=len(skipped), refresh=False)
        bar.close()  # before any error message, so the message gets a line of its own
        usable = sum(writer.pieces.values())
        if usable < 2:
            raise MusicmhaError(f"only {usable} usable MIDI file(s) in {cfg.input} ({len(skipped)} skipped); "
                                f"need at least 2 (one for training, one for validation)")
        moves = writer.ensure_train_and_validation()
        if usable < SMALL_CORPUS:
            log.warning("a very small corpus (%d pieces): train from a trained model (`musicmha train --init-from "
                        "CHECKPOINT`, after preparing with `--tokenizer CHECKPOINT`) rather than from scratch", usable)
    finally:
        bar.close()
        writer.close()
    manifest = {
        "kind": TOKENS_KIND, "version": 1, "dtype": "uint16", "input": str(cfg.input),
        "vocab_size": tok.vocab_size, "bos_id": tok.bos_id, "eos_id": tok.eos_id, "pad_id": tok.pad_id,
        "bpe": tok.is_bpe, "tokenizer": TOKENIZER_FILE,
        "tokenizer_config": None if cfg.tokenizer else cfg.tokenizer_config.to_dict(),
        "split_source": split_source, "moved_for_tiny_corpus": moves,
        "augmentation": {"transpose": cfg.augment.transpose, "velocity": cfg.augment.velocity,
                         "tempo": cfg.augment.tempo, "per_piece": cfg.augment.per_piece, "seed": cfg.seed,
                         "applies_to": "train"},
        "styles": _style_counts(styles, files, cfg.input),
        "files_found": len(files), "files_used": len(files) - len(skipped),
        "splits": {s: {"pieces": writer.pieces[s], "sequences": writer.sequences[s], "tokens": writer.tokens[s]}
                   for s in SPLITS},
        "tokens_total": sum(writer.tokens.values()),
        "seconds": round(time.perf_counter() - started, 2), "workers": workers,
        "skipped": skipped,
    }
    write_manifest(cfg.out, manifest)
    return manifest


def _style_counts(styles: dict[str, str], files: list[Path], folder: Path) -> dict[str, int]:
    """Files per style (the pieces that open with a style token in training)."""
    counts: dict[str, int] = {}
    for f in files:
        style = styles.get(path_key(f, folder))
        if style:
            counts[style] = counts.get(style, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def summary(manifest: dict) -> list[str]:
    lines = [f"{s}: {v['pieces']} pieces, {v['sequences']} sequences, {v['tokens']:,} tokens"
             for s, v in manifest["splits"].items()]
    lines.append(f"{manifest['files_used']} of {manifest['files_found']} files used, vocabulary "
                 f"{manifest['vocab_size']}, {manifest['seconds']} s; splits: {manifest['split_source']}")
    if manifest["files_used"] < SMALL_CORPUS:
        lines.append(f"warning: only {manifest['files_used']} pieces; fine-tune a trained model on them "
                     "(musicmha train --init-from CHECKPOINT) rather than training from scratch")
    lines += [f"skipped {s['path']}: {s['reason']}" for s in manifest["skipped"][:20]]
    if len(manifest["skipped"]) > 20:
        lines.append(f"... and {len(manifest['skipped']) - 20} more skipped (see manifest.json)")
    return lines
