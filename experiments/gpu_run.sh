#!/bin/bash
# Issue 7's GPU measurements in one device call, most important first; every section has its own time limit and
# writes its log and JSON to $OUT as it goes, so a section that runs long costs only itself.
#
# Here, before the call (the data, the anchor scripts and the airbench package travel in the ignored .data/
# folder, ~29 MB; airbench 0.1.8 is the PyPI form of airbench94, run unmodified, as ../shared/anchors/RESULTS.md
# section C describes):
#   mkdir -p .data && cp -r ../shared/data/. .data/ && cp -r ../shared/anchors .data/anchors
#   pip download --no-deps airbench==0.1.8 -d /tmp/ab && tar xzf /tmp/ab/airbench-0.1.8.tar.gz -C .data
# The call (device tool): command "bash experiments/gpu_run.sh", carry [".data"], timeout_s 600.
# Smoke test on any machine (tiny synthetic runs, no GPU needed; --quick everywhere):
#   GPU_RUN_QUICK=1 OUT=/tmp/gpu_run bash experiments/gpu_run.sh
#
# No install is needed on the device image (it has jax, flax, optax, chex, tqdm, pillow and a CUDA torch):
# cnnjax runs from the checkout through PYTHONPATH. Sections (limits in seconds; 670 s in all, so the call's 600 s
# cuts section 6 short if the others all use their full limits):
#   1. GPU and versions                                                              5
#   2. MNIST speedrun (cnnjax.train.recipes.mnist_speedrun through fit), f32, 3 seeds + 1 warm-up   90
#   2b. the same in bf16, 3 seeds                                                   50
#   3. CIFAR-10 speedrun (cnnjax.train.recipes.cifar10_speedrun through fit, 11 epochs), bf16,
#      5 seeds + 1 warm-up                                                         130
#   3b. airbench94 itself (PyPI 0.1.8, unmodified) on this GPU and data: 1 warm-up + 5 runs   40 + 50
#   3c. the CIFAR-10 speedrun with the epochs that fit in 3b's time (bf16), 5 seeds + 1 warm-up   70
#   4. steady-state images/s: cnnjax scan (data on device) vs torch reduce-overhead,
#      mnist_cnn, mnist_cnn2, cifar10_cnn, resnet20, flax_plain; matmul ceiling    130
#      (the ceiling first, each row at most 45 s, the table and JSON rewritten after every row)
#   5. the scan anchor (shared anchors' mnist_jax.py, flax_plain) side by side      35
#   6. CIFAR-10 speedrun whitened from the first 5000 training images (airbench94's; all birds on this copy),
#      bf16, section 3's 5 seeds + 1 warm-up                                                 70
#   7. sections 3, 3c and 6 against airbench94's runs (Welch's t; experiments/cifar_seeds.py)  <1
# Section 6 comes last because it is a question, not a target row: the recipe now whitens (and normalises) with
# 5000 images spread over the training set (SpeedrunSettings.whiten_sample="spread"), since the JPEG copy is sorted
# by class and its first 5000 images, which airbench94 and this trainer used before, are all birds. Run with the
# same seeds, it says what that change is worth on the GPU. It runs section 3's loop form. If the earlier
# sections use their full limits, the call's 600 s cuts it short; its JSON is rewritten after every seed, so it
# keeps the seeds it finished. (Until 2026-12-02 section 6 ran float16 compute, as airbench94 does: on the CPU 4
# float16 seeds gave the accuracy of 5 bfloat16 ones, 90.54%; `--dtype float16` still runs it.)
# Every speedrun section starts with an untimed warm-up run. The recipes run through fit, which compiles its step in
# every run (there is no process-wide cache of programs any more): the warm-up fills JAX's persistent compilation
# cache (JAX_COMPILATION_CACHE_DIR below), which serves the seeds after it, and pays the device's one-time costs
# (airbench94's 2.34 s is the mean of its runs 1-24, leaving out its cold run 0). "train s" is fit's wall time,
# compilation (or the cache's load) in the first epoch included; "epoch s" is the mean of the later epochs.
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
# The persistent cache serves what an earlier run or section compiled (on the CPU a --quick seed of the old trainer
# compiled in 11.7 s, 2.8 s from the cache).
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/cnnjax_jax_cache}
OUT=${OUT:?set OUT to a folder for the logs}
mkdir -p "$OUT"
DATA=${GPU_RUN_DATA:-.data}
PY=${PYTHON:-python3}
if [ -n "$GPU_RUN_QUICK" ]; then Q="--quick"; else Q=""; fi
section() { echo; echo "=== $1 ($(date -u +%H:%M:%S))"; }
# cifar_run NAME LIMIT [OPTIONS...]: cifar_speedrun.py on seeds 0-4 in bf16 after one warm-up run (with --quick,
# one synthetic seed), plus OPTIONS, within LIMIT seconds; writes $OUT/NAME.json and NAME.log.
cifar_run() {
  local name=$1 limit=$2; shift 2
  if [ -n "$Q" ]; then args="--quick --seeds 0 --warmup 1 $*"; else
    args="--data-dir $DATA --seeds 0 1 2 3 4 --warmup 1 --dtype bfloat16 --cache /tmp/cifar10.npz $*"; fi
  timeout "$limit" $PY experiments/cifar_speedrun.py $args --out "$OUT/$name.json" 2>&1 \
    | grep --line-buffered -v -i warn | tee "$OUT/$name.log"
}

