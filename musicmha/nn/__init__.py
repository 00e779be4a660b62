"""The network: model config, causal multi-head attention, position schemes, kernels, LoRA."""
