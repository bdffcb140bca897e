#!/usr/bin/env bash
# The GPU check, as one device call (8 minutes of variants, BUDGET, on an H200; what is left
# over is skipped and says so). Prepared here, run there:
#   .whl/  wheels the GPU image lacks or has in other versions (benchmarks/README.md, "The GPU check")
#   .gpu/  the embedded model's config and tokenizer (gzipped), for a random-weight model of its shape
# Writes its logs, tables and variants.jsonl to $OUT (or ./gpu_out). Parts:
#   recipe    the LoRA and QLoRA recipe at the 1.1B shape, one change at a time (benchmarks/qlora.py)
#   packing   rows of varied length: padded, flattened with SDPA, flattened with FlexAttention
#   script    huggingface_lora.py --execute on a random model of SmolLM2's shape (about 2 minutes)
# `bash benchmarks/gpu_check.sh script` runs only that part; BUDGET (seconds, default 500) stops
# starting variants when the call's time is nearly spent, so that what ran still comes back.
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
BUDGET=${BUDGET:-500}; START=$SECONDS
LOGS=/tmp/gpu_logs; mkdir -p "$LOGS"  # tarred into $OUT at the end: 8 files at most come back
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, transformers, peft, bitsandbytes as b, liger_kernel, triton; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', b.__version__, 'triton', triton.__version__)"
} 2>&1 | tee "$OUT/versions.txt"

# one variant: NAME CAP(seconds) ARGS...; skipped when the budget is nearly spent
variant() {
    local name=$1 cap=$2; shift 2
    local left=$((BUDGET - (SECONDS - START)))
    if [ "$left" -lt 40 ]; then echo "$name skipped: ${left}s of the budget left"; return; fi
    [ "$cap" -gt "$left" ] && cap=$left
    timeout "$cap" python3 benchmarks/qlora.py --batch-size 32 --base-cache /tmp/base \
        --jsonl "$OUT/variants.jsonl" "$@" ${QARGS:-} > "$LOGS/$name.log" 2>&1
    echo "$name rc=$? $((SECONDS - START))s: $(grep -E '^\| training \|' "$LOGS/$name.log")"
}

part=${1:-recipe packing}
if [[ $part == *recipe* ]]; then
    # most telling first, as the budget may stop the list: the recipe as chosen (compiled,
    # Liger, no per-step NaN check), then each choice undone on its own
    variant lora 150 --quantization none --profile "$OUT/lora_kernels.txt"
    variant qlora 70 --quantization 4bit --profile "$OUT/qlora_kernels.txt"
    variant lora_no_liger 120 --quantization none --no-liger
    variant lora_nan_check 120 --quantization none --nan-check
    variant lora_eager 60 --quantization none --compile off
    variant qlora_no_liger 70 --quantization 4bit --no-liger
    variant lora_dropout 120 --quantization none --lora-dropout 0.05  # the recipe until 2026-12-01
    # what the recipe does not choose: a larger batch, and bf16 base weights (numerics of its
    # own, which the CPU runs would have to be re-measured for)
    variant lora_batch64 120 --quantization none --batch-size 64
    variant lora_bf16_base 120 --quantization none --base-dtype bf16
    variant qlora_compile 120 --quantization 4bit --compile on
fi
if [[ $part == *packing* ]]; then
    # rows of 64-512 tokens: tokens/s counts real tokens, so padding is what packing removes
    variant pack_pad 60 --quantization none --compile off --lengths varied --packing pad
    variant pack_flatten_sdpa 60 --quantization none --compile off --lengths varied \
        --packing flatten
    variant pack_flatten_flex 150 --quantization none --compile off --lengths varied \
        --packing flatten --attention flex_attention
fi
[ -f "$OUT/variants.jsonl" ] && python3 - "$OUT/variants.jsonl" <<'PY' | tee "$OUT/variants.md"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print("| quantization | changed from the chosen settings | tokens/s | MFU measured | MFU spec "
      "| first 2 steps | peak memory |\n|---|---|---|---|---|---|---|")
for r in rows:
    spec = f"{100 * r['mfu_spec']:.1f}%" if r.get("mfu_spec") else "-"
    print(f"| {r['quantization']} | {', '.join(r['changed']) or 'nothing'} | "
          f"{r['tokens_per_s']:,} | {100 * r['mfu_measured']:.1f}% | {spec} | "
          f"{r['first_steps_s']} s | {r['peak_memory_bytes'] / 2**30:.1f} GiB |")
PY

# the script's own --execute path (4-bit by default on CUDA) on a random model of SmolLM2's shape
if [[ $part == *script* ]]; then
python3 - <<'PY'
import gzip, shutil, torch
from transformers import AutoConfig, AutoModelForCausalLM
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(".gpu"))
model.save_pretrained("/tmp/smol")
for name in ["chat_template.jinja", "generation_config.json", "tokenizer_config.json"]:
    shutil.copy(f".gpu/{name}", "/tmp/smol")
with gzip.open(".gpu/tokenizer.json.gz") as src, open("/tmp/smol/tokenizer.json", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
timeout 150 python3 huggingface_lora.py --model /tmp/smol --execute --no-judge-on-dev --merge \
    --output-dir /tmp/lora \
    --results-dir /tmp/results > "$LOGS/script.log" 2>&1; echo "script rc=$?"
grep -n -i -E "GPU setting|estimate|trained in|reload|merged|test, |before|after |rc=" "$LOGS/script.log" | head -40
fi
tar -czf "$OUT/logs.tar.gz" -C "$LOGS" .
