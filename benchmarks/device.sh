#!/bin/sh
# The benchmarks on a lent GPU (the `device` tool's nvidia-h200: Python 3.12 with torch and
# transformers, no network, nothing of ours). Not yet run on one: no GPU was lent to the work
# that wrote it. Prepare here, once, from the repository root:
#
#   echo /.whl/ >> .git/info/exclude; echo /.bench-data/ >> .git/info/exclude
#   mkdir -p .bench-data && cp ../shared/data/wikitext-2-raw/wiki.test.raw .bench-data/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl transformer-lens==4.3.0 transformers==5.24.0 beartype==0.23.1 typeguard==4.6.1 \
#       fancy-einsum datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 syrupy==7.0.2 huggingface-hub==1.33.0
#
# (transformers-stream-generator has no wheel; TransformerLens imports it only for Qwen's
# generation.) Then run, with carry [".whl", ".bench-data"] and timeout_s 480:
#
#   sh benchmarks/device.sh
#
# It writes $OUT/gpu.json (pytest-benchmark) and $OUT/log; each step's exit status is in the log,
# and the script exits non-zero when one failed.
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 DPHI_BENCH_TEXT="$PWD/.bench-data/wiki.test.raw"
failed=0
step() {  # step NAME CMD...: run CMD into the log, record its status
    echo "== $1" >>"$OUT/log"; shift
    "$@" >>"$OUT/log" 2>&1; rc=$?
    echo "== exit $rc" >>"$OUT/log"; [ $rc -eq 0 ] || failed=1
}
step gpu nvidia-smi -L
step imports python3 -c "import torch, transformer_lens; print(torch.__version__, torch.cuda.get_device_name())"
# capture (held and streamed) and the tables against bare forwards, on the GPU, auto batch (8)
step pipeline env DPHI_BENCH_DEVICE=cuda python3 -m pytest benchmarks/test_pipeline.py -p no:cacheprovider -q \
    -k "capture or tables" --benchmark-json "$OUT/gpu.json" --benchmark-columns=min,max,rounds
step ratios python3 benchmarks/ratios.py "$OUT/gpu.json"
# --dtype: bfloat16 vs float32 capture and 7D passes on the GPU, and what bfloat16 costs in the tables
step dtype env DPHI_BENCH_DEVICE=cuda python3 -m pytest benchmarks/test_pipeline.py -p no:cacheprovider -q \
    -k "bfloat16" --benchmark-json "$OUT/gpu-dtype.json" --benchmark-columns=min,max,rounds
step ratios-dtype python3 benchmarks/ratios.py "$OUT/gpu-dtype.json"
for dtype in float32 bfloat16 float16; do
    step "tables-$dtype" python3 -m lib tables --model tiny-wikitext --device cuda --dataset "$DPHI_BENCH_TEXT" \
        --dtype "$dtype" --json "$OUT/tables-$dtype.json" --cache-dir /tmp/dphi-cache
done
step dtype-cost python3 benchmarks/dtype_cost.py "$OUT/tables-float32.json" "$OUT/tables-bfloat16.json" \
    "$OUT/tables-float16.json"
# torchrun with the nccl backend for CUDA tensors (one rank: one GPU here)
step torchrun python3 -m torch.distributed.run --standalone --nproc-per-node 1 -m lib tables --model tiny-wikitext \
    --device cuda --dataset "$DPHI_BENCH_TEXT" --n-tokens 30000 --ks 8 --cache-dir /tmp/dphi-cache
cat "$OUT/log"
exit $failed
