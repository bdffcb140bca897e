"""fp32 linear layers multiplied by oneDNN on a CPU: the same products, summed in another
order, two to three times faster than PyTorch's default on this project's CPUs.

Why. On a CPU, PyTorch multiplies fp32 matrices with MKL's sgemm. MKL chooses its kernels by
the CPU's maker as well as its instructions, and on an AMD CPU with AVX-512 it runs at about
the speed of AVX2. oneDNN, the other matrix library inside every PyTorch CPU wheel (the one
torch.compile packs linear weights for), chooses by the instructions alone, and reads a weight
packed once into the layout its kernels want. Measured on the 2-core AMD EPYC with AVX-512
(benchmarks/README.md, "fp32 through oneDNN"): a 2048² fp32 matmul 417 GFLOP/s against MKL's
175, the linear layers of one decoding step 2.0x to 3.2x faster, and the 152 test questions'
greedy answers the same 152.

    use_onednn(model)   every plain nn.Linear of a model becomes a OneDNNLinear
    OneDNNLinear        an nn.Linear that multiplies through oneDNN where it can: fp32 on a CPU,
                        no autocast; its weight packed at first use, again when it changes
    repack(model)       forget the packed weights, after a change made through .data, which
                        PyTorch does not count as a change (peft's merge_and_unload does it,
                        and puts the layer back in the model, which forgets by itself)

The numbers. Each output is the same sum of the same products, added in another order, so it
differs from MKL's in its last bits (at most 2.9e-6 on the 49k-word output layer,
benchmarks/linear_libraries.py), as MKL's own AVX2 and AVX-512 kernels differ from each other
(README, "Run it"). Training: a frozen weight (LoRA's base) multiplies through oneDNN both
ways, the forward product and the backward one (the gradient of its input, through its weight
transposed and packed too). A weight that trains multiplies as PyTorch does. EDU_QA_ONEDNN=0
turns all of it off.
"""

from __future__ import annotations

import os

import torch
from torch import nn

ENABLED = os.environ.get("EDU_QA_ONEDNN", "1") != "0"


def available() -> bool:
    """oneDNN is in this PyTorch, and its packed fp32 linear gives what F.linear gives."""
    if not ENABLED or not torch.backends.mkldnn.is_available():
        return False
    try:
        w, x = torch.randn(24, 16), torch.randn(3, 16)
        got = torch.ops.mkldnn._linear_pointwise(
            x, torch.ops.mkldnn._reorder_linear_weight(w, None), None, "none", [], "")
        return bool(torch.allclose(got, nn.functional.linear(x, w), rtol=1e-5, atol=1e-6))
    except (RuntimeError, AttributeError):  # an op missing from this build
        return False


def use_onednn(model: nn.Module) -> int:
    """Every plain nn.Linear of `model` (peft wraps them later, and keeps them) becomes a
    OneDNNLinear, which falls back to nn.Linear's own forward wherever oneDNN does not apply
    (another device or dtype, autocast, a weight that trains). Returns how many."""
    if not available():
        return 0
    layers = [m for m in model.modules() if type(m) is nn.Linear]
    for layer in layers:
        layer.__class__ = OneDNNLinear
        layer.forget()
    return len(layers)


def repack(model: nn.Module) -> None:
    for layer in model.modules():
        if isinstance(layer, OneDNNLinear):
            layer.forget()


def _forget_when_put_back(module, name, submodule):
    """nn.Module's registration hook: a OneDNNLinear set into a model (peft's merge_and_unload
    puts each base layer back after changing its weight through .data) packs again."""
    if isinstance(submodule, OneDNNLinear):
        submodule.forget()


nn.modules.module.register_module_module_registration_hook(_forget_when_put_back)


def _pointwise(x, packed, bias):
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


class OneDNNLinear(nn.Linear):
    """nn.Linear whose fp32 CPU products go through oneDNN (module docstring)."""

    _packed = _packed_t = _packed_key = None  # nothing packed yet, also when built directly

    def forget(self) -> None:
        self._packed = self._packed_t = self._packed_key = None

    def __getstate__(self):  # copy.deepcopy, torch.save: a packed tensor has no storage to copy
        return {**super().__getstate__(), "_packed": None, "_packed_t": None,
                "_packed_key": None}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight, self.bias
        if x.device.type != "cpu" or x.dtype != torch.float32 or w.dtype != torch.float32 \
                or torch.is_autocast_enabled("cpu"):
            return super().forward(x)
        training = torch.is_grad_enabled() and (x.requires_grad or w.requires_grad or
                                                (b is not None and b.requires_grad))
        if training and (w.requires_grad or (b is not None and b.requires_grad)):
            return super().forward(x)  # a weight that trains: autograd's own linear
        if training:  # a frozen weight, its input's gradient wanted (LoRA's base layers)
            return _FrozenLinear.apply(x, self)
        return _pointwise(x, self._packed_weight(), b)

    def _packed_weight(self):
        # a new tensor, or one changed in place (optimizer steps count; .data does not)
        key = (self.weight.data_ptr(), self.weight._version)
        if self._packed_key != key:
            self._packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), None)
            self._packed_t, self._packed_key = None, key
        return self._packed

    def _packed_transpose(self):
        if self._packed_t is None:  # the backward product: grad @ W, as a linear of W^T
            self._packed_t = torch.ops.mkldnn._reorder_linear_weight(
                self.weight.detach().t().contiguous(), None)
        return self._packed_t


class _FrozenLinear(torch.autograd.Function):
    """y = x W^T + b for a frozen W and b; the backward gives x's gradient only, grad W."""

    @staticmethod
    def forward(ctx, x, layer):
        ctx.layer = layer
        return _pointwise(x, layer._packed_weight(), layer.bias)

    @staticmethod
    def backward(ctx, grad):
        return _pointwise(grad.contiguous(), ctx.layer._packed_transpose(), None), None
