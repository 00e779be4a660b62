"""Which targets could a model predict by copying? The exact-repeat classes behind the long-context benchmark.

A target t of a token sequence is *copyable* when the k tokens before it, seq[t-k:t], occurred earlier as
seq[j-k:j] (j < t) and the token after that earlier occurrence is the target itself, seq[j] == seq[t]:
a model with an induction mechanism (find the earlier copy of what it just read, predict what followed it)
gets such a target almost free. Music repeats a great deal (a repeated section, a drum groove, a chorale's
repeated first phrases), so the share of copyable targets bounds what a long context can add:

- "near": a copy lies wholly inside the last `short` tokens before t (j - k >= t - short), so a model
  that sees only that tail can copy it too;
- "far": copyable, but only from a copy that starts before the tail: only the full context can help;
- "none": not copyable (new material, or a repeat that diverges here).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

NEAR, FAR, NONE = "near", "far", "none"
CLASSES = (NEAR, FAR, NONE)


def copy_classes(seq: np.ndarray, start: int, end: int, *, short: int, k: int = 32) -> list[str]:
    """The class of every target t in [start, end) of `seq` (1-D ints), as defined in the module docstring."""
    if k < 1 or short <= k:
        raise ValueError(f"need 1 <= k < short, got k={k}, short={short}")
    if not 0 < start <= end <= len(seq):
        raise ValueError(f"targets [{start}, {end}) must lie inside the sequence of {len(seq)} tokens")
    values = [int(v) for v in seq[:end]]
    # The latest occurrence of each (k-gram, next token) pair ending before position j: one pass, O(n).
    seen: dict[tuple, list[int]] = defaultdict(list)
    classes = []
    for j in range(1, end):
        if j < k:  # fewer than k tokens before it: nothing to match
            if j >= start:
                classes.append(NONE)
            continue
        if j >= start:
            occurrences = seen.get(tuple(values[j - k:j + 1]), ())
            if not occurrences:
                classes.append(NONE)
            else:
                latest = occurrences[-1]  # the copy ending at `latest` (its next token at `latest`)
                classes.append(NEAR if latest - k >= j - short else FAR)
        seen[tuple(values[j - k:j + 1])].append(j)
    return classes
