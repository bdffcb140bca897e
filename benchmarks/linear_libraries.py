"""The linear layers of one decoding step of the embedded model, multiplied by PyTorch's
default CPU library (MKL's sgemm, through F.linear) and by oneDNN with each weight packed once
(edu_qa/onednn.py, the scripts' since 2026-12-02), for batches of 1 to 152 rows.

    python benchmarks/linear_libraries.py          # ~1 min on 2 cores
    ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/linear_libraries.py
                                                   # both libraries held to AVX2

The 211 products of SmolLM2-135M's step (30 layers of q, k, v, o, gate, up and down, and the
49,152-word output layer), with random weights of those shapes: 538 MB of fp32, more than any
cache, read once per step as in decoding. A row of 1 is one question answered alone (DSPy's
bootstrapping); 48 the dev split; 152 the test split. The last column is the largest
difference between the two libraries' outputs of the output layer: the same sums of the same
products, added in another order.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edu_qa  # noqa: E402

HIDDEN, KV, MLP, VOCAB, LAYERS = 576, 192, 1536, 49152, 30  # SmolLM2-135M


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 4, 16, 48, 96, 152])
    parser.add_argument("--repeat", type=int, default=3, help="timed steps per figure")
    args = parser.parse_args(argv)
    import torch

    from edu_qa import onednn
    if not onednn.available():
        print("this PyTorch has no oneDNN fp32 linear (or EDU_QA_ONEDNN=0)")
        return 1
    torch.manual_seed(0)
    shapes = [(HIDDEN, HIDDEN), (KV, HIDDEN), (KV, HIDDEN), (HIDDEN, HIDDEN), (MLP, HIDDEN),
              (MLP, HIDDEN), (HIDDEN, MLP)] * LAYERS + [(VOCAB, HIDDEN)]
    weights = [torch.randn(n, k) * 0.02 for n, k in shapes]
    packed = [torch.ops.mkldnn._reorder_linear_weight(w, None) for w in weights]

    def step_ms(multiply, rows: int) -> float:
        inputs = {k: torch.randn(rows, k) for k in (HIDDEN, MLP)}
        for _ in range(2):  # one warm-up, then timed
            start = time.perf_counter()
            for _ in range(args.repeat):
                for i, w in enumerate(weights):
                    multiply(inputs[w.shape[1]], i)
        return (time.perf_counter() - start) / args.repeat * 1000

    def mkl(x, i):
        return torch.nn.functional.linear(x, weights[i])

    def dnnl(x, i):
        return onednn._pointwise(x, packed[i], None)

    m = edu_qa.machine()
    print(f"One decoding step's linear products on {m['cpu']}, {m['cores']} cores, torch "
          f"{torch.__version__}, {time.strftime('%Y-%m-%d')} "
          f"(`python benchmarks/linear_libraries.py`)\n")
    print("| rows | PyTorch's default (MKL) | oneDNN, packed | speed-up | largest difference |")
    print("|---|---|---|---|---|")
    for rows in args.rows:
        a, b = step_ms(mkl, rows), step_ms(dnnl, rows)
        x = torch.randn(rows, HIDDEN)
        diff = (mkl(x, -1) - dnnl(x, -1)).abs().max().item()
        print(f"| {rows} | {a:.1f} ms | {b:.1f} ms | {a / b:.2f}x | {diff:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
