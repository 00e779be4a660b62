"""The built-in corpus: music21's bundled scores converted to MIDI (`musicmha corpus --out data/corpus`).

music21 ships ~3,000 files (MusicXML, Humdrum, ABC) holding ~13,000 pieces; a multi-tune ABC file parses
to an Opus whose `.scores` are separate pieces. Each source file is one task in a process pool; pieces that
fail or run past the time limit are skipped and listed in `manifest.json` with the reason. Every piece gets
a stable id ("bach/bwv66.6.mxl", "essenFolksong/han1.abc#12") whose hash fixes its split.

The `arrangements` collection is made from converted pieces rather than music21 files: a melody over
drums, bass and comping from Debian's `mma` (musicmha/data/arrange.py), about two per source melody by
default (musicmha/data/arrangements.py; a second build re-renders only what changed). Each arrangement keeps
its source's split, so no test piece reaches training through its arrangement.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from musicmha.errors import ConfigError, MusicmhaError
from musicmha.data.arrangements import ARRANGEMENTS, DEFAULT_ARRANGEMENTS, build_arrangements
from musicmha.data.manifest import CORPUS_KIND, read_corpus_manifest, replace_collection, write_manifest
from musicmha.data.score_to_midi import PieceResult, convert_file, corpus_root
from musicmha.data.split import SPLITS, split_of

log = logging.getLogger(__name__)

# Roman-numeral analyses (.rntxt) are harmonic annotations of other files in the corpus, not music.
SOURCE_EXTENSIONS = (".mxl", ".xml", ".musicxml", ".krn", ".abc")


@dataclass
class CorpusConfig:
    out: Path
    collections: list[str] | None = None  # None: every collection in music21's corpus
    workers: int = 0  # 0: all cores
    timeout: float = 60.0  # CPU seconds for parsing one file, and again for converting each piece
    limit: int | None = None  # at most this many files per collection and pieces per file (quick tests)
    arrangements: int = DEFAULT_ARRANGEMENTS  # arrangements to make (several per source melody past ~12,000)
    seed: int = 0  # draws each arrangement's groove, texture, instruments, tempo and key

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0 (0 means all cores), got {self.workers}")
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be positive, got {self.timeout}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit}")
        if self.arrangements < 0:
            raise ConfigError(f"arrangements must be >= 0, got {self.arrangements}")
        if self.collections is not None:
            self.collections = [c.strip() for c in self.collections if c.strip()]
            if not self.collections:
                raise ConfigError("collections is empty")


def available_collections() -> dict[str, list[str]]:
    """Collection name (top folder of music21's corpus) -> sorted source files relative to the corpus root."""
    from music21 import corpus

    root = corpus_root()
    found: dict[str, list[str]] = {}
    for path in corpus.corpora.CoreCorpus().getPaths():
        rel = Path(path).relative_to(root)
        if rel.suffix.lower() in SOURCE_EXTENSIONS and len(rel.parts) > 1:
            found.setdefault(rel.parts[0], []).append(rel.as_posix())
    return {name: _one_format_per_piece(files) for name, files in sorted(found.items())}


def _one_format_per_piece(files: list[str]) -> list[str]:
    """Some pieces ship in two formats (beethoven/opus18no1/movement1.krn and .mxl): keep one, so a piece
    is never in the corpus twice (possibly in two splits) and MIDI names never collide."""
    best: dict[str, str] = {}
    for rel in files:
        stem, ext = rel.rsplit(".", 1)
        rank = SOURCE_EXTENSIONS.index("." + ext.lower())
        if stem not in best or rank < SOURCE_EXTENSIONS.index("." + best[stem].rsplit(".", 1)[1].lower()):
            best[stem] = rel
    return sorted(best.values())


def _convert_star(args: tuple) -> list[PieceResult]:
    return convert_file(*args)


def select_files(cfg: CorpusConfig) -> dict[str, list[str]]:
    available = available_collections()
    names = cfg.collections if cfg.collections is not None else list(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError(f"unknown collection(s) {', '.join(unknown)}; available: {', '.join(available)}")
    return {n: available[n][:cfg.limit] if cfg.limit else available[n] for n in names}


def build_corpus(cfg: CorpusConfig) -> dict:
    """Convert the selected collections, then (when selected, or when all are) arrange pieces of the
    converted ones; writes `cfg.out/manifest.json` and returns the manifest."""
    if cfg.collections is None:
        manifest = _convert(cfg)
        from musicmha.data.arrange import require_mma
        try:
            require_mma()
        except MusicmhaError as error:  # the conversion alone is still a corpus: no error after an hour's work
            log.warning("no arrangements: %s", error)
            return manifest
        return _arrange(cfg)
    music21_collections = [c for c in cfg.collections if c != ARRANGEMENTS]
    manifest = _convert(dataclasses.replace(cfg, collections=music21_collections)) if music21_collections else None
    return _arrange(cfg) if ARRANGEMENTS in cfg.collections else manifest


def _arrange(cfg: CorpusConfig) -> dict:
    return build_arrangements(cfg.out, cfg.arrangements, seed=cfg.seed, workers=cfg.workers)


def _convert(cfg: CorpusConfig) -> dict:
    started = time.perf_counter()
    files = select_files(cfg)
    tasks = [rel for name in files for rel in files[name]]
    if not tasks:
        raise MusicmhaError("no source files selected")
    root = corpus_root()
    reused = _reusable(cfg, tasks)
    tasks = [rel for rel in tasks if rel not in reused]
    # Biggest files first (multi-tune ABC files take seconds): the pool then ends with short tasks and
    # both cores stay busy to the end.
    tasks.sort(key=lambda rel: -(root / rel).stat().st_size)
    cfg.out.mkdir(parents=True, exist_ok=True)
    workers = cfg.workers or os.cpu_count() or 1
    args = [(rel, str(cfg.out), cfg.timeout, cfg.limit) for rel in tasks]
    results: list[PieceResult] = [r for rel in sorted(reused) for r in reused[rel]]
    bar = tqdm(total=len(tasks), desc="corpus", unit="file", dynamic_ncols=True)
    # maxtasksperchild: music21 keeps caches that grow with every parsed file.
    with multiprocessing.Pool(workers, maxtasksperchild=50) as pool:
        for batch in pool.imap_unordered(_convert_star, args):
            results.extend(batch)
            bar.update(1)
            bar.set_postfix(pieces=sum(r.path is not None for r in results),
                            failed=sum(r.error is not None for r in results))
    bar.close()
    if reused:
        log.info("reused the conversion of %d of %d files", len(reused), len(reused) + len(tasks))
    manifest = _manifest(cfg, files, results, time.perf_counter() - started)
    old = read_corpus_manifest(cfg.out)
    if old and ARRANGEMENTS in old.get("collections", {}) and ARRANGEMENTS not in manifest["collections"]:
        # Keep the arrangements on disk listed with their splits: unlisted, `prepare` would split them
        # by the hash of their own path, and a test piece's arrangement could land in training.
        kept = [p for p in old["pieces"] if p.get("collection") == ARRANGEMENTS and (cfg.out / p["path"]).is_file()]
        replace_collection(manifest, ARRANGEMENTS, old["collections"][ARRANGEMENTS], kept)
    write_manifest(cfg.out, manifest)
    return manifest


def _convert_settings(cfg: CorpusConfig) -> dict:
    import music21

    return {"music21": music21.__version__, "timeout": cfg.timeout, "limit": cfg.limit}


def _reusable(cfg: CorpusConfig, tasks: list[str]) -> dict[str, list[PieceResult]]:
    """Source file -> its results in the corpus manifest already in `cfg.out`, for the files an earlier build
    converted with the same music21 version, time limit and piece limit and whose MIDI files are all there:
    a second build converts only what is new."""
    old = read_corpus_manifest(cfg.out)
    if not old or old.get("convert_settings") != _convert_settings(cfg):
        return {}
    found: dict[str, list[PieceResult]] = {}
    for p in old["pieces"]:
        if p["collection"] != ARRANGEMENTS:
            found.setdefault(p["id"].split("#")[0], []).append(PieceResult(
                p["id"], p["collection"], p["path"], p["notes"], note=p.get("note"), pickup=p.get("pickup")))
    for name, stats in old["collections"].items():
        for f in stats["failures"] if name != ARRANGEMENTS else []:
            found.setdefault(f["id"].split("#")[0], []).append(PieceResult(f["id"], name, error=f["reason"]))
    wanted = set(tasks)
    return {rel: results for rel, results in found.items() if rel in wanted
            and all(r.path is None or (cfg.out / r.path).is_file() for r in results)}


def _manifest(cfg: CorpusConfig, files: dict[str, list[str]], results: list[PieceResult], seconds: float) -> dict:
    import music21

    results.sort(key=lambda r: r.id)
    collections = {}
    for name, sources in files.items():
        mine = [r for r in results if r.collection == name]
        ok = [r for r in mine if r.path is not None]
        collections[name] = {
            "files": len(sources), "pieces": len(ok), "notes": sum(r.notes for r in ok),
            "splits": {s: sum(split_of(r.id) == s for r in ok) for s in SPLITS},
            "failures": [{"id": r.id, "reason": r.error} for r in mine if r.error is not None],
        }
    pieces = [{"id": r.id, "path": r.path, "collection": r.collection, "notes": r.notes, "split": split_of(r.id),
               **({"note": r.note} if r.note else {}), **({"pickup": r.pickup} if r.pickup is not None else {})}
              for r in results if r.path is not None]
    return {
        "kind": CORPUS_KIND, "version": 1, "music21": music21.__version__, "convert_settings": _convert_settings(cfg),
        "split_rule": "sha256(piece id) -> train < 0.90 <= validation < 0.95 <= test",
        "pieces_total": len(pieces), "notes_total": sum(p["notes"] for p in pieces),
        "failures_total": sum(len(c["failures"]) for c in collections.values()),
        "repeats_not_expanded": sum(r.note is not None for r in results if r.path is not None),
        "seconds": round(seconds, 1), "workers": cfg.workers or os.cpu_count() or 1,
        "collections": collections, "pieces": pieces,
    }


def collections_arg(text: str | None) -> list[str] | None:
    return None if text in (None, "", "all") else text.split(",")


def summary(manifest: dict) -> Sequence[str]:
    lines = [f"{name}: {c['pieces']} pieces, {c['notes']} notes, {len(c['failures'])} failed"
             for name, c in manifest["collections"].items()]
    lines.append(f"total: {manifest['pieces_total']} pieces, {manifest['notes_total']} notes, "
                 f"{manifest['failures_total']} failed, {manifest['seconds']} s")
    return lines
