"""Tokenization: the only module that imports miditok.

`MusicTokenizer` wraps a miditok tokenizer in one token stream (REMI with Program tokens by default, so
multi-track pieces and drums survive), saves/loads `tokenizer.json` offline, and optionally learns BPE.
Everything else in musicmha sees plain lists of ids and `symusic.Score` objects, and asks this wrapper what
it needs to know about the vocabulary (the bar token, the grammar's spec, the error ratio, the pitch range):
nothing reaches through to the miditok object.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import symusic

from musicmha.errors import ConfigError, MusicmhaError
from musicmha.files import TOKENIZER_FILE
from musicmha.data.fim import FIM_SPECIAL_TOKENS, MAX_FILL_BARS, MIDDLE, PREFIX, SUFFIX, FimTokens
from musicmha.data.conditioning import ConditionTokens
from musicmha.data.styles import density_tokens, style_tokens
from musicmha.data.vocabulary import GrammarSpec

log = logging.getLogger(__name__)

# Token streams are stored as uint16 shards, so ids must stay below 2**16.
MAX_VOCAB = 65_535
BAR_TOKEN = "Bar_None"  # miditok's name for a bar line, in every token kind that has bars
_KINDS = ("REMI", "TSD", "MIDILike", "Structured")


def _import_miditok():
    """Import miditok without torch: its __init__ imports pytorch_data (torch: ~1 s, ~300 MB per process) and
    skips it on ImportError, and musicmha never uses it, so `prepare` and its workers never load torch."""
    if "miditok" not in sys.modules and "torch" not in sys.modules:
        sys.modules.setdefault("miditok.pytorch_data", None)
    import miditok

    return miditok


def program_names() -> list[str]:
    """The 128 General MIDI instrument names, by program number (miditok's table)."""
    from miditok.constants import MIDI_INSTRUMENTS

    return [entry["name"] for entry in MIDI_INSTRUMENTS]


def _default_time_signatures() -> dict[int, list[int]]:
    # miditok's default lacks x/2, which Renaissance pieces (Palestrina, Josquin) are written in.
    return {2: [1, 2, 3, 4, 6, 8], 4: [1, 2, 3, 4, 5, 6, 7, 8], 8: [2, 3, 4, 5, 6, 7, 9, 12]}


@dataclass
class TokenizerConfig:
    """What the token vocabulary can express. Defaults: REMI + programs in one stream, tempos, time
    signatures, 32 velocity bins, 1/8-beat onsets for short notes, BOS/EOS/PAD and the FIM sentinels."""

    kind: str = "REMI"
    pitch_range: tuple[int, int] = (21, 109)
    # Beat ranges -> subdivisions per beat: 1/8 beat up to 4 beats, 1/4 beat up to 12 beats.
    beat_res: dict[tuple[int, int], int] = field(default_factory=lambda: {(0, 4): 8, (4, 12): 4})
    num_velocities: int = 32
    use_programs: bool = True
    use_tempos: bool = True
    num_tempos: int = 32
    tempo_range: tuple[int, int] = (40, 250)
    use_time_signatures: bool = True
    time_signature_range: dict[int, list[int]] = field(default_factory=_default_time_signatures)
    use_rests: bool = False
    use_chords: bool = False
    # The FIM sentinels let the model fill bars in the middle of a piece (musicmha/data/fim.py); a tokenizer
    # without them (the first shipped model's) still continues, it just cannot infill.
    # Style and density tokens (musicmha/data/styles.py): musicmha-1k's tokenizer has none.
    special_tokens: tuple[str, ...] = ("PAD", "BOS", "EOS", *FIM_SPECIAL_TOKENS, *style_tokens(), *density_tokens())

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigError(f"tokenizer kind must be one of {', '.join(_KINDS)}, got {self.kind!r}")
        self.pitch_range = tuple(self.pitch_range)
        self.tempo_range = tuple(self.tempo_range)
        self.special_tokens = tuple(self.special_tokens)
        # JSON turns tuple keys into strings; accept "0_4" / "(0, 4)" forms back.
        self.beat_res = {_beat_range(k): int(v) for k, v in self.beat_res.items()}
        self.time_signature_range = {int(k): [int(x) for x in v] for k, v in self.time_signature_range.items()}
        lo, hi = self.pitch_range
        if not (0 <= lo < hi <= 128):
            raise ConfigError(f"pitch_range must satisfy 0 <= low < high <= 128, got {self.pitch_range}")
        if not 1 <= self.num_velocities <= 127:
            raise ConfigError(f"num_velocities must be in 1..127, got {self.num_velocities}")
        if self.use_tempos and (self.num_tempos < 1 or not 0 < self.tempo_range[0] < self.tempo_range[1]):
            raise ConfigError(f"bad tempo settings: {self.num_tempos} tempos in {self.tempo_range}")
        if not self.beat_res or any(a >= b or r < 1 for (a, b), r in self.beat_res.items()):
            raise ConfigError(f"beat_res needs ranges (start < end) with resolutions >= 1, got {self.beat_res}")
        for needed in ("PAD", "BOS", "EOS"):
            if needed not in self.special_tokens:
                raise ConfigError(f"special_tokens must include {needed}, got {list(self.special_tokens)}")
        if not self.use_programs:
            # One token stream per piece is what the dataset and the model assume.
            raise ConfigError("use_programs=False (one stream per track) is not supported")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["beat_res"] = {f"{a}_{b}": r for (a, b), r in self.beat_res.items()}
        return d

    def to_miditok(self):
        miditok = _import_miditok()

        return miditok.TokenizerConfig(
            pitch_range=self.pitch_range, beat_res=dict(self.beat_res), num_velocities=self.num_velocities,
            special_tokens=list(self.special_tokens), use_programs=True, one_token_stream_for_programs=True,
            use_tempos=self.use_tempos, num_tempos=self.num_tempos, tempo_range=self.tempo_range,
            use_time_signatures=self.use_time_signatures, time_signature_range=self.time_signature_range,
            use_rests=self.use_rests, use_chords=self.use_chords,
        )


def _beat_range(key) -> tuple[int, int]:
    if isinstance(key, str):
        parts = key.strip("()[] ").replace(",", "_").replace(" ", "").split("_")
        key = [p for p in parts if p]
    a, b = key
    return int(a), int(b)


class MusicTokenizer:
    """A one-stream miditok tokenizer with the small surface the rest of musicmha needs."""

    def __init__(self, tokenizer, config: TokenizerConfig | None = None) -> None:
        if not getattr(tokenizer, "one_token_stream", False):
            raise ConfigError("the tokenizer must produce one token stream (use_programs=True)")
        self._tok = tokenizer
        self.config = config

    @classmethod
    def from_config(cls, cfg: TokenizerConfig | None = None) -> MusicTokenizer:
        miditok = _import_miditok()

        cfg = cfg or TokenizerConfig()
        return cls(getattr(miditok, cfg.kind)(cfg.to_miditok()), cfg)

    @classmethod
    def load(cls, path: str | Path) -> MusicTokenizer:
        """Load `path/tokenizer.json` or the json file itself, without network access."""
        miditok = _import_miditok()

        path = Path(path)
        file = path / TOKENIZER_FILE if path.is_dir() else path
        if not file.is_file():
            raise MusicmhaError(f"no tokenizer file at {file}")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise MusicmhaError(f"cannot load tokenizer {file}: not valid JSON ({error})") from None
        kind = data.get("tokenization", "REMI") if isinstance(data, dict) else None
        if kind not in _KINDS:  # checked here: miditok's own messages for these are cryptic
            what = f"unknown tokenization {kind!r}" if isinstance(data, dict) else "not a JSON object"
            raise MusicmhaError(f"cannot load tokenizer {file}: {what} (expected one of {', '.join(_KINDS)})")
        try:
            return cls(getattr(miditok, kind)(params=file))
        except Exception as error:  # ours (one token stream needed) or miditok's: name the file either way
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise MusicmhaError(f"cannot load tokenizer {file}: {reason}") from None

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._tok.save(folder)  # miditok writes folder/tokenizer.json
        return folder / TOKENIZER_FILE

    @property
    def vocab_size(self) -> int:
        return len(self._tok)  # includes BPE tokens once trained

    @property
    def pad_id(self) -> int:
        return self._tok.pad_token_id

    @property
    def bos_id(self) -> int:
        return self._tok["BOS_None"]

    @property
    def eos_id(self) -> int:
        return self._tok["EOS_None"]

    def same_vocabulary(self, other: MusicTokenizer) -> bool:
        """Whether ids mean the same tokens in both (same vocabulary, BPE merges and token kind)."""
        mine, theirs = self._tok, other._tok
        return (type(mine) is type(theirs) and mine.vocab == theirs.vocab and len(mine) == len(theirs)
                and mine.is_trained == theirs.is_trained
                and (not mine.is_trained or mine._model.to_str() == theirs._model.to_str()))

    def rows_from(self, base: MusicTokenizer) -> dict[int, int] | None:
        """new id -> base id of each of `base`'s tokens, by name, when this vocabulary extends base's; else None."""
        if type(self._tok) is not type(base._tok) or self.is_bpe or base.is_bpe:
            return None
        mine, theirs = self._tok.vocab, base._tok.vocab
        if any(name not in mine for name in theirs):
            return None
        return {mine[name]: index for name, index in theirs.items()}

    @property
    def bar_id(self) -> int | None:
        """The bar line's id; None for a token kind without bars."""
        return self._tok.vocab.get(BAR_TOKEN)

    @property
    def vocab(self) -> dict[str, int]:
        """The base vocabulary, token name ("Pitch_60") -> id (a copy; BPE tokens are not in it)."""
        return dict(self._tok.vocab)

    def token_name(self, token_id: int) -> str:
        """The name of a base-vocabulary id, e.g. "Bar_None" (for a BPE token: its byte string)."""
        return self._tok[int(token_id)]

    @property
    def pitch_range(self) -> tuple[int, int]:
        """The MIDI pitches the vocabulary can write, [low, high) (high excluded, as miditok counts)."""
        low, high = self._tok.config.pitch_range
        return int(low), int(high)

    @property
    def ticks_per_quarter(self) -> int:
        """The time base of the scores `decode` returns."""
        return int(self._tok.time_division)

    def grammar_spec(self) -> GrammarSpec:
        """What musicmha.generation.grammar needs to follow this vocabulary (its type successions, specials,
        position resolution), so the grammar itself never imports miditok."""
        tok = self._tok
        tokens = [""] * len(tok.vocab)
        for name, index in tok.vocab.items():
            tokens[index] = name
        return GrammarSpec(tokens=tokens, graph={k: set(v) for k, v in tok.tokens_types_graph.items()},
                           bos_id=self.bos_id, eos_id=self.eos_id, pad_id=self.pad_id,
                           positions_per_beat=tok.config.max_num_pos_per_beat,
                           remove_duplicated_notes=bool(getattr(tok.config, "remove_duplicated_notes", False)),
                           special_ids=frozenset(tok.special_tokens_ids), bar_id=self.bar_id)

    def token_error_ratio(self, ids: Sequence[int]) -> float:
        """miditok's error measure (wrong type successions, time going back, duplicated notes) per token;
        BOS/EOS/PAD are left out. 0.0 for a grammar-constrained sample."""
        specials = {self.bos_id, self.eos_id, self.pad_id}
        clean = [int(i) for i in ids if int(i) not in specials]
        return float(self._tok.tokens_errors(clean)) if clean else 0.0

    @property
    def fim_tokens(self) -> FimTokens | None:
        """The fill-in-the-middle sentinels, or None for a tokenizer made without them."""
        vocab = self._tok.vocab
        names = (PREFIX, SUFFIX, MIDDLE, *(f"FIM_Bars{n}" for n in range(1, MAX_FILL_BARS + 1)))
        if self.bar_id is None or any(name not in vocab for name in names):
            return None
        prefix, suffix, middle, *bars = (vocab[name] for name in names)
        return FimTokens(prefix=prefix, suffix=suffix, middle=middle, bars=tuple(bars), bar=self.bar_id,
                         bos=self.bos_id, eos=self.eos_id)

    @functools.cached_property  # read every training step: built once (train_bpe drops it)
    def condition_tokens(self) -> ConditionTokens | None:
        """Style and density tokens; None without them or with BPE (its tokens are not single notes)."""
        if self.is_bpe or self.bar_id is None:
            return None
        return ConditionTokens.from_vocab(self._tok.vocab, bar_id=self.bar_id, bos_id=self.bos_id)

    @property
    def is_bpe(self) -> bool:
        return bool(self._tok.is_trained)

    def encode(self, score: symusic.Score | str | Path) -> list[int]:
        """Token ids of a Score or MIDI file (no BOS/EOS). Paths go through `load_midi`, so bad files raise
        MidiError."""
        if not isinstance(score, symusic.Score):
            from musicmha.data.midi_io import load_midi

            score = load_midi(score)
        return list(self._tok.encode(score).ids)

    def decode(self, ids: Sequence[int]) -> symusic.Score:
        """A Score (ticks, tpq = the tokenizer's resolution) from ids; special tokens (BOS/EOS/PAD, the FIM
        sentinels, style and density) are dropped."""
        specials = {self.bos_id, self.eos_id, self.pad_id, *self._tok.special_tokens_ids}
        clean = [int(i) for i in ids if int(i) not in specials]
        if not clean:  # e.g. BOS and a style alone, from nothing: miditok cannot decode an empty sequence
            return symusic.Score(self.ticks_per_quarter)
        return self._tok.decode(clean)

    def train_bpe(self, files: Sequence[str | Path], vocab_size: int) -> None:
        """Learn BPE merges on `files` until the vocabulary has `vocab_size` tokens."""
        if not self.vocab_size < vocab_size <= MAX_VOCAB:
            raise ConfigError(f"BPE vocab size must be in {self.vocab_size + 1}..{MAX_VOCAB}, got {vocab_size}")
        if not files:
            raise MusicmhaError("no files to train BPE on")
        log.info("training BPE to %d tokens on %d files", vocab_size, len(files))
        self.__dict__.pop("condition_tokens", None)  # BPE has no conditioning tokens
        self._tok.train(vocab_size=vocab_size, model="BPE", files_paths=[Path(f) for f in files])
