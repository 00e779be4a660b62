"""The split of a piece depends on its id alone: across processes, hash seeds, folder moves and corpus sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import PurePosixPath, PureWindowsPath

import pytest

from musicmha.data.split import SPLITS, path_key, split_of, split_score

KEYS = [f"bach/bwv{i}.mxl" for i in range(300)] + [f"essenFolksong/han1.abc#{i}" for i in range(300)]


def test_same_split_in_other_processes_with_other_hash_seeds():
    code = ("import json, sys; from musicmha.data.split import split_of; "
            "print(json.dumps([split_of(k) for k in json.loads(sys.stdin.read())]))")
    here = [split_of(k) for k in KEYS]
    for seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], input=json.dumps(KEYS), capture_output=True,
                             text=True, env=env, check=True).stdout
        assert json.loads(out) == here


def test_fractions_are_about_90_5_5():
    n = 20_000
    counts = Counter(split_of(f"piece/{i}") for i in range(n))
    for split, p in zip(SPLITS, (0.90, 0.05, 0.05)):
        sigma = (n * p * (1 - p)) ** 0.5
        assert abs(counts[split] - n * p) < 5 * sigma, counts


def test_split_follows_the_score_thresholds():
    for key in KEYS:
        u = split_score(key)
        assert 0 <= u < 1
        assert split_of(key) == ("train" if u < 0.9 else "validation" if u < 0.95 else "test")


def test_a_piece_keeps_its_split_when_the_corpus_grows():
    small = {k: split_of(k) for k in KEYS[:50]}
    large = {k: split_of(k) for k in KEYS}  # no global state: asking about more pieces changes nothing
    assert all(large[k] == v for k, v in small.items())


def test_custom_fractions_and_validation():
    assert {split_of(k, validation=0.0, test=0.0) for k in KEYS} == {"train"}
    with pytest.raises(ValueError):
        split_of("x", validation=0.6, test=0.5)


def test_path_key_is_relative_and_uses_forward_slashes(tmp_path):
    assert path_key(tmp_path / "a" / "b.mid", tmp_path) == "a/b.mid"
    # The same relative file gives the same key wherever the folder lives.
    assert path_key("/x/y/a/b.mid", "/x/y") == path_key("/elsewhere/a/b.mid", "/elsewhere")
    assert PureWindowsPath("a\\b.mid").as_posix() == PurePosixPath("a/b.mid").as_posix()
