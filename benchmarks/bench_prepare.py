"""Measure `musicmha prepare`: wall time, files/s, tokens/s and the peak memory of the whole process tree.

    python benchmarks/bench_prepare.py data/corpus --out /tmp/bench_tokens [--workers 2]
    python benchmarks/bench_prepare.py --make-copies 20000 --from data/corpus --copies-dir /tmp/corpus20k
    python benchmarks/bench_prepare.py /tmp/corpus20k --out /tmp/bench_tokens20k

`prepare` runs in a child process (`python -m musicmha prepare ...`); a sampler adds up the resident memory
of that process and its workers every 0.25 s, and records it against the fraction of files done (read from
the progress bar), so one can see whether memory grows with the number of files processed. Prints one JSON
object (also written to --json).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_prepare(input_dir: str, out: str, workers: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "musicmha", "prepare", input_dir, "--out", out, "--workers", str(workers), *extra]
    started = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    proc = psutil.Process(child.pid)
    progress = {"done": 0.0}
    samples: list[tuple[float, float, int]] = []  # (seconds, fraction of files done, bytes)

    def read_bar() -> None:
        # tqdm rewrites its line with "\r"; read character by character to see every update
        buf = ""
        for ch in iter(lambda: child.stderr.read(1), ""):
            buf = "" if ch in "\r\n" else buf + ch
            m = re.search(r"prepare:.*?(\d+)/(\d+) ", buf)
            if m:
                progress["done"] = int(m.group(1)) / max(1, int(m.group(2)))

    reader = threading.Thread(target=read_bar, daemon=True)
    reader.start()
    while child.poll() is None:
        try:
            samples.append((time.perf_counter() - started, progress["done"], tree_rss(proc)))
        except psutil.Error:
            pass
        time.sleep(0.25)
    seconds = time.perf_counter() - started
    stdout = child.stdout.read()
    reader.join(timeout=5)
    if child.returncode != 0:
        raise SystemExit(f"prepare failed ({child.returncode}):\n{stdout}")
    manifest = json.loads((Path(out) / "manifest.json").read_text())
    by_decile = {}
    for _, frac, rss in samples:
        d = min(9, int(frac * 10))
        by_decile[d] = max(by_decile.get(d, 0), rss)
    return {
        "command": " ".join(cmd[2:]), "seconds": round(seconds, 1),
        "files": manifest["files_found"], "files_used": manifest["files_used"],
        "skipped": len(manifest["skipped"]), "tokens": manifest["tokens_total"],
        "files_per_s": round(manifest["files_found"] / seconds, 1),
        "tokens_per_s": round(manifest["tokens_total"] / seconds),
        "peak_rss_mb": round(max(s[2] for s in samples) / 2**20) if samples else None,
        "peak_rss_mb_by_progress_decile": {f"{d * 10}-{d * 10 + 10}%": round(v / 2**20) for d, v in sorted(by_decile.items())},
        "splits": manifest["splits"],
    }


def make_copies(source: Path, target: Path, count: int) -> None:
    """Fill `target` with `count` MIDI files: the source files, then transposed copies (+1, -1, +2, ...)."""
    from musicmha.data.augment import Variant, apply, fits
    from musicmha.data.midi_io import load_midi

    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    target.mkdir(parents=True, exist_ok=True)
    shifts = [0, 1, -1, 2, -2, 3, -3, 4, -4, 5]
    written = 0
    for shift in shifts:
        for f in files:
            if written >= count:
                return
            rel = f.relative_to(source)
            dest = target / f"t{shift:+d}" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if shift == 0:
                dest.write_bytes(f.read_bytes())
            else:
                try:
                    score = load_midi(f)
                except Exception:
                    continue
                if not fits(score, Variant(pitch=shift), (0, 128)):
                    continue
                apply(score, Variant(pitch=shift)).dump_midi(str(dest))
            written += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?")
    ap.add_argument("--out", default="/tmp/bench_tokens")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the result here")
    ap.add_argument("--make-copies", type=int, default=None, help="only build a folder of N files and exit")
    ap.add_argument("--from", dest="source", default="data/corpus")
    ap.add_argument("--copies-dir", default="/tmp/corpus20k")
    args, extra = ap.parse_known_args()
    if args.make_copies:
        make_copies(Path(args.source), Path(args.copies_dir), args.make_copies)
        print(f"wrote {sum(1 for _ in Path(args.copies_dir).rglob('*.mid'))} files to {args.copies_dir}")
        return
    result = run_prepare(args.input, args.out, args.workers, extra)
    result.update(machine=f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, "
                          f"{round(psutil.virtual_memory().total / 2**30)} GiB RAM, Python {platform.python_version()}",
                  date=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
