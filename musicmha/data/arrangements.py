"""The corpus's `arrangements` collection: converted pieces arranged with Debian's mma (musicmha/data/arrange.py)
in a process pool, listed in the corpus manifest, each in its source piece's split (so no test piece
reaches training through its arrangement). musicmha.data.corpus builds it after converting its sources;
this module only reads and updates the corpus manifest (musicmha.data.manifest), never corpus itself.

Several arrangements are made of one melody (variants 0, 1, ...: each its own groove, texture, instruments,
tempo and key): the jobs are every source's variant 0 in the order of the hash of its id, then every
source's variant 1, and so on, and the first `count` are built. A build keeps what an earlier one made
when the file is there and its manifest entry has the same seed, settings (SETTINGS: the generator's
version and the groove table) and source file (its sha256): only new or changed arrangements reach mma.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
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
GENERATOR_VERSION = 2  # bump when arrange.py or instruments.py would draw or render differently
MAX_VARIANTS = 8
DEFAULT_ARRANGEMENTS = 24000  # about two per usable source melody: >= 20,000 after meter-change failures


def settings_key() -> str:
    """What an arrangement depends on besides its seed and source: the generator version and groove table."""
    from musicmha.data.grooves import TABLE

    return f"v{GENERATOR_VERSION}-" + hashlib.sha256(TABLE.read_bytes()).hexdigest()[:12]


def _arrange_star(args: tuple) -> PieceResult:
    """Arrange one converted piece and write it under the output folder. Runs in a worker."""
    from musicmha.data.arrange import arrange
    from musicmha.data.grooves import track_kind
    from musicmha.data.midi_io import count_notes

    source_id, source_path, out, seed, pickup, variant, extra = args
    key = source_id if variant == 0 else f"{source_id}~{variant}"
    result = PieceResult(f"{ARRANGEMENTS}/{key}", ARRANGEMENTS)
    try:
        score, plan = arrange(Path(out) / source_path, key, seed, pickup)
        rel = arrangement_path(source_path, variant)
        target = Path(out) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(score.dumps_midi())
        result.path, result.notes = rel, count_notes(score)
        comping = {t.program for t in score.tracks[1:] if track_kind(t.name, t.is_drum) == "comping"}
        result.extra = {**extra, "groove": plan.groove, "family": plan.family,
                        "texture": plan.instruments.texture, "meter": f"{plan.meter[0]}/{plan.meter[1]}",
                        "tempo": plan.tempo, "program": plan.program, "bass": plan.instruments.bass,
                        "comping": sorted(comping),
                        "drums": any(t.is_drum for t in score.tracks), "key_shift": plan.key_shift,
                        "melody_shift": plan.melody_shift, "pickup": plan.pickup / score.ticks_per_quarter,
                        "pickup_estimated": pickup is None}
    except Exception as error:  # mma failures, unmapped meters, unreadable sources: listed, never fatal
        result.error = one_line(error) if not isinstance(error, MusicmhaError) else str(error)
    return result


def arrangement_path(source_path: str, variant: int) -> str:
    stem = source_path[:-4] if source_path.endswith(".mid") else source_path
    return f"{ARRANGEMENTS}/{stem}{'' if variant == 0 else f'~{variant}'}.mid"


def choose_jobs(sources: list[dict], count: int) -> list[tuple[dict, int]]:
    """(source, variant) of the first `count` jobs: variant 0 of every source by the hash of its id, then 1, ..."""
    variants = min(MAX_VARIANTS, math.ceil(count / len(sources))) if sources else 0
    jobs = []
    for v in range(variants):
        salt = "arrange:" if v == 0 else f"arrange{v}:"
        jobs += [(p, v) for p in sorted(sources, key=lambda p: (split_score(salt + p["id"]), p["id"]))]
    return jobs[:count]


def build_arrangements(out: Path, count: int, *, seed: int = 0, workers: int = 0) -> dict:
    """Arrange `count` jobs (source pieces of ARRANGEMENT_SOURCES, several variants each when `count` is more
    than the sources; the same jobs for every seed) into `out/arrangements/` in `workers` processes (0: all
    cores), reusing what an earlier build made, and put the collection into the corpus manifest of `out`
    in place of an earlier one. Each arrangement takes its source's split; `seed` draws the rest."""
    from musicmha.data.arrange import require_mma

    started = time.perf_counter()
    require_mma()
    out = Path(out)
    manifest = read_corpus_manifest(out)
    sources = [p for p in (manifest or {}).get("pieces", []) if p.get("collection") in ARRANGEMENT_SOURCES]
    if not sources:
        raise MusicmhaError(f"no converted {'/'.join(ARRANGEMENT_SOURCES)} pieces in {out}: run "
                            f"`musicmha corpus --out {out}` (or --collections bach,...) first")
    jobs = choose_jobs(sources, count)
    settings = settings_key()
    old = {p["id"]: p for p in manifest["pieces"] if p.get("collection") == ARRANGEMENTS}
    digests: dict[str, str] = {}
    reused, args = [], []
    for p, v in jobs:
        if p["id"] not in digests:
            digests[p["id"]] = hashlib.sha256((out / p["path"]).read_bytes()).hexdigest()[:16]
        extra = {"source": p["id"], "variant": v, "seed": seed, "settings": settings, "source_sha": digests[p["id"]]}
        aid = f"{ARRANGEMENTS}/{p['id']}" + ("" if v == 0 else f"~{v}")
        before = old.get(aid)
        if before and all(before.get(k) == x for k, x in extra.items()) and (out / before["path"]).is_file():
            reused.append(before)
        else:
            args.append((p["id"], p["path"], str(out), seed, p.get("pickup"), v, extra))
    workers = workers or os.cpu_count() or 1
    results: list[PieceResult] = []
    bar = tqdm(total=len(args), desc=ARRANGEMENTS, unit="piece", dynamic_ncols=True)
    if args:
        with multiprocessing.Pool(workers, maxtasksperchild=200) as pool:
            for result in pool.imap_unordered(_arrange_star, args, chunksize=4):
                results.append(result)
                bar.update(1)
                bar.set_postfix(failed=sum(r.error is not None for r in results))
    bar.close()
    split = {p["id"]: p["split"] for p, _ in jobs}
    pieces = reused + [{"id": r.id, "path": r.path, "collection": ARRANGEMENTS, "notes": r.notes,
                        "split": split[r.extra["source"]], **r.extra} for r in results if r.path is not None]
    pieces.sort(key=lambda p: p["id"])
    keep = {p["path"] for p in pieces}
    for stale in sorted((out / ARRANGEMENTS).rglob("*.mid")) if (out / ARRANGEMENTS).is_dir() else []:
        if stale.relative_to(out).as_posix() not in keep:
            stale.unlink()  # files of an earlier build would otherwise stay, unlisted
    stats = {"files": len(jobs), "pieces": len(pieces), "notes": sum(p["notes"] for p in pieces),
             "splits": {s: sum(p["split"] == s for p in pieces) for s in SPLITS}, "seed": seed,
             "settings": settings, "rendered": len(args), "reused": len(reused),
             "seconds": round(time.perf_counter() - started, 1),
             "failures": [{"id": r.id, "reason": r.error} for r in sorted(results, key=lambda r: r.id) if r.error]}
    replace_collection(manifest, ARRANGEMENTS, stats, pieces)
    write_manifest(out, manifest)
    return manifest
