"""Sampling from a model: the sampler, the token grammar and controls, continuation, infill."""
