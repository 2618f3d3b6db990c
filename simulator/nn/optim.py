"""Optimizers: SGD and Adam, with their state in the memory ledger.

For 16-bit parameters (shape-only mode) the optimizer keeps an fp32 master
copy, as mixed-precision training does (Micikevicius et al. 2018, sec. 3.1):
Adam then holds 4 (master) + 4 (momentum) + 4 (variance) = 12 bytes per
parameter, which with 2-byte weights and 2-byte gradients gives the 16 bytes
per parameter of the ZeRO paper (Rajbhandari et al. 2020, sec. 3.1).

The step's memory traffic, for 16-bit parameters, is that of Megatron-LM's
mixed-precision optimizer (``MixedPrecisionOptimizer.step`` in
``megatron/core/optimizer/optimizer.py`` at core_v0.8.0;
``megatron/optimizer/optimizer.py`` at v2.5), pass by pass:

* FP16 only: the FP16 gradients copied into FP32 main gradients
  (``_copy_model_grads_to_main_grads``: reads 2 bytes, writes 4; not when
  they were accumulated in FP32 already, ``training.grad_precision = "fp32"``,
  :mod:`.param`; with BF16, ``--bf16`` forces
  ``accumulate_allreduce_grads_in_fp32`` and the pass is never there) and
  unscaled from the loss scale with a check for infinities (reads and writes
  4; BF16 runs without a loss scale, so without this pass);
* the gradient norm for clipping (``clip_grad`` is 1.0 by default;
  ``multi_tensor_l2norm`` reads every FP32 gradient);
* the fused update: reads the gradient, reads and writes the FP32 master
  weight and the moments;
* the updated FP32 master weights copied into the 16-bit model weights
  (``_copy_main_params_to_model_params``: reads 4, writes 2).

That is 38 bytes per parameter for BF16 Adam and 52 for FP16. The passes are
batched over many tensors per launch (``multi_tensor_apply``), so they are
priced as one kernel per parameter. Full-precision parameters (numerics
mode) have no master copy and no clipping: read the weight and the gradient,
write the weight, read and write the state.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..ops.arrays import ITEMSIZE, dtype_of, is_shape_only
from .param import Param

HALF = ("bf16", "fp16")


class Optimizer:
    """Base class. ``step`` updates the given parameters from their gradients."""

    name = "optimizer"
    #: optimizer state arrays per parameter (besides an fp32 master copy).
    moments = 0

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def state_bytes(self, param: Param) -> int:
        """Bytes of optimizer state this parameter needs (master copy included)."""
        dtype = dtype_of(param.value)
        if dtype in HALF:
            return param.size * 4 * (1 + self.moments)
        return param.size * ITEMSIZE[dtype] * self.moments

    def step(self, params: list[Param]) -> None:
        for p in params:
            self.update(p)

    def update(self, p: Param) -> None:
        raise NotImplementedError

    def _traffic(self, p: Param) -> int:
        """Bytes one update moves (module docstring): for a 16-bit parameter
        Megatron-LM's passes; else read weight and gradient, write weight, read and
        write every state array."""
        state = self.state_bytes(p)
        dtype = dtype_of(p.value)
        if dtype not in HALF:
            return 3 * p.nbytes + 2 * state
        main = p.size * ITEMSIZE["float32"]  # the FP32 main gradients, or master weights
        # FP16: the gradients copied into FP32 main gradients (unless they were
        # accumulated in FP32 already, training.grad_precision) and the loss scale taken out
        copy = p.nbytes + main if int(p.grad.nbytes) < main else 0
        fp16 = copy + 2 * main if dtype == "fp16" else 0
        return fp16 + main + (main + 2 * state) + (main + p.nbytes)


class SGD(Optimizer):
    """Plain SGD: ``w <- w - lr * g`` (the seed's update rule)."""

    name = "sgd"

    def update(self, p: Param) -> None:
        if not is_shape_only(p.value):
            p.value -= self.lr * p.grad
        ops.emit("sgd", "elementwise", dtype_of(p.value), 0, self._traffic(p))


class Adam(Optimizer):
    """Adam (Kingma and Ba 2015, algorithm 1) with bias correction."""

    name = "adam"
    moments = 2

    def __init__(
        self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ) -> None:
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self._state: dict[int, tuple[np.ndarray, np.ndarray, list[int]]] = {}

    def update(self, p: Param) -> None:
        if not is_shape_only(p.value):
            m, v, t = self._state.setdefault(
                id(p), (np.zeros_like(p.value), np.zeros_like(p.value), [0])
            )
            t[0] += 1
            g = p.grad
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            m_hat = m / (1 - self.beta1 ** t[0])
            v_hat = v / (1 - self.beta2 ** t[0])
            p.value -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
        ops.emit("adam", "elementwise", dtype_of(p.value), 0, self._traffic(p))


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(name: str, lr: float) -> Optimizer:
    return OPTIMIZERS[name](lr)
