"""What a corpus folder covers: program families, drums, meters, tempi, keys, grooves, textures and tokens.

`musicmha corpus --out DIR --report` prints it for one corpus; benchmarks/corpus_coverage.py compares
folders or collections side by side (e.g. today's arrangements against the new ones) and can count tokens.
Everything but the groove families and textures (which only the manifest knows; an older manifest's groove
names are looked up in the groove table) is read from the MIDI files, so a folder built by an older version
is measured the same way. An arrangement's lead is its first pitched track.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from musicmha.data.arrange import NAMES, estimate_key
from musicmha.data.grooves import load_grooves
from musicmha.data.instruments import program_family
from musicmha.data.manifest import read_corpus_manifest
from musicmha.data.midi_io import load_midi
from musicmha.data.split import split_score

TEMPO_BINS = (70, 90, 110, 130, 150, 180)  # quarter notes per minute: <70, 70-89, ..., >=180


def tempo_bin(qpm: float) -> str:
    edges = [0, *TEMPO_BINS, 10**6]
    i = next(i for i in range(len(TEMPO_BINS) + 1) if qpm < edges[i + 1])
    return f"<{TEMPO_BINS[0]}" if i == 0 else f">={TEMPO_BINS[-1]}" if i == len(TEMPO_BINS) else \
        f"{edges[i]}-{edges[i + 1] - 1}"


def corpus_coverage(folder: str | Path, collections: set[str] | None = None, exclude: set[str] = frozenset(),
                    sample: int | None = None, tokenizer=None) -> dict:
    """Counters over the pieces of a corpus folder's manifest (those of `collections` when given, none of
    `exclude`; the `sample` with the smallest hash of their id when given): pieces, notes, tracks per program
    family, distinct programs, pieces with drums, meters, tempo bins, estimated keys (tonic), groove
    families, textures, and tokens per piece when a MusicTokenizer is given."""
    folder = Path(folder)
    manifest = read_corpus_manifest(folder)
    if manifest is None:
        raise FileNotFoundError(f"{folder} has no corpus manifest (run `musicmha corpus --out {folder}`)")
    pieces = [p for p in manifest["pieces"] if (collections is None or p["collection"] in collections)
              and p["collection"] not in exclude]
    if sample is not None:
        pieces = sorted(pieces, key=lambda p: split_score("coverage:" + p["id"]))[:sample]
    cov = {k: Counter() for k in ("families", "leads", "programs", "meters", "tempi", "keys", "grooves", "textures",
                                      "groove_names")}
    table = load_grooves()
    cov.update(pieces=len(pieces), notes=0, drums=0, tokens=[] if tokenizer is not None else None)
    for p in pieces:
        score = load_midi(folder / p["path"])
        cov["notes"] += p["notes"]
        pitched = [t for t in score.tracks if not t.is_drum and len(t.notes)]
        cov["drums"] += any(t.is_drum and len(t.notes) for t in score.tracks)
        for t in pitched:
            cov["families"][program_family(t.program)] += 1
            cov["programs"][t.program] += 1
        if pitched:  # an arrangement's melody is its first track
            cov["leads"][program_family(pitched[0].program)] += 1
        ts = score.time_signatures[0] if len(score.time_signatures) else None
        cov["meters"][f"{ts.numerator}/{ts.denominator}" if ts else "4/4"] += 1
        cov["tempi"][tempo_bin(score.tempos[0].qpm if len(score.tempos) else 120.0)] += 1
        if pitched:
            pitch = np.concatenate([t.notes.numpy()["pitch"] for t in pitched])
            duration = np.concatenate([t.notes.numpy()["duration"] for t in pitched])
            tonic, mode = estimate_key(list(np.bincount(pitch % 12, weights=duration, minlength=12)))
            cov["keys"][NAMES[tonic] + ("m" if mode == "minor" else "")] += 1
        family = p.get("family") or table.get(p.get("groove"), {}).get("family")  # older manifests: by name
        if family:
            cov["grooves"][family] += 1
            cov["groove_names"][p["groove"]] += 1
        if "texture" in p or "groove" in p:
            cov["textures"][p.get("texture", "band")] += 1
        if tokenizer is not None:
            cov["tokens"].append(len(tokenizer.encode(score)))
    return cov


def _share(counter: Counter, total: int, top: int | None = None) -> str:
    items = counter.most_common(top)
    return ", ".join(f"{k} {100 * v / max(total, 1):.0f}%" for k, v in items)


def format_coverage(columns: dict[str, dict]) -> str:
    """A markdown table, one column per labelled coverage."""
    rows: list[tuple[str, list[str]]] = []

    def row(name, fn):
        rows.append((name, [fn(c) for c in columns.values()]))
    row("pieces", lambda c: f"{c['pieces']:,}")
    row("notes per piece", lambda c: f"{c['notes'] / max(c['pieces'], 1):.0f}")
    row("pieces with drums", lambda c: f"{100 * c['drums'] / max(c['pieces'], 1):.0f}%")
    row("distinct programs", lambda c: str(len(c["programs"])))
    row("program families (tracks)", lambda c: _share(c["families"], sum(c["families"].values())))
    row("meters", lambda c: _share(c["meters"], c["pieces"]))
    order = [tempo_bin(q) for q in (0, *TEMPO_BINS)]
    row("lead families", lambda c: _share(c["leads"], c["pieces"]))
    row("tempo (qpm)", lambda c: ", ".join(f"{k} {100 * c['tempi'][k] / max(c['pieces'], 1):.0f}%"
                                           for k in order if c["tempi"][k]))
    row("keys (distinct; top 5)", lambda c: f"{len(c['keys'])}: " + _share(c["keys"], c["pieces"], 5))
    row("groove families",
        lambda c: f"{len(c['grooves'])}: " + _share(c["grooves"], c["pieces"]) if c["grooves"] else "-")
    row("distinct grooves", lambda c: str(len(c["groove_names"])) if c["groove_names"] else "-")
    row("textures", lambda c: _share(c["textures"], c["pieces"]) if c["textures"] else "-")
    row("tokens per piece (mean)", lambda c: f"{np.mean(c['tokens']):.0f}" if c.get("tokens") else "-")
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    return "\n".join(lines)
