"""Regenerate the prompt MIDI files in this folder from music21's bundled corpus.

    python data/prompts/make_prompts.py

Each prompt is the first few measures of a real piece, written with music21's own MIDI writer (the same
one `musicmha corpus` uses), so prompts look like the training data.
"""

from __future__ import annotations

from pathlib import Path

from music21 import corpus, midi

HERE = Path(__file__).resolve().parent

# file name -> (corpus path, tune number inside a multi-tune ABC file or None, first measure, last measure)
PROMPTS = {
    "bach_bwv66.6_chorale.mid": ("bach/bwv66.6", None, 0, 4),
    "palestrina_agnus.mid": ("palestrina/Agnus_01.krn", None, 1, 6),
    "monteverdi_madrigal_3_1.mid": ("monteverdi/madrigal.3.1.mxl", None, 1, 5),
    "essen_folksong_han1_1.mid": ("essenFolksong/han1.abc", 1, 0, 4),
    "oneills_tune_1.mid": ("oneills1850/0001-0050.abc", 1, 0, 4),
    "beethoven_op18no1_quartet.mid": ("beethoven/opus18no1/movement1.mxl", None, 1, 8),
    "joplin_maple_leaf_rag_piano.mid": ("joplin/maple_leaf_rag.mxl", None, 1, 4),
}


def main() -> None:
    for name, (source, tune, first, last) in PROMPTS.items():
        parsed = corpus.parse(source)
        score = parsed.scores[tune - 1] if tune is not None else parsed
        excerpt = score.measures(first, last)
        # An excerpt can cut a repeat in half, which music21's MIDI writer refuses: drop repeat barlines.
        for measure in excerpt.recurse().getElementsByClass("Measure"):
            for side in ("leftBarline", "rightBarline"):
                if type(getattr(measure, side)).__name__ == "Repeat":
                    setattr(measure, side, None)
        (HERE / name).write_bytes(midi.translate.streamToMidiFile(excerpt).writestr())
        print(f"{name}: {source}{'#' + str(tune) if tune else ''} measures {first}-{last}")


if __name__ == "__main__":
    main()
