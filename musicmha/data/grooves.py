"""The groove table: every usable groove of mma's standard library, probed once and kept in groove_table.py.

`python -m musicmha.data.grooves` (a few minutes, needs Debian's `mma`) lists the `DefGroove`s of
/usr/share/mma/lib/stdlib (leaving out intros, endings, fills and metronomes), renders each over eight bars
of chords and writes musicmha/data/groove_table.py (data, one groove a line; Python so that it ships in
the wheel without package-data): per groove its style file, family word (the style token
issue 28 will read), meter, mma beats per bar, tempo range (quarter notes per minute of the melody), the
track counts it rendered, and whether it is usable and as what:
- "band": drums (at least one drum note per beat), a bass line and comping: any texture;
- "quiet": a bass line and comping without drums, or with too few to carry a band (hymns, folk ballads,
  arpeggios, Folk's 7 drum notes in 8 bars): piano, strings and brass textures only, which drop drums.
Builds read the table (load_grooves), never probe again: it is data, versioned with the code.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import re
import sys
from pathlib import Path

STDLIB = Path("/usr/share/mma/lib/stdlib")
TABLE = Path(__file__).with_name("groove_table.py")
SKIP = re.compile(r"(Intro|End|Fill|Metronome|Break|Tail|Count)", re.I)
# Style file -> family word. Waltz is the European ballroom waltz; country, jazz, latin and rock waltzes
# keep their own family (the meter is a token of its own).
FAMILIES = {
    "rock": "50srock 60srock 8beat basicrock softrock folkrock bubblerock rock-128 rockwaltz twist",
    "pop": "boneym", "ballad": "ballad ballad128 ballad68 popballad pianoballad guitarballad stringballad "
    "rockballad lullaby arpeggio44 arpeggio68", "funk": "bvfunk strut dsoul", "rnb": "rb rb-ballad",
    "swing": "swing easyswing fastswing bigband jive charleston softshoe 68swing",
    "jazz": "bebop descendingjazz evansish folkyjazz jazz-54 jazzcombo jazzguitar jazzrock jazzwaltz "
    "fastjazzwaltz modernjazz modernjazzwaltz mellowjazz nitejazz slowjazz gypsyjazz dixie ragtime",
    "blues": "blues blues128 blues68 fastblues slowblues boggiewoggie shuffleboggie bluefolk",
    "country": "bluegrass countryblues countryswing countrywaltz hillcountry slowcountry westernswing zydeco",
    "folk": "folk folkballad", "gospel": "hymn spiritual popspiritual slowspiritual",
    "bossa nova": "bossanova", "latin": "afro-cuban beguine bolero slowbolero calypso chacha cubanguitar "
    "jazzrhumba latinwaltz lfusion mambo merengue rhumba salsa samba son ska",
    "ballroom": "foxtrot quickstep tango lighttango", "waltz": "waltz fastwaltz vienesewaltz frenchwaltz "
    "broadwaywaltz arpeggiowaltz", "march": "march 68march bwmarch dixiemarch", "polka": "polka",
    "showtune": "broadway slowbroadway showtune", "world": "desert", "electronic": "trance",
}
STYLE_FAMILY = {style: family for family, styles in FAMILIES.items() for style in styles.split()}
# Quarter notes per minute of the melody by family, for 4/4 and 3/4 grooves; compound meters below.
TEMPI = {"rock": (96, 144), "pop": (100, 130), "ballad": (60, 90), "funk": (88, 116), "rnb": (70, 110),
         "swing": (110, 180), "jazz": (100, 180), "blues": (70, 130), "country": (90, 160), "folk": (80, 130),
         "gospel": (66, 100), "bossa nova": (110, 140), "latin": (90, 140), "ballroom": (100, 140),
         "waltz": (100, 170), "march": (100, 130), "polka": (110, 140), "showtune": (100, 150),
         "world": (90, 130), "electronic": (120, 140)}
COMPOUND_TEMPI = {"6/8": (110, 180), "12/8": (70, 110)}  # quarter notes per minute, jigs to slow 12/8
# (mma beats per bar, mma time signature) -> the melody meter one mma bar of the groove is.
METER_OF = {(4, "4/4"): "4/4", (3, "3/4"): "3/4", (6, "6/8"): "6/8", (2, "6/8"): "6/8", (4, "6/8"): "12/8",
            (4, "12/8"): "12/8", (12, "12/8"): "12/8", (5, "5/4"): "5/4", (2, "2/4"): "2/4",
            (3, "4/4"): "3/4"}  # VieneseWaltz says Timesig 4 4 but plays 3 beats


def candidates() -> list[tuple[str, str]]:
    """(style file stem, groove name) of every DefGroove in mma's standard library but intros, endings, fills."""
    found = []
    for path in sorted(STDLIB.glob("*.mma")):
        if path.stem not in STYLE_FAMILY:
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = line.split()
            if len(words) > 1 and words[0].lower() == "defgroove" and not SKIP.search(words[1]):
                found.append((path.stem, words[1]))
    return sorted(set(found), key=lambda c: (c[0], c[1].lower()))


