#!/usr/bin/env bash
# The GPU check, as one device call (about 6 minutes on an H100). Prepared here, run there:
#   .whl/  wheels the GPU image lacks or has in other versions (benchmarks/README.md, "The GPU check")
#   .gpu/  the embedded model's config and tokenizer (gzipped), for a random-weight model of its shape
# Writes its logs and tables to $OUT (or ./gpu_out). `bash benchmarks/gpu_check.sh script` runs
# only part 2 (about 2 minutes).
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, transformers, peft, bitsandbytes as b; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', b.__version__)"
} 2>&1 | tee "$OUT/versions.txt"

# 1. the recipe at the 1.1B shape: LoRA on a bf16 base, then QLoRA (targets: 50,000 and 20,000 tokens/s)
if [ "${1:-all}" != script ]; then
timeout 220 python3 benchmarks/qlora.py --quantization none --batch-size 32 --out "$OUT/lora.md" \
    > "$OUT/lora.log" 2>&1; echo "lora rc=$?"; tail -14 "$OUT/lora.log"
timeout 160 python3 benchmarks/qlora.py --batch-size 32 --out "$OUT/qlora.md" \
    > "$OUT/qlora.log" 2>&1; echo "qlora rc=$?"; tail -14 "$OUT/qlora.log"
fi

# 2. the script's own --execute path (4-bit by default on CUDA) on a random model of SmolLM2's shape
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
    --results-dir /tmp/results > "$OUT/script.log" 2>&1; echo "script rc=$?"
grep -n -i -E "GPU setting|estimate|trained in|reload|merged|test, |before|after |rc=" "$OUT/script.log" | head -40