section "1. GPU and versions"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit,temperature.gpu --format=csv \
  2>&1 | tee "$OUT/gpu.txt"
$PY -c "import sys, jax, flax, optax; print(sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__,
'optax', optax.__version__, jax.devices())" 2>&1 | tee -a "$OUT/gpu.txt"

section "2. MNIST speedrun"
# float32 (TF32 on the GPU) and, in 2b, bfloat16: on the CPU both reach 99.3% (SPEED.md, "MNIST speedrun").
if [ -n "$Q" ]; then args="--quick --seeds 0 --warmup 1"; else args="--data-dir $DATA --seeds 0 1 2 --warmup 1"; fi
timeout 90 $PY experiments/mnist_speedrun.py $args --out "$OUT/mnist_speedrun.json" 2>&1 \
  | grep --line-buffered -v -i warn | tee "$OUT/mnist_speedrun.log"

section "2b. MNIST speedrun, bfloat16 (on the CPU 99.35 +- 0.02%, float32 99.34 +- 0.03%, 5 seeds each)"
if [ -n "$Q" ]; then args="--quick --seeds 0 --warmup 1 --dtype bfloat16"; else
  args="--data-dir $DATA --seeds 0 1 2 --warmup 1 --dtype bfloat16"; fi
timeout 50 $PY experiments/mnist_speedrun.py $args --out "$OUT/mnist_speedrun_bf16.json" 2>&1 \
  | grep --line-buffered -v -i warn | tee "$OUT/mnist_speedrun_bf16.log"

section "3. CIFAR-10 speedrun recipe through fit (bf16, 11 epochs; on the CPU the old trainer at 11 epochs: 90.85 +- 0.13% with TTA, 5 seeds)"
cifar_run cifar_speedrun 130

