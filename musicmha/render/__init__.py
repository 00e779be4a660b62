"""MIDI to sound and pictures: synthesizers, audio files, piano rolls."""
