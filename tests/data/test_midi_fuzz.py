"""The MIDI fuzz: over a thousand mutated real files and random bytes through prepare, generate and the
app's upload handler. Every case must end in a valid result or one of our one-line errors, within a CPU
time limit and a memory limit (tests/midi_fuzz.py runs the cases in limited worker processes)."""

from __future__ import annotations

import struct

import pytest
from datafiles import PROMPTS

import midi_fuzz
import midi_mutations as mm

SOURCES = {p.name: p.read_bytes() for p in PROMPTS}
PER_FAMILY = 72  # 15 families: 1,080 cases


def _header(data: bytes) -> tuple[int, int, int]:
    return struct.unpack(">HHH", data[8:14])


def test_cases_are_deterministic_and_do_what_their_family_says():
    cases = mm.all_cases(list(SOURCES), 4)
    assert [mm.make_case(c, SOURCES) for c in cases] == [mm.make_case(c, SOURCES) for c in cases]
    make = {c.name: mm.make_case(c, SOURCES) for c in cases}
    bach = "bach_bwv66.6_chorale.mid"
    assert len({make[c.name] for c in cases}) > len(cases) * 0.9  # cases differ
    assert _header(make[f"smpte_timing:{bach}:0"])[2] & 0x8000
    assert _header(make[f"format_2:{bach}:0"])[0] != 1
    assert _header(make[f"thousands_of_tracks:{bach}:0"])[1] >= 1000
    assert _header(make[f"zero_ticks_per_beat:{bach}:0"])[2] in (0, 1, 0x7FFF)
    for name, data in make.items():
        if name.startswith(("bit_flips", "truncation", "inserted_bytes")):
            assert data != SOURCES[name.split(":")[1]], name


@pytest.mark.slow
def test_the_harness_catches_hangs_crashes_and_memory_blowups():
    # The memory case last: a worker dies with it and none needs to start after it (each start costs ~5 s).
    names = ["selftest_hang:-:0", "random_bytes:-:0", "selftest_crash:-:0", "random_bytes:-:1",
             "selftest_memory:-:0"]
    records = midi_fuzz.run(names, workers=1, time_limit=2.0, mem_mb=512)
    outcome = {r["case"]: r["prepare"] for r in records}
    assert outcome["selftest_hang:-:0"].startswith("FAIL: hang")
    assert outcome["selftest_crash:-:0"].startswith("FAIL: worker died")
    assert "MemoryError" in outcome["selftest_memory:-:0"]
    assert all(outcome[f"random_bytes:-:{i}"].startswith("ours: ") for i in range(2))


@pytest.mark.slow
def test_fuzz_prepare_generate_and_app_upload():
    cases = [c.name for c in mm.all_cases(list(SOURCES), PER_FAMILY)]
    assert len(cases) >= 1000
    records = midi_fuzz.run(cases, workers=2, time_limit=10.0, mem_mb=1536)
    failed = midi_fuzz.failures(records)
    assert not failed, f"{len(failed)} failures, first ones:\n" + "\n".join(failed[:25])
    summary = midi_fuzz.summary(records)
    for entry in midi_fuzz.ENTRIES:  # the mix is meaningful: many cases load, many are refused
        assert 200 < summary["outcomes"][entry]["valid"] < 800, summary["outcomes"][entry]
