#!/usr/bin/env bash
# Issue #16's GPU checks in one short run on a CUDA machine (about 6 minutes on one GPU): the
# pretraining tests that need a GPU, the training throughput on the GPU, and a short pretraining
# run. It needs only what a stock PyTorch-with-CUDA image has (torch, numpy, h5py, pyyaml, tqdm,
# pytest): the repository runs from its folder, nothing is installed.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # default: $OUT, else /tmp/gpu-check
#
# The corpus is synthetic (Zipf-distributed words, CoNLL-like sentence lengths), so that the check
# needs no data beside the repository; tokens/s depends on sentence lengths and vocabulary size, not
# on the words. Results go to OUT_DIR: gpu.txt, tests.txt,
# pretrain_speed_cuda_{3000,24000}.md, pretrain_gpu.txt, pretrain_gpu_log.csv.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/gpu-check}}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $py -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0), 'bf16', torch.cuda.is_bf16_supported())"
} 2>&1 | tee "$out/gpu.txt"

echo "== tests (tests/test_pretrain_device.py: GPU fp32 = CPU, bf16/fp16, resume, export)"
timeout 240 $py -m pytest -q -p no:cacheprovider tests/test_pretrain_device.py 2>&1 | tee "$out/tests.txt" || status=1

corpus=$(mktemp -d)
$py - "$corpus" <<'EOF'
import random, sys
rng = random.Random(0)
words = [f"w{i}" for i in range(60000)]
weights = [1 / (i + 1) for i in range(len(words))]  # Zipf
for name, n in (("train.txt", 60000), ("heldout.txt", 2000)):
    with open(f"{sys.argv[1]}/{name}", "w") as f:
        for _ in range(n):
            length = min(60, max(3, int(rng.gauss(22, 10))))
            f.write(" ".join(rng.choices(words, weights, k=length)) + "\n")
EOF

echo "== throughput on the GPU: ours vs nn.LSTM(proj_size) (cuDNN), the shipped default's config,"
echo "   at its CPU batch (3,000 padded tokens) and at 8x that (the step's kernel launches do not grow with the batch)"
for tokens in 3000 24000; do
  timeout 150 $py benchmarks/pretrain_speed.py --device cuda --config configs/bilm_strong.yaml --batch-tokens $tokens \
      --corpus "$corpus/train.txt" --precisions fp32,bf16,fp16 --batches 12 --rounds 3 --no-write \
      2>&1 | tee "$out/pretrain_speed_cuda_$tokens.md" || status=1
done

echo "== a short pretraining run on the GPU (bf16, 2 minutes)"
timeout 200 $py -m tasks.cli pretrain --config configs/bilm_strong.yaml --device cuda --precision bf16 \
    --train "$corpus/train.txt" --heldout "$corpus/heldout.txt" --out "$corpus/run" --quiet \
    --set vocab=null --set max_minutes=2 --set eval_every=200 --set checkpoint_every=200 \
    2>&1 | tee "$out/pretrain_gpu.txt" || status=1
cp "$corpus/run/log.csv" "$out/pretrain_gpu_log.csv" 2>/dev/null
exit $status
