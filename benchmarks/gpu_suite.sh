#!/usr/bin/env bash
# The GPU measurements of docs/benchmarks.md in one call on the GPU machine (JAX only; see
# ../shared/gpu/README.md): from the project root there,
#   bash .whl/run bash benchmarks/gpu_suite.sh [first|second|all]
# "first": fused-attention check, GPT-2-small training and generation at sequence 1024,
# the GPU test run; "second": the attention check, sequence 1024 and 512 training, the
# recurrent layers' tests and the overhead benchmark; "all": first, then 512 and overhead. Each step
# runs under its own timeout and tees its lines into $OUT (or /tmp).
# "fp8": native FP8 training (issue 18): the FP8 tests (HLO check included) and
# benchmarks/fp8.py (GPT-2-small and -medium step times, ours bf16 vs native FP8 vs Keras'
# quantize("float8"), and a 60M-parameter People's Daily loss curve); needs an H100/H200.
part=${1:-all}
out=${OUT:-/tmp}
export XLA_PYTHON_CLIENT_PREALLOCATE=false
gpt2="--backend jax --dtype-policy mixed_bfloat16 --vocab 50257 --layers 12 --heads 12 --hidden 768"
python3 -c 'import jax, keras; print("jax", jax.__version__, "keras", keras.__version__, jax.devices())'
if [ "$part" != second ] && [ "$part" != fp8 ]; then
  timeout 100 python3 benchmarks/gpu_attention.py 2>&1 | tail -4 | tee "$out/attention.txt"
  timeout 330 python3 benchmarks/causal_lm.py $gpt2 --seq 1024 --batch 16 --rounds 3 --steps 2 --memory \
    2>&1 | tail -4 | tee "$out/causal_lm_1024.txt"
  timeout 200 python3 -m pytest -q -n 8 -p no:cacheprovider tests/ops tests/layers tests/models \
    tests/analysis tests/test_losses.py tests/test_precision.py > "$out/pytest.txt" 2>&1
  tail -25 "$out/pytest.txt"
fi
if [ "$part" != first ] && [ "$part" != fp8 ]; then
  [ "$part" = second ] && timeout 70 python3 benchmarks/gpu_attention.py 2>&1 | tail -5 \
    | tee "$out/attention.txt"
  [ "$part" = second ] && timeout 140 python3 benchmarks/causal_lm.py $gpt2 --seq 1024 \
    --batch 16 --rounds 3 --steps 3 --no-generate 2>&1 | tail -2 | tee "$out/causal_lm_1024.txt"
  [ "$part" = second ] && timeout 50 python3 -m pytest -q -n 4 -p no:cacheprovider \
    tests/layers/test_lstm.py tests/layers/test_gru.py 2>&1 | tail -3 | tee "$out/pytest_rnn.txt"
  timeout 120 python3 benchmarks/causal_lm.py $gpt2 --seq 512 --batch 32 --rounds 3 --steps 3 \
    --no-generate 2>&1 | tail -2 | tee "$out/causal_lm_512.txt"
  timeout 60 python3 benchmarks/overhead.py --backend jax 2>&1 | tail -3 | tee "$out/overhead.txt"
fi
if [ "$part" = fp8 ]; then
  timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_fp8_native.py 2>&1 | tail -5 \
    | tee "$out/pytest_fp8.txt"
  timeout 300 python3 benchmarks/fp8.py --mode native --no-quality --out-dir "$out" 2>&1 \
    | tail -8 | tee "$out/fp8_speed.txt"
  timeout 300 python3 benchmarks/fp8.py --mode native --no-speed --quality-steps 400 \
    --out-dir "$out" 2>&1 | tail -6 | tee "$out/fp8_quality.txt"
fi
