"""Errors that reach users as one line: the CLI and the app print `str(error)` and carry on."""

from __future__ import annotations


class MusicmhaError(Exception):
    """Base class for every error whose message is meant for the user (no traceback needed)."""


class ConfigError(MusicmhaError, ValueError):
    """A configuration value is missing, unknown or impossible."""


class CheckpointError(MusicmhaError):
    """A checkpoint folder or one of its files is missing, malformed or inconsistent."""


class MidiError(MusicmhaError):
    """A MIDI file (or bytes) cannot be used: unreadable, truncated, empty, too large or without notes."""


class TrainingError(MusicmhaError):
    """Training cannot go on: non-finite loss, out of memory, a full disk, an unusable run folder."""
