#!/usr/bin/env bash
# Write the GPU reference results of one machine: bash results/reference/run-gpu.sh OUT_DIR [PART...]
#
# PART: env, tests, peak, kernels, vision, llm, backends, loadgen (default: all of them, in that
# order). Every step runs under its own time limit and a failure is logged, not fatal, so one
# broken path never costs the other measurements. MODELPOWER overrides the command
# (default: `python3 -m harness`, so an uninstalled checkout works).
set -u
OUT_DIR=${1:?usage: run-gpu.sh OUT_DIR [PART...]}
shift
PARTS=${*:-env tests peak kernels vision llm backends loadgen}
MP=${MODELPOWER:-python3 -m harness}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1

step() {  # step SECONDS COMMAND...: run with a time limit, say how it ended and how long it took
  local limit=$1 t=$SECONDS rc
  shift
  echo "=== $*"
  timeout --kill-after=10 "$limit" "$@"
  rc=$?
  [ $rc -eq 0 ] || echo "!!! FAILED rc=$rc: $*"
  echo "=== took $((SECONDS - t)) s"
}

VISION="resnet50-imagenet steel-defect-resnet50 steel-defect-mobilenetv3 grid-insulator-efficientnet \
pcb-defect-yolo grid-inspection-yolo driving-detect-yolo driving-seg-deeplabv3 steel-seg-lraspp"

for part in $PARTS; do
  case $part in
    env)
      step 30 nvidia-smi
      step 60 python3 -c "import torch, numba, onnxruntime as ort, sys; print(sys.version); \
print('torch', torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0)); \
print('numba', numba.__version__); print('onnxruntime', ort.__version__, ort.get_available_providers())"
      step 30 $MP devices ;;
    tests)  # the CUDA kernels on real hardware, against their NumPy references
      step 180 python3 -m pytest -q -p no:cacheprovider tests/cuda ;;
    peak)
      step 120 $MP peak --device cuda --out "$OUT_DIR" ;;
    kernels)
      step 150 $MP kernels --device cuda --out "$OUT_DIR" ;;
    vision)  # every preset end to end from 1080p frames, torch fp16; ResNet-50 at a large batch
      step 300 $MP run $VISION -b 8 --precision fp16 --device cuda --min-duration 1 --out "$OUT_DIR"
      step 120 $MP run resnet50-imagenet -b 256 --precision fp16 --device cuda --min-duration 3 --out "$OUT_DIR" ;;
    llm)  # 7B bf16: decode at batch 1 (MBU) and 16, and the 8 x 2048 prefill (MFU)
      step 200 $MP run-llm llama2-7b -b 1,16 --prompt-len 512 --output-len 64 --precision bf16 \
        --device cuda --min-duration 3 --out "$OUT_DIR"
      step 120 $MP run-llm llama2-7b -b 8 --prompt-len 2048 --output-len 16 --precision bf16 \
        --device cuda --min-duration 3 --out "$OUT_DIR" ;;
    backends)  # every backend x precision available here, ResNet-50 batch 64
      step 330 $MP backends resnet50-imagenet --device cuda -b 64 --min-duration 2 --out "$OUT_DIR" ;;
    loadgen)  # MLPerf LoadGen Offline, ResNet-50 fp16 (MLPerf v4.0: 88,714 samples/s, TensorRT, one H100)
      step 200 $MP run resnet50-imagenet --scenario offline -b 256 --precision fp16 --device cuda \
        --backend torch-compile --min-duration 10 --out "$OUT_DIR" ;;
    *) echo "unknown part: $part"; exit 2 ;;
  esac
done
ls -la "$OUT_DIR"
