"""LLM decode kernels on the CPU: bf16/int8 matrix-vector products (`gemv`), GGUF blocks as stored
(`qgemv`), RMSNorm (`norm`), RoPE with the KV-cache write and attention (`attention`), a whole
decoder step in one call (`step`), and token sampling (`sample`, CPU and GPU through
`kernels.common.rowtopk_cuda`). Each module holds its NumPy reference (`*_ref`).

May import: kernels.common.
"""
