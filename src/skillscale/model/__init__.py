"""The model: a small Llama-style decoder (decoder.py, torch) and its exact parameter and
FLOP counts (shapes.py, no torch, so planning never imports torch)."""
