"""The corpus's `arrangements` collection: converted pieces arranged with Debian's mma (musicmha/data/arrange.py)
in a process pool, listed in the corpus manifest, each in its source piece's split (so no test piece
reaches training through its arrangement). musicmha.data.corpus builds it after converting its sources;
this module only reads and updates the corpus manifest (musicmha.data.manifest), never corpus itself."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from pathlib import Path

from tqdm import tqdm

from musicmha.data.manifest import read_corpus_manifest, replace_collection, write_manifest
from musicmha.data.score_to_midi import PieceResult, one_line
from musicmha.errors import MusicmhaError
from musicmha.data.split import SPLITS, split_score

ARRANGEMENTS = "arrangements"  # the collection's name, and its folder in the corpus
# Collections whose pieces have a melody on top (chorales, folk songs, fiddle tunes) to arrange.
ARRANGEMENT_SOURCES = ("bach", "essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs")


def _arrange_star(args: tuple) -> PieceResult:
    """Arrange one converted piece and write it under the output folder. Runs in a worker."""
    from musicmha.data.arrange import arrange
    from musicmha.data.midi_io import count_notes

    source_id, source_path, out, seed, pickup = args
    result = PieceResult(f"{ARRANGEMENTS}/{source_id}", ARRANGEMENTS)
    try:
        score, plan = arrange(Path(out) / source_path, source_id, seed, pickup)
        rel = f"{ARRANGEMENTS}/{source_path}"
        target = Path(out) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(score.dumps_midi())
        result.path, result.notes = rel, count_notes(score)
        result.extra = {"source": source_id, "groove": plan.groove, "tempo": plan.tempo, "program": plan.program,
                        "pickup": plan.pickup / score.ticks_per_quarter, "pickup_estimated": pickup is None}
    except Exception as error:  # mma failures, unmapped meters, unreadable sources: listed, never fatal
        result.error = one_line(error) if not isinstance(error, MusicmhaError) else str(error)
    return result


def build_arrangements(out: Path, count: int, *, seed: int = 0, workers: int = 0) -> dict:
    """Arrange `count` converted pieces of ARRANGEMENT_SOURCES (the same ones for every seed: those with the
    smallest hash of their id) into `out/arrangements/` in `workers` processes (0: all cores), and put the
    collection into the corpus manifest of `out` in place of an earlier one. Each arrangement takes its
    source's split; `seed` picks each one's groove, tempo and lead instrument."""
    from musicmha.data.arrange import require_mma

    started = time.perf_counter()
    require_mma()
    out = Path(out)
    manifest = read_corpus_manifest(out)
    sources = [p for p in (manifest or {}).get("pieces", []) if p.get("collection") in ARRANGEMENT_SOURCES]
    if not sources:
        raise MusicmhaError(f"no converted {'/'.join(ARRANGEMENT_SOURCES)} pieces in {out}: run "
                            f"`musicmha corpus --out {out}` (or --collections bach,...) first")
    chosen = sorted(sources, key=lambda p: (split_score("arrange:" + p["id"]), p["id"]))[:count]
    target = out / ARRANGEMENTS
    if target.exists():
        shutil.rmtree(target)  # files of an earlier build would otherwise stay, unlisted
    workers = workers or os.cpu_count() or 1
    args = [(p["id"], p["path"], str(out), seed, p.get("pickup")) for p in chosen]
    results: list[PieceResult] = []
    bar = tqdm(total=len(args), desc=ARRANGEMENTS, unit="piece", dynamic_ncols=True)
    with multiprocessing.Pool(workers, maxtasksperchild=200) as pool:
        for result in pool.imap_unordered(_arrange_star, args, chunksize=4):
            results.append(result)
            bar.update(1)
            bar.set_postfix(failed=sum(r.error is not None for r in results))
    bar.close()
    split = {p["id"]: p["split"] for p in chosen}
    ok = sorted((r for r in results if r.path is not None), key=lambda r: r.id)
    pieces = [{"id": r.id, "path": r.path, "collection": ARRANGEMENTS, "notes": r.notes,
               "split": split[r.extra["source"]], **r.extra} for r in ok]
    stats = {"files": len(chosen), "pieces": len(pieces), "notes": sum(p["notes"] for p in pieces),
             "splits": {s: sum(p["split"] == s for p in pieces) for s in SPLITS}, "seed": seed,
             "seconds": round(time.perf_counter() - started, 1),
             "failures": [{"id": r.id, "reason": r.error} for r in sorted(results, key=lambda r: r.id) if r.error]}
    replace_collection(manifest, ARRANGEMENTS, stats, pieces)
    write_manifest(out, manifest)
    return manifest
