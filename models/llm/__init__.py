"""Decoder LLMs ("industry brains"): the architectures and presets (`config`), FLOP formulas
(`flops`), the torch model (`model`), its linear layers for bf16, int8 and GGUF blocks (`linear`),
the CPU decode step through the Numba kernels (`cpu_step`), checkpoints (`checkpoint` for Hugging
Face folders, `gguf` to read GGUF files, `gguf_write` to write them) and tokenizers (`tokenizer`).

Importing this package loads nothing; `config`, `flops` and `tokenizer` stay free of torch.

May import: kernels.llm, kernels.common, models.errors.
"""