section "3b. airbench94 (PyPI airbench 0.1.8, unmodified) on this GPU, the same JPEG copy"
# Its own timer and log. warmup94() trains one step and prints no result row, so `cifar_airbench.py parse` sees
# runs 1-5; hold section 3's "total s" against its time_mean_excl_run0, the mean of runs 2-5 (run 1 may still pay
# first-execution costs of the evaluation, which the warm-up skipped), on this same GPU.
if [ -d "$DATA/airbench-0.1.8" ] && [ -d "$DATA/anchors" ] && [ -z "$Q" ]; then
  ABW=$(mktemp -d); DATA_ABS="$(cd "$DATA" && pwd)"
  (cd "$DATA/anchors" && SHARED_DATA="$DATA_ABS" timeout 40 $PY cifar_airbench.py prep "$ABW") 2>&1 \
    | tee "$OUT/airbench94_prep.log"
  (cd "$ABW" && PYTHONPATH="$DATA_ABS/airbench-0.1.8" timeout 50 $PY -c "import airbench
airbench.warmup94()
for run in range(1, 6):
    airbench.train94(run=run)") 2>&1 | grep --line-buffered -v -i warn | tee "$OUT/airbench94.log"
  $PY "$DATA/anchors/cifar_airbench.py" parse "$OUT/airbench94.log" 2>&1 | tee "$OUT/airbench94.json"
else
  echo "skipped (quick run, or no $DATA/airbench-0.1.8 / $DATA/anchors: see the copy step above)" \
    | tee "$OUT/airbench94.log"
fi

section "3c. CIFAR-10 speedrun, bf16, as many epochs as fit in airbench94's time (section 3's 5 seeds)"
# On the CPU, 9 runs of the old trainer's 9.9-epoch recipe (seeds 0-4 in bf16, 0-3 in fp16; first-5000 whitening)
# averaged 90.54% with TTA, 0.12 points short of the 90.66% target; 11 epochs reached it.
# More epochs is the lever sure to add accuracy, at a cost in time in proportion: cifar_epoch_budget.py reads
# sections 3 and 3b and picks the most whole epochs that fit in 0.97x airbench94's time (at most 14), or 11 where
# none are to spare (then the row repeats section 3's setting: the time target is not met at 11 epochs).
EP=$($PY experiments/cifar_epoch_budget.py "$OUT/cifar_speedrun.json" "$OUT/airbench94.json" \
  2> >(tee "$OUT/cifar_epoch_budget.txt" >&2))
# the loop form section 3 ran (fit's loop="auto": a fixed rule, the scan on a GPU)
LOOP=$($PY -c "import json, sys; print(json.load(open(sys.argv[1]))['runs'][0]['loop'])" "$OUT/cifar_speedrun.json" \
  2>/dev/null || echo scan)
echo "sections 3c and 6 train with loop=$LOOP"
if [ -n "$Q" ]; then EP=1; fi
cifar_run cifar_speedrun_more_epochs 70 --epochs "${EP:-11}" --loop "$LOOP"

section "4. steady-state images/s"
rows=""
for m in mnist_cnn mnist_cnn2 cifar10_cnn resnet20; do rows="$rows cnnjax:$m:scan390-dev torch:$m:compile-ro"; done
rows="$rows cnnjax:flax_plain:scan468-dev"
if [ -n "$Q" ]; then args="--quick --rows cnnjax:mnist_cnn:scan2-dev cnnjax:mnist_cnn:step"; else
  args="--data-dir $DATA --cache-dir /tmp --rows $rows --steps 390 --repeats 3 --warmup 3 --ceiling --row-timeout 45"; fi
# (--cache-dir /tmp reads section 3's decoded /tmp/cifar10.npz instead of decoding the JPEGs again)
timeout 130 $PY experiments/bench_speed.py $args --out "$OUT/steady" 2>&1 | grep --line-buffered -v -i warn \
  | tee "$OUT/steady.log"

section "5. the scan anchor"
if [ -d "$DATA/anchors" ] && [ -z "$Q" ]; then
  (cd "$DATA/anchors" && SHARED_DATA="$(cd .. && pwd)" timeout 35 $PY mnist_jax.py --epochs 6 \
    --models flax_plain --modes scan) 2>&1 | grep --line-buffered -v -i warn | tee "$OUT/anchor_mnist_jax.log"
else
  echo "skipped (quick run, or no $DATA/anchors: copy ../shared/anchors there)" | tee "$OUT/anchor_mnist_jax.log"
fi
section "6. CIFAR-10 speedrun whitened from the first 5000 training images (airbench94's sample), bf16"
cifar_run cifar_speedrun_first5000 70 --loop "${LOOP:-scan}" --set whiten_sample=first
section "7. CIFAR-10 seeds against airbench94 (one row per configuration)"
jsons=$(ls "$OUT"/cifar_speedrun.json "$OUT"/cifar_speedrun_more_epochs.json "$OUT"/cifar_speedrun_first5000.json \
  2>/dev/null)
if [ -n "$jsons" ]; then
  $PY experiments/cifar_seeds.py $jsons 2>&1 | tee "$OUT/cifar_seeds.md"
fi
section "done"
