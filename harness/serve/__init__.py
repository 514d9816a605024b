"""The served-endpoint benchmark: a running OpenAI-compatible server (vLLM, SGLang, llama.cpp,
transformers serve) under load, measured from the client (client.py: one streamed request; load.py:
load shapes and the window; metrics.py: TTFT, ITL, TPOT, E2E, goodput; bench.py: the request and
the run).

May import: harness.errors, harness.inputs, harness.machine, harness.measure, harness.results, harness.llm.
"""
