"""The on-disk token format shared by `prepare` (writer) and `dataset` (reader), nanoGPT style.

Per split, in the token folder:
  {split}.bin          uint16 token ids of every sequence back to back, each as BOS ... EOS
  {split}.idx          int64 pairs (start, length) of each sequence in {split}.bin
  {split}.pieces.jsonl one line per sequence: {"path": MIDI path relative to the input, "aug": variant or "",
                       and "style" where the corpus gives the piece one (musicmha/data/styles.py)}
plus manifest.json (musicmha.data.manifest) and tokenizer.json. Sequences are appended as workers return, so memory stays flat.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from musicmha.data.split import SPLITS

DTYPE = np.uint16


def bin_path(folder: Path, split: str) -> Path:
    return Path(folder) / f"{split}.bin"


def idx_path(folder: Path, split: str) -> Path:
    return Path(folder) / f"{split}.idx"


def pieces_path(folder: Path, split: str) -> Path:
    return Path(folder) / f"{split}.pieces.jsonl"


class ShardWriter:
    """Appends sequences to the three files of each split; keeps only counters in memory."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._files = self._open("w")
        self.tokens = dict.fromkeys(SPLITS, 0)
        self.sequences = dict.fromkeys(SPLITS, 0)
        self.pieces = dict.fromkeys(SPLITS, 0)  # originals only, augmented variants not counted

    def _open(self, mode: str) -> dict:
        return {s: (open(bin_path(self.folder, s), mode + "b"), open(idx_path(self.folder, s), mode + "b"),
                    open(pieces_path(self.folder, s), mode, encoding="utf-8")) for s in SPLITS}

    def add(self, split: str, path: str, aug: str, ids: np.ndarray, style: str | None = None) -> None:
        ids = np.asarray(ids, dtype=DTYPE)
        binf, idxf, pf = self._files[split]
        binf.write(ids.tobytes())
        idxf.write(np.array([self.tokens[split], len(ids)], dtype=np.int64).tobytes())
        pf.write(json.dumps({"path": path, "aug": aug, **({"style": style} if style else {})}) + "\n")
        self.tokens[split] += len(ids)
        self.sequences[split] += 1
        self.pieces[split] += aug == ""

    def close(self) -> None:
        for files in self._files.values():
            for f in files:
                f.close()

    def move_last_piece(self, src: str, dst: str) -> str:
        """Move the last original piece of `src` to the end of `dst`, dropping its augmented variants
        (augmented copies of a validation piece left in train would leak it). Only used to give a tiny
        corpus a non-empty split, so rewriting the tail of the files is cheap. Returns the piece's path."""
        self.close()
        index = np.fromfile(idx_path(self.folder, src), dtype=np.int64).reshape(-1, 2)
        lines = pieces_path(self.folder, src).read_text(encoding="utf-8").splitlines()
        entries = [json.loads(line) for line in lines]
        last = max(i for i, e in enumerate(entries) if e["aug"] == "")
        path = entries[last]["path"]
        first_of_piece = min(i for i in range(last, len(entries)) if entries[i]["path"] == path)
        start, length = (int(x) for x in index[last])
        ids = np.fromfile(bin_path(self.folder, src), dtype=DTYPE, count=length, offset=start * DTYPE().itemsize)
        keep_tokens = int(index[first_of_piece][0])
        removed = entries[first_of_piece:]
        os.truncate(bin_path(self.folder, src), keep_tokens * DTYPE().itemsize)
        os.truncate(idx_path(self.folder, src), first_of_piece * 16)
        pieces_path(self.folder, src).write_text("".join(line + "\n" for line in lines[:first_of_piece]), encoding="utf-8")
        self.tokens[src] = keep_tokens
        self.sequences[src] = first_of_piece
        self.pieces[src] -= sum(e["aug"] == "" for e in removed)
        self._files = self._open("a")
        self.add(dst, path, "", ids, entries[last].get("style"))
        return path

    def ensure_train_and_validation(self) -> list[dict]:
        """Give train and validation at least one piece each (a tiny corpus may hash all its pieces into one
        split). Deterministic: always the last piece written, and results are written in file order."""
        moves = []
        if self.pieces["train"] == 0:
            src = max(("test", "validation"), key=lambda s: self.pieces[s])
            moves.append({"path": self.move_last_piece(src, "train"), "from": src, "to": "train"})
        if self.pieces["validation"] == 0:
            src = "train" if self.pieces["train"] >= 2 else "test"
            moves.append({"path": self.move_last_piece(src, "validation"), "from": src, "to": "validation"})
        return moves
