"""`musicmha prepare` on real prompts mixed with corrupt files: shards, manifest, errors, augmentation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datafiles import PROMPTS, copy_prompts, write_corrupt_files

from musicmha.data.augment import AugmentConfig, Variant, apply
from musicmha.cli import main
from musicmha.data.midi_io import load_midi
from musicmha.data.split import SPLITS, split_of
from musicmha.data.tokenizer import MusicTokenizer


def _read_split(out: Path, split: str) -> list[tuple[dict, np.ndarray]]:
    """Independent reader of the documented shard format (not musicmha.data.dataset)."""
    tokens = np.fromfile(out / f"{split}.bin", dtype=np.uint16)
    index = np.fromfile(out / f"{split}.idx", dtype=np.int64).reshape(-1, 2)
    entries = [json.loads(line) for line in (out / f"{split}.pieces.jsonl").read_text().splitlines()]
    assert len(entries) == len(index)
    if len(index):
        assert index[0, 0] == 0 and (index[1:, 0] == index[:-1, 0] + index[:-1, 1]).all()
        assert index[-1, 0] + index[-1, 1] == len(tokens)
    return [(e, tokens[s:s + n]) for e, (s, n) in zip(entries, index)]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[Path, list[str], dict[str, str]]:
    folder = tmp_path_factory.mktemp("mixed")
    good = copy_prompts(folder)
    bad = write_corrupt_files(folder / "bad")
    (folder / "notes.txt").write_text("not a MIDI file and not .mid: ignored")
    return folder, good, {f"bad/{k}": v for k, v in bad.items()}


@pytest.fixture(scope="module")
def prepared(mixed, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tokens")
    assert main(["prepare", str(mixed[0]), "--out", str(out), "--workers", "2"]) == 0
    return out


def test_bad_files_are_skipped_with_their_reason(mixed, prepared):
    _, good, bad = mixed
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["files_found"] == len(good) + len(bad)
    assert manifest["files_used"] == len(good)
    reasons = {s["path"]: s["reason"] for s in manifest["skipped"]}
    assert set(reasons) == set(bad)
    for path, word in bad.items():
        assert word in reasons[path].lower(), (path, reasons[path])


def test_shards_hold_bos_encode_eos_of_every_good_file(mixed, prepared):
    folder, good, _ = mixed
    tok = MusicTokenizer.load(prepared)
    manifest = json.loads((prepared / "manifest.json").read_text())
    seen = {}
    for split in SPLITS:
        sequences = _read_split(prepared, split)
        assert manifest["splits"][split]["tokens"] == sum(len(ids) for _, ids in sequences)
        assert manifest["splits"][split]["pieces"] == len(sequences)  # no augmentation here
        for entry, ids in sequences:
            seen[entry["path"]] = split
            assert ids.tolist() == [tok.bos_id, *tok.encode(folder / entry["path"]), tok.eos_id]
    assert sorted(seen) == sorted(good)
    moved = {m["path"]: m["to"] for m in manifest["moved_for_tiny_corpus"]}
    assert all(split == moved.get(path, split_of(path)) for path, split in seen.items())
    assert manifest["splits"]["train"]["pieces"] >= 1 and manifest["splits"]["validation"]["pieces"] >= 1


def test_shards_do_not_depend_on_the_worker_count(mixed, prepared, tmp_path):
    assert main(["prepare", str(mixed[0]), "--out", str(tmp_path), "--workers", "1"]) == 0
    for split in SPLITS:
        for suffix in (".bin", ".idx", ".pieces.jsonl"):
            assert (tmp_path / f"{split}{suffix}").read_bytes() == (prepared / f"{split}{suffix}").read_bytes()


def test_corpus_manifest_splits_are_honoured(tmp_path):
    folder = tmp_path / "corpus"
    rels = copy_prompts(folder, PROMPTS[:4])
    # Put every piece in the split its hash would NOT give it: prepare must follow the manifest.
    forced = {rel: next(s for s in ("validation", "train", "test") if s != split_of(rel)) for rel in rels}
    pieces = [{"id": rel, "path": rel, "split": split} for rel, split in forced.items()]
    (folder / "manifest.json").write_text(json.dumps({"kind": "musicmha-corpus", "pieces": pieces}))
    out = tmp_path / "tokens"
    assert main(["prepare", str(folder), "--out", str(out), "--workers", "2"]) == 0
    got = {e["path"]: split for split in SPLITS for e, _ in _read_split(out, split)}
    moved = {m["path"]: m["to"] for m in json.loads((out / "manifest.json").read_text())["moved_for_tiny_corpus"]}
    assert got == {rel: moved.get(rel, split) for rel, split in forced.items()}


def test_two_files_give_one_train_and_one_validation_piece(tmp_path):
    copy_prompts(tmp_path / "in", PROMPTS[:2])
    assert main(["prepare", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--workers", "2"]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {s: v["pieces"] for s, v in manifest["splits"].items()} == {"train": 1, "validation": 1, "test": 0}


@pytest.mark.parametrize("setup", ["missing", "empty", "only_bad", "one_good"])
def test_unusable_input_is_a_one_line_error_with_exit_code_2(tmp_path, capsys, setup):
    folder = tmp_path / "in"
    if setup != "missing":
        folder.mkdir()
    if setup == "only_bad":
        write_corrupt_files(folder)
    if setup == "one_good":
        write_corrupt_files(folder)
        copy_prompts(folder, PROMPTS[:1])
    assert main(["prepare", str(folder), "--out", str(tmp_path / "out"), "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error" in line]  # other lines are the progress bar
    assert len(errors) == 1 and err[-1] == errors[0] and errors[0].startswith("musicmha prepare: error:")


def test_transposition_augments_train_only_and_matches_shifted_scores(tmp_path):
    folder = tmp_path / "in"
    copy_prompts(folder)
    out = tmp_path / "out"
    assert main(["prepare", str(folder), "--out", str(out), "--workers", "2", "--transpose=-2,3"]) == 0
    tok = MusicTokenizer.load(out)
    train = _read_split(out, "train")
    by_path: dict[str, dict[str, list[int]]] = {}
    for entry, ids in train:
        by_path.setdefault(entry["path"], {})[entry["aug"]] = ids.tolist()
    assert by_path and all(set(v) <= {"", "p-2", "p+3"} and "" in v for v in by_path.values())
    assert any(len(v) == 3 for v in by_path.values())
    for path, variants in by_path.items():
        score = load_midi(folder / path)
        for name, shift in (("p-2", -2), ("p+3", 3)):
            if name in variants:  # independent shift: every non-drum note moves by `shift`
                shifted = score.copy()
                for track in shifted.tracks:
                    if not track.is_drum:
                        for note in track.notes:
                            note.pitch += shift
                assert variants[name] == [tok.bos_id, *tok.encode(shifted), tok.eos_id]
    for split in ("validation", "test"):
        assert all(entry["aug"] == "" for entry, _ in _read_split(out, split))


def test_augment_leaves_drums_and_input_alone():
    score = load_midi(PROMPTS[0])
    import symusic

    drums = symusic.Track("drums", 0, True)
    drums.notes.append(symusic.Note(0, 100, 38, 90))
    score.tracks.append(drums)
    before = [[n.pitch for n in t.notes] for t in score.tracks]
    out = apply(score, Variant(pitch=2, velocity=10, tempo=1.5))
    assert [[n.pitch for n in t.notes] for t in score.tracks] == before
    for t_in, t_out in zip(score.tracks, out.tracks):
        assert [n.pitch for n in t_out.notes] == [n.pitch + (0 if t_in.is_drum else 2) for n in t_in.notes]
        assert [n.velocity for n in t_out.notes] == [min(127, n.velocity + 10) for n in t_in.notes]
    assert [t.qpm for t in out.tempos] == pytest.approx([t.qpm * 1.5 for t in score.tempos])
    cfg = AugmentConfig(transpose=(-1, 1, 2), velocity=(8,), per_piece=2)
    assert cfg.variants("a/b.mid", seed=1) == cfg.variants("a/b.mid", seed=1)
    assert len(cfg.variants("a/b.mid", seed=1)) == 2 and len(AugmentConfig(transpose=(1, 2)).variants("x")) == 2


def test_prepare_and_dataset_do_not_import_torch():
    code = ("import sys, musicmha.data.prepare, musicmha.data.dataset, musicmha.data.midi_io; "
            "from musicmha.data.tokenizer import MusicTokenizer; MusicTokenizer.from_config(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_bpe_vocab_size_option(tmp_path):
    copy_prompts(tmp_path / "in")
    out = tmp_path / "out"
    base = MusicTokenizer.from_config().vocab_size
    assert main(["prepare", str(tmp_path / "in"), "--out", str(out), "--workers", "2",
                 "--vocab-size", str(base + 30)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["bpe"] and manifest["vocab_size"] == base + 30 == MusicTokenizer.load(out).vocab_size
    assert max(int(ids.max()) for s in SPLITS for _, ids in _read_split(out, s) if len(ids)) < base + 30


def test_reusing_a_tokenizer_gives_identical_shards(mixed, prepared, tmp_path):
    out = tmp_path / "again"
    assert main(["prepare", str(mixed[0]), "--out", str(out), "--workers", "2",
                 "--tokenizer", str(prepared / "tokenizer.json")]) == 0
    assert (out / "tokenizer.json").is_file()
    for split in SPLITS:
        assert (out / f"{split}.bin").read_bytes() == (prepared / f"{split}.bin").read_bytes()
    assert main(["prepare", str(mixed[0]), "--out", str(out), "--tokenizer", str(tmp_path / "none.json")]) == 2


def _small_folder(folder: Path, count: int) -> list[str]:
    """`count` copies of the bundled prompts under distinct names (a musician's small folder)."""
    folder.mkdir(parents=True)
    prompts = sorted((Path(__file__).resolve().parents[2] / "data" / "prompts").glob("*.mid"))
    names = [f"song_{i:02d}.mid" for i in range(count)]
    for i, name in enumerate(names):
        (folder / name).write_bytes(prompts[i % len(prompts)].read_bytes())
    return names


@pytest.mark.parametrize("count", [10, 23, 50])
def test_small_corpora_get_every_split_and_keep_it(tmp_path, count, capsys):
    from musicmha.files import SPLITS_FILE

    names = _small_folder(tmp_path / "in", count)
    assert main(["prepare", str(tmp_path / "in"), "--out", str(tmp_path / "a"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert all(manifest["splits"][s]["pieces"] >= 1 for s in SPLITS)
    if count < 50:
        assert "fine-tune a trained model" in out
    first = {e["path"]: s for s in SPLITS for e, _ in _read_split(tmp_path / "a", s)}
    recorded = json.loads((tmp_path / "in" / SPLITS_FILE).read_text())["splits"]
    assert recorded == first and sorted(first) == names
    # More files later: every earlier piece keeps its split, even one that was moved for the small corpus.
    for i in range(count, count + 15):
        (tmp_path / "in" / f"song_{i:02d}.mid").write_bytes((tmp_path / "in" / names[0]).read_bytes())
    assert main(["prepare", str(tmp_path / "in"), "--out", str(tmp_path / "b"), "--workers", "1"]) == 0
    second = {e["path"]: s for s in SPLITS for e, _ in _read_split(tmp_path / "b", s)}
    assert all(second[path] == split for path, split in first.items())


def test_split_record_that_cannot_be_written_is_only_a_warning(tmp_path, monkeypatch, caplog):
    import musicmha.atomic_files
    from musicmha.files import SPLITS_FILE

    def refuse(path, text):
        raise PermissionError(13, "Permission denied")

    _small_folder(tmp_path / "in", 12)
    monkeypatch.setattr(musicmha.atomic_files, "write_text_atomic", refuse)  # a read-only MIDI folder
    assert main(["prepare", str(tmp_path / "in"), "--out", str(tmp_path / "a"), "--workers", "1"]) == 0
    assert not (tmp_path / "in" / SPLITS_FILE).exists()
    assert "cannot record the splits" in caplog.text
