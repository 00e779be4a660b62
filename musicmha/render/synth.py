"""A small pure-numpy synthesizer: the fallback when FluidSynth or a SoundFont is missing.

It does not try to sound like real instruments, only like *notes*: each General MIDI family (program // 8)
gets a few harmonics and an ADSR envelope with linear ramps (no clicks at note on/off), tracks are panned
across the stereo field, and drum tracks become short noise bursts shaped in the frequency domain (kick
and toms get a falling sine so they read as drums, not hiss). Needs numpy only; deterministic.
"""

from __future__ import annotations

import functools

import numpy as np
import symusic

# family (program // 8) -> (harmonic amplitudes, attack s, decay s, sustain level, release s)
_FAMILIES: dict[int, tuple[tuple[float, ...], float, float, float, float]] = {
    0: ((1.0, 0.5, 0.3, 0.15, 0.08), 0.004, 0.9, 0.2, 0.25),        # piano: struck, decaying
    1: ((1.0, 0.0, 0.35, 0.0, 0.12), 0.002, 0.5, 0.05, 0.3),        # chromatic percussion: bell-like
    2: ((1.0, 0.7, 0.5, 0.35, 0.2, 0.1), 0.01, 0.05, 0.9, 0.06),    # organ: steady
    3: ((1.0, 0.6, 0.35, 0.2, 0.1), 0.003, 0.6, 0.15, 0.2),         # guitar: plucked
    4: ((1.0, 0.45, 0.15), 0.005, 0.3, 0.5, 0.1),                   # bass
    5: ((1.0, 0.5, 0.33, 0.25, 0.2, 0.16, 0.14), 0.08, 0.2, 0.8, 0.3),  # strings: saw-like, slow bow
    6: ((1.0, 0.5, 0.33, 0.25, 0.2), 0.12, 0.2, 0.8, 0.4),          # ensemble / choir
    7: ((1.0, 0.8, 0.6, 0.45, 0.3, 0.2), 0.04, 0.1, 0.8, 0.15),     # brass
    8: ((1.0, 0.05, 0.5, 0.05, 0.3, 0.0, 0.15), 0.03, 0.1, 0.8, 0.1),  # reed: odd harmonics
    9: ((1.0, 0.15, 0.05), 0.05, 0.1, 0.85, 0.15),                  # pipe: nearly pure
    10: ((1.0, 0.5, 0.33, 0.25, 0.2, 0.16), 0.01, 0.1, 0.7, 0.1),   # synth lead
    11: ((1.0, 0.3, 0.1), 0.3, 0.3, 0.8, 0.6),                      # synth pad
}
_DEFAULT_FAMILY = _FAMILIES[0]  # effects, ethnic, percussive, sound effects: a plucked tone is a safe guess
_MIN_RAMP = 0.002               # seconds; no envelope edge is shorter, so nothing clicks
_DRUM_SECONDS = 0.35
_TABLE = 4096     # wavetable length (a power of two: the phase wraps with a bit mask)
_CACHE_SIZE = 512  # rendered notes kept for reuse (a few MB at most for typical note lengths)