def tempo_range(family: str, meter: str, name: str) -> tuple[int, int]:
    low, high = COMPOUND_TEMPI.get(meter) or TEMPI[family]
    if re.search("slow", name, re.I):
        low, high = round(low * 0.8), round(high * 0.85)
    elif re.search("fast|quick", name, re.I):
        low, high = round(low * 1.2), round(high * 1.2)
    return low, high


def probe(style: str, groove: str) -> dict:
    """Render `groove` over eight bars once and describe it (usable or not, with the reason)."""
    from musicmha.data.mma import run_mma_raw
    from musicmha.errors import MusicmhaError

    text = (f"Groove {groove}\nPrint PROBE $_Time $_TimeSig\nTempo 100\nRndSeed 3\n"
            + "".join(f"{i + 1} {c}\n" for i, c in enumerate("C Am Dm G7 C F G7 C".split())))
    row = {"name": groove, "style": style, "family": STYLE_FAMILY[style]}
    try:
        score, stdout = run_mma_raw(text)
    except MusicmhaError as error:
        return {**row, "use": None, "why": str(error)}
    probe_line = next((ln.split() for ln in stdout.splitlines() if ln.startswith("PROBE")), None)
    if probe_line is None or len(probe_line) < 3:
        return {**row, "use": None, "why": "mma printed no time"}
    beats, signature = float(probe_line[1]), probe_line[2]
    beats = int(beats) if beats.is_integer() else beats
    meter = METER_OF.get((beats, signature))
    kinds = {"drums": 0, "bass": 0, "comping": 0}
    for track in score.tracks:
        kinds[track_kind(track.name, track.is_drum)] += len(track.notes)
    row.update(meter=meter, beats=beats, mma_timesig=signature, notes=kinds)
    if meter is None:
        return {**row, "use": None, "why": f"{beats} beats in {signature}: no melody meter"}
    row["tempo"] = tempo_range(row["family"], meter, groove)
    if kinds["bass"] < 8 or kinds["comping"] < 8:
        return {**row, "use": None, "why": "no bass line or no comping"}
    if kinds["drums"] >= 8 * beats:
        return {**row, "use": "band"}
    return {**row, "use": "quiet"}  # no drums, or too few to carry a band (Folk: 7 in 8 bars): dropped


def track_kind(name: str, is_drum: bool) -> str:
    """An mma output track's part: drums, bass (Bass*, Walk*) or comping (chords, arpeggios, pads, solos)."""
    if is_drum or name.lower().startswith("drum"):
        return "drums"
    return "bass" if name.lower().startswith(("bass", "walk")) else "comping"


def _probe_star(args: tuple[str, str]) -> dict:
    return probe(*args)


def build_table(path: Path = TABLE, workers: int = 2) -> list[dict]:
    """Probe every candidate (in `workers` processes) and write the table, sorted by groove name."""
    with multiprocessing.Pool(workers) as pool:
        rows = pool.map(_probe_star, candidates(), chunksize=4)
    rows.sort(key=lambda r: r["name"].lower())
    lines = "".join(f"    {json.dumps(r)},\n" for r in rows).replace(": null", ": None")
    path.write_text(f'"""mma grooves, probed by `python -m musicmha.data.grooves` from {STDLIB}; do not edit."""\n\n'
                    f"GROOVES = [\n{lines}]\n")
    return rows


@functools.lru_cache(maxsize=1)
def load_grooves() -> dict[str, dict]:
    """Usable grooves by name ("band" and "quiet"), from groove_table.py."""
    from musicmha.data.groove_table import GROOVES

    rows = GROOVES
    return {r["name"]: r for r in rows if r.get("use")}


def grooves_for(meter: str, uses: tuple[str, ...] = ("band",)) -> list[dict]:
    """Usable grooves of `meter` ("4/4", "3/4", ...) whose use is in `uses`, in name order."""
    return [g for g in load_grooves().values() if g["meter"] == meter and g["use"] in uses]


if __name__ == "__main__":
    table = build_table(workers=int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    usable = [r for r in table if r["use"]]
    print(f"{len(table)} grooves probed, {len(usable)} usable -> {TABLE}")
    for use in ("band", "quiet"):
        for meter in sorted({r["meter"] for r in usable}):
            n = sum(r["use"] == use and r["meter"] == meter for r in usable)
            print(f"  {use} {meter}: {n}")
