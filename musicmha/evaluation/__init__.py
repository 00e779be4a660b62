"""Measuring models and music: NLL evaluation, n-gram baselines, music statistics."""
