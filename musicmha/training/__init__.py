"""`musicmha train`: its config, the loop, device/distribution setup, the run folder."""
