"""TokenSplit and the deterministic batches that make exact resume and multi-process sharding possible."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from datafiles import copy_prompts

from musicmha.cli import main
from musicmha.data.dataset import TokenSplit, batch_for_step
from musicmha.data.manifest import read_token_manifest
from musicmha.errors import MusicmhaError


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ds")
    copy_prompts(root / "in")
    assert main(["prepare", str(root / "in"), "--out", str(root / "out"), "--workers", "2", "--transpose=1"]) == 0
    return root / "out"


def _stream(folder: Path, split: str) -> np.ndarray:
    return np.fromfile(folder / f"{split}.bin", dtype=np.uint16).astype(np.int64)


def test_split_exposes_pieces_and_sources(tokens):
    manifest = json.loads((tokens / "manifest.json").read_text())
    train = TokenSplit(tokens, "train")
    assert len(train) == manifest["splits"]["train"]["sequences"] > manifest["splits"]["train"]["pieces"]
    assert train.num_tokens == manifest["splits"]["train"]["tokens"]
    assert np.concatenate(list(train.iter_pieces())).tolist() == _stream(tokens, "train").tolist()
    for i in range(len(train)):
        piece = train.piece(i)
        assert piece[0] == train.bos_id and piece[-1] == train.eos_id
        assert train.bos_id not in piece[1:-1].tolist() and train.eos_id not in piece[1:-1].tolist()
    assert {train.source(i)["aug"] for i in range(len(train))} == {"", "p+1"}


def test_batch_depends_only_on_its_arguments(tokens):
    train = TokenSplit(tokens, "train")
    args = {"seq_len": 32, "batch_size": 4, "seed": 7}
    a = batch_for_step(train, step=5, **args)
    assert a.shape == (4, 33) and a.dtype == np.int64
    again = batch_for_step(TokenSplit(tokens, "train"), step=5, **args)  # fresh reader, as after a restart
    assert (a == again).all()
    assert not (a == batch_for_step(train, step=6, **args)).all()
    assert not (a == batch_for_step(train, step=5, seq_len=32, batch_size=4, seed=8)).all()


def test_windows_are_real_slices_of_the_stream(tokens):
    stream = _stream(tokens, "train")
    train = TokenSplit(tokens, "train")
    batch = batch_for_step(train, seq_len=64, batch_size=8, seed=0, step=0)
    for row in batch:
        # find the window in the stream (read circularly): it must be a contiguous run of tokens
        n = len(stream)
        starts = [s for s in range(n) if all(stream[(s + k) % n] == row[k] for k in range(len(row)))]
        assert starts, "window is not a slice of the split"


def test_ranks_partition_the_global_batch(tokens):
    train = TokenSplit(tokens, "train")
    whole = batch_for_step(train, seq_len=16, batch_size=6, seed=3, step=11)
    parts = [batch_for_step(train, seq_len=16, batch_size=3, seed=3, step=11, rank=r, world_size=2) for r in range(2)]
    assert (np.concatenate(parts) == whole).all()
    with pytest.raises(MusicmhaError):
        batch_for_step(train, seq_len=16, batch_size=3, seed=3, step=11, rank=2, world_size=2)


def test_short_split_wraps_around(tokens):
    validation = TokenSplit(tokens, "validation")
    stream = _stream(tokens, "validation")
    n = len(stream)
    batch = batch_for_step(validation, seq_len=3 * n, batch_size=2, seed=0, step=0)
    for row in batch:
        # every window of length > n read circularly repeats with period n
        assert (row[n:] == row[:-n]).all()
        assert sorted(set(row.tolist())) == sorted(set(stream.tolist()))


def _consecutive_windows(split: TokenSplit, *, seq_len: int, batch_size: int):
    """Window k covers tokens [k*seq_len, k*seq_len + seq_len] of the split's stream, the last one right-padded
    with `pad_id` (formerly dataset.iter_windows, which only this test used)."""
    starts = list(range(0, max(split.num_tokens - 1, 0), seq_len))
    for b in range(0, len(starts), batch_size):
        rows = []
        for s in starts[b:b + batch_size]:
            window = np.full(seq_len + 1, split.pad_id, dtype=np.int64)
            chunk = split.tokens[s:s + seq_len + 1]
            window[:len(chunk)] = chunk
            rows.append(window)
        yield np.stack(rows)


def test_eval_windows_cover_every_token_once(tokens):
    split = TokenSplit(tokens, "train")
    stream = _stream(tokens, "train")
    seq_len = 50
    rows = np.concatenate(list(_consecutive_windows(split, seq_len=seq_len, batch_size=4)))
    assert rows.shape[1] == seq_len + 1
    # inputs (row[:-1]) concatenated give the whole stream, then padding; targets are the stream shifted by one
    inputs = rows[:, :-1].reshape(-1)
    assert inputs[: len(stream)].tolist() == stream.tolist()
    assert (inputs[len(stream):] == split.pad_id).all()
    targets = rows[:, 1:].reshape(-1)
    assert targets[: len(stream) - 1].tolist() == stream[1:].tolist()
    assert (targets[len(stream) - 1:] == split.pad_id).all()


def test_not_a_token_folder(tmp_path, tokens):
    with pytest.raises(MusicmhaError, match="not found"):
        TokenSplit(tmp_path / "nope", "train")
    with pytest.raises(MusicmhaError, match="not a prepared token folder"):
        TokenSplit(tmp_path, "train")
    (tmp_path / "manifest.json").write_text('{"kind": "musicmha-corpus"}')
    with pytest.raises(MusicmhaError, match="not a musicmha token manifest"):
        read_token_manifest(tmp_path)
    with pytest.raises(MusicmhaError, match="unknown split"):
        TokenSplit(tokens, "dev")
    broken = tmp_path / "broken"
    shutil.copytree(tokens, broken)
    with open(broken / "train.bin", "ab") as f:
        f.write(b"\x00\x00")
    with pytest.raises(MusicmhaError, match="does not match"):
        TokenSplit(broken, "train")
    (broken / "validation.idx").unlink()
    with pytest.raises(MusicmhaError):
        TokenSplit(broken, "validation")
