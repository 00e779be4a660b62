"""A session's prompt history, without gradio: every prompt the user had (bytes and the name of the piece
it came from), a position in it, undo and redo. Plain dicts, so it lives in a gr.State as is."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

HISTORY_STEPS = 20  # prompts kept per session (small: MIDI bytes)
NOTHING = "nothing (the model starts from scratch)"


def new_session() -> dict[str, Any]:
    """No prompt yet. `entries[i]` = {"data": bytes | None, "base": piece name, "steps": continuations,
    "edits": bar ranges regenerated, e.g. ["3-4"], and parts added, e.g. ["+bass@3-4"] (absent: none),
    "example": the example menu's name for it
    (absent: not an example), and what the page showed with it when it was left (`remember`): "results" (the
    variations' records) and "range" (the bars last regenerated, [first, last])}."""
    return {"entries": [{"data": None, "base": None, "steps": 0}], "index": 0}


def current(session: dict) -> dict:
    return session["entries"][session["index"]]


def name_of(entry: dict) -> str:
    """'bach_bwv66.6_chorale', 'bach_bwv66.6_chorale + 2 continuations', '... + 1 continuation, bars 3-4
    regenerated', or the 'nothing' text."""
    if entry["data"] is None:
        return NOTHING
    steps, edits = entry["steps"], entry.get("edits") or []
    ranges = [e for e in edits if not e.startswith("+")]  # regenerated bars ("3-4"); "+bass": an added part
    parts = [part_words(e) for e in edits if e.startswith("+")]
    return (entry["base"] + (f" + {steps} continuation{'s' if steps > 1 else ''}" if steps else "")
            + (f", bar{'s' if len(ranges) > 1 or '-' in ranges[0] else ''} {', '.join(ranges)} regenerated"
               if ranges else "") + "".join(f", {p}" for p in parts))


def part_words(edit: str) -> str:
    """'+bass' -> 'bass added'; '+bass@3-4' -> 'bass added in bars 3-4' (see parts.part_edit)."""
    word, _, bars = edit[1:].partition("@")
    return f"{word} added" + (f" in bar{'s' if '-' in bars else ''} {bars}" if bars else "")


def file_name(entry: dict) -> str:
    """A safe file name for the prompt's MIDI ('bach_bwv66.6_chorale+2.mid')."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", entry["base"] or "prompt").strip("._") or "prompt"
    return f"{stem}{'+' + str(entry['steps']) if entry['steps'] else ''}.mid"


def origin(entry: dict, kept: bool = False) -> str:
    """Which result a prompt was: 'variation 2, seed 8' (with `kept`, for regenerated bars: 'variation 2
    kept, seed 8'); '' for a prompt that was no result."""
    if not entry.get("variation"):
        return ""
    seed = f", seed {entry['seed']}" if entry.get("seed") is not None else ""
    return f"variation {entry['variation']}{' kept' if kept and entry.get('kept') else ''}{seed}"


def push(session: dict, data: bytes | None, base: str | None, steps: int = 0, edits: Sequence[str] = (),
         example: str | None = None, **result: Any) -> dict:
    """A new session with this prompt after the current one (redo steps beyond it are dropped, as in any
    editor); unchanged (the same object) when it is the current prompt already. `result`: which result it
    was (variation, seed, kept: regenerated bars kept), see `origin`."""
    now = current(session)
    if now["data"] == data and (data is None or now["base"] == base):
        return session
    entry = {"data": data, "base": base, "steps": steps, **({"edits": list(edits)} if edits else {}),
             **({"example": example} if example else {}), **result}
    entries = [*session["entries"][:session["index"] + 1], entry]
    entries = entries[-HISTORY_STEPS:]
    return {"entries": entries, "index": len(entries) - 1}


def remember(session: dict, results: list[dict] | None) -> dict:
    """A new session whose current prompt keeps the results shown with it (and the bars they regenerated as
    its range), so undo / redo bring them back with it. No results: the session as it is."""
    if not results:
        return session
    entry = {**current(session), "results": list(results)}
    if results[0].get("bars"):
        entry["range"] = list(results[0]["bars"])
    entries = list(session["entries"])
    entries[session["index"]] = entry
    return {**session, "entries": entries}


def can_undo(session: dict) -> bool:
    """Undo stops at the first prompt the user had: it never falls back to 'nothing' by surprise, unless
    'nothing' was chosen on purpose after a prompt."""
    index = session["index"]
    return index > 0 and not (index == 1 and session["entries"][0]["data"] is None)


def can_redo(session: dict) -> bool:
    return session["index"] < len(session["entries"]) - 1


def move(session: dict, step: int) -> dict:
    return {"entries": session["entries"], "index": session["index"] + step}


def markdown(session: dict) -> str:
    """The visible history: one line per prompt, the current one marked."""
    entries = session["entries"]
    shown = [(i, e) for i, e in enumerate(entries) if not (i == 0 and e["data"] is None and len(entries) > 1)]
    if len(shown) <= 1:
        return ""
    lines = [f"{'**▶ ' if i == session['index'] else '&nbsp;&nbsp;&nbsp;'}{n}. {name_of(e)}"
             f"{' (' + origin(e) + ')' if origin(e) else ''}{'**' if i == session['index'] else ''}"
             for n, (i, e) in enumerate(shown, 1)]
    return "History, oldest first (▶ the prompt shown; undo / redo walk it):  \n" + "  \n".join(lines)
