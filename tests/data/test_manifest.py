"""manifest.json, the two kinds that share the name (a corpus's, a token folder's), and its atomic writes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from musicmha.data.manifest import (CORPUS_KIND, TOKENS_KIND, read_corpus_manifest, read_corpus_splits,
                                    read_token_manifest, replace_collection, write_manifest)
from musicmha.errors import MusicmhaError
from musicmha.files import MANIFEST_FILE


def corpus_manifest() -> dict:
    pieces = [{"id": "bach/a", "path": "bach/a.mid", "collection": "bach", "notes": 10, "split": "train"},
              {"id": "bach/b", "path": "bach/b.mid", "collection": "bach", "notes": 5, "split": "test"}]
    return {"kind": CORPUS_KIND, "pieces": pieces, "pieces_total": 2, "notes_total": 15, "failures_total": 0,
            "collections": {"bach": {"pieces": 2, "notes": 15, "failures": []}}}


def test_each_reader_takes_only_its_kind(tmp_path):
    write_manifest(tmp_path, corpus_manifest())
    assert read_corpus_manifest(tmp_path) == corpus_manifest()
    assert read_corpus_splits(tmp_path) == {"bach/a.mid": "train", "bach/b.mid": "test"}
    with pytest.raises(MusicmhaError, match="not a musicmha token manifest"):
        read_token_manifest(tmp_path)
    write_manifest(tmp_path, {"kind": TOKENS_KIND, "splits": {}})
    assert read_token_manifest(tmp_path) == {"kind": TOKENS_KIND, "splits": {}}
    assert read_corpus_manifest(tmp_path) is None and read_corpus_splits(tmp_path) is None


def test_a_folder_without_a_manifest(tmp_path):
    assert read_corpus_manifest(tmp_path) is None
    with pytest.raises(MusicmhaError, match="not a prepared token folder"):
        read_token_manifest(tmp_path)
    with pytest.raises(MusicmhaError, match="token folder not found"):
        read_token_manifest(tmp_path / "missing")


def test_an_unreadable_corpus_manifest_is_ignored_with_a_warning(tmp_path, caplog):
    (tmp_path / MANIFEST_FILE).write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert read_corpus_manifest(tmp_path) is None
    assert "ignoring unreadable" in caplog.text
    with pytest.raises(MusicmhaError, match="unreadable"):
        read_token_manifest(tmp_path)


def test_a_failed_write_keeps_the_old_manifest(tmp_path, monkeypatch):
    write_manifest(tmp_path, corpus_manifest())

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError):
        write_manifest(tmp_path, {"kind": CORPUS_KIND, "pieces": []})
    monkeypatch.undo()
    assert json.loads((tmp_path / MANIFEST_FILE).read_text()) == corpus_manifest()
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_FILE]  # no temporary file left


def test_replacing_a_collection_recounts_the_totals():
    manifest = corpus_manifest()
    arranged = [{"id": "arrangements/bach/a", "path": "arrangements/bach/a.mid", "collection": "arrangements",
                 "notes": 40, "split": "train"}]
    replace_collection(manifest, "arrangements", {"pieces": 1, "failures": [{"id": "x", "reason": "y"}]}, arranged)
    assert [p["id"] for p in manifest["pieces"]] == ["arrangements/bach/a", "bach/a", "bach/b"]
    assert (manifest["pieces_total"], manifest["notes_total"], manifest["failures_total"]) == (3, 55, 1)
    replace_collection(manifest, "arrangements", {"pieces": 0, "failures": []}, [])
    assert (manifest["pieces_total"], manifest["notes_total"], manifest["failures_total"]) == (2, 15, 0)