def family_voice(program: int) -> tuple[tuple[float, ...], float, float, float, float]:
    """Harmonics and ADSR (attack, decay, sustain, release) used for a General MIDI program."""
    return _FAMILIES.get(int(program) // 8, _DEFAULT_FAMILY)


def _envelope(n_on: int, n_total: int, sr: int, attack: float, decay: float, sustain: float,
              release: float) -> np.ndarray:
    """ADSR with linear segments: held for `n_on` samples, then released to zero by `n_total`."""
    t = np.arange(n_total, dtype=np.float32) / sr
    a, d = max(attack, _MIN_RAMP), max(decay, _MIN_RAMP)
    env = np.where(t < a, t / a, np.maximum(sustain, 1.0 - (1.0 - sustain) * (t - a) / d)).astype(np.float32)
    t_off = n_on / sr
    level = float(env[n_on - 1]) if n_on > 0 else 0.0
    r = max((n_total - n_on) / sr, _MIN_RAMP)
    env[n_on:] = level * np.clip(1.0 - (t[n_on:] - t_off) / r, 0.0, 1.0)
    return env


@functools.lru_cache(maxsize=256)
def _wavetable(program_family: int, n_harmonics: int) -> np.ndarray:
    """One cycle of a family's waveform with at most `n_harmonics` partials, peak-normalized (float32).
    Looking notes up in a table is ~10x cheaper than summing sines per sample."""
    harmonics = family_voice(program_family * 8)[0][:max(n_harmonics, 1)]
    phase = 2.0 * np.pi * np.arange(_TABLE) / _TABLE
    table = sum(amp * np.sin(k * phase) for k, amp in enumerate(harmonics, start=1))
    return (table / np.abs(table).max()).astype(np.float32)


def _tone(pitch: int, n_on: int, sr: int, program: int) -> np.ndarray:
    _, attack, decay, sustain, release = family_voice(program)
    n_total = n_on + max(int(release * sr), int(_MIN_RAMP * sr))
    freq = 440.0 * 2.0 ** ((pitch - 69) / 12.0)
    # Harmonics above Nyquist would alias into odd whistles: high notes get fewer of them.
    table = _wavetable(int(program) // 8, int(sr / 2 // freq))
    index = (np.arange(n_total) * (freq * _TABLE / sr)).astype(np.int64) & (_TABLE - 1)
    return table[index] * _envelope(n_on, n_total, sr, attack, decay, sustain, release)


def _band_noise(n: int, sr: int, low: float, high: float, rng: np.random.Generator) -> np.ndarray:
    """White noise kept between `low` and `high` Hz (soft edges), via one FFT: cheap for short bursts."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    mask = 1.0 / (1.0 + (low / np.maximum(freqs, 1.0)) ** 4) / (1.0 + (freqs / high) ** 4)
    out = np.fft.irfft(spectrum * mask, n).astype(np.float32)
    return out / (np.abs(out).max() + 1e-9)


def drum_sample(pitch: int, sr: int) -> np.ndarray:
    """One hit of a General MIDI percussion key (35..81), loudness 1: a shaped noise burst."""
    rng = np.random.default_rng(pitch)  # same key -> same sound, in every render
    n = int(_DRUM_SECONDS * sr)
    t = np.arange(n, dtype=np.float32) / sr
    if pitch in (35, 36):  # kick: falling sine plus a click of noise
        body = np.sin(2 * np.pi * np.cumsum(50.0 + 110.0 * np.exp(-t / 0.04)) / sr) * np.exp(-t / 0.12)
        hit = body + 0.2 * _band_noise(n, sr, 1000, 5000, rng) * np.exp(-t / 0.005)
    elif pitch in (41, 43, 45, 47, 48, 50):  # toms: lower key, lower tom
        base = 80.0 + (pitch - 41) * 12.0
        hit = np.sin(2 * np.pi * np.cumsum(base * (1 + 0.5 * np.exp(-t / 0.05))) / sr) * np.exp(-t / 0.15)
    elif pitch in (38, 40, 37, 39):  # snare, side stick, clap
        hit = 0.7 * _band_noise(n, sr, 1500, 8000, rng) * np.exp(-t / 0.06)
        hit += 0.4 * np.sin(2 * np.pi * 190.0 * t) * np.exp(-t / 0.04)
    elif pitch in (42, 44, 46):  # hi-hats: closed short, open longer
        hit = _band_noise(n, sr, 6000, 16000, rng) * np.exp(-t / (0.12 if pitch == 46 else 0.03))
    elif pitch in (49, 51, 52, 53, 55, 57, 59):  # cymbals
        hit = 0.8 * _band_noise(n, sr, 4000, 16000, rng) * np.exp(-t / 0.25)
    else:  # everything else (bells, congas, shakers...): a band of noise placed by key number
        center = 300.0 * 2.0 ** ((pitch - 35) / 12.0)
        hit = _band_noise(n, sr, center / 2, center * 2, rng) * np.exp(-t / 0.05)
    fade = np.minimum(1.0, (n - np.arange(n)) / (0.01 * sr))  # close the burst without a click
    attack = np.minimum(1.0, np.arange(n) / (0.001 * sr))
    return (hit * fade * attack).astype(np.float32)


def _pan_gains(index: int, count: int) -> tuple[float, float]:
    """Constant-power pan: tracks spread from left-ish to right-ish, a single track centered."""
    pos = 0.0 if count <= 1 else -0.6 + 1.2 * index / (count - 1)
    angle = (pos + 1.0) * np.pi / 4.0
    return float(np.cos(angle)), float(np.sin(angle))


def synthesize(score: symusic.Score, n_samples: int, sample_rate: int = 44100) -> np.ndarray:
    """Render `score` to float32 stereo of exactly `n_samples` frames (not normalized; may exceed 1)."""
    seconds = score.to("second") if score.ttype != symusic.core.Second else score
    mix = np.zeros((n_samples, 2), dtype=np.float32)
    tracks = [track for track in seconds.tracks if track.note_num()]
    cache: dict[tuple[int, int, int], np.ndarray] = {}
    for index, track in enumerate(tracks):
        left, right = (0.7071, 0.7071) if track.is_drum else _pan_gains(index, len(tracks))
        notes = track.notes.numpy()
        for start, dur, pitch, vel in zip(notes["time"], notes["duration"], notes["pitch"], notes["velocity"]):
            begin = int(round(float(start) * sample_rate))
            if begin >= n_samples:
                continue
            gain = (max(int(vel), 1) / 127.0) ** 1.5 * 0.3  # perceived loudness grows faster than velocity
            if track.is_drum:
                key = (-1, int(pitch), 0)
                if key not in cache:
                    cache[key] = drum_sample(int(pitch), sample_rate)
            else:
                n_on = max(int(round(float(dur) * sample_rate)), int(_MIN_RAMP * sample_rate))
                # A note held past the end of the buffer is heard only up to there: synthesizing all of it
                # (hours, for a corrupt file's huge delta time) would take minutes and gigabytes.
                n_on = min(n_on, n_samples - begin)
                # Quantized music repeats (pitch, length) pairs a lot: synthesize each once per family.
                key = (int(track.program) // 8, int(pitch), n_on)
                if key not in cache:
                    if len(cache) >= _CACHE_SIZE:
                        cache.clear()
                    cache[key] = _tone(int(pitch), n_on, sample_rate, track.program)
            sound = cache[key]
            sound = sound[: n_samples - begin] * gain
            mix[begin:begin + len(sound), 0] += sound * left
            mix[begin:begin + len(sound), 1] += sound * right
    return mix
