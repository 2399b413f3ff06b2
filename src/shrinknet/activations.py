"""Hidden-layer activations with the first and second derivatives the OBD recursion needs.

Each activation is f(x) plus f'(x) and f''(x), written from the pre-activation x and
the output o = f(x) so the sigmoid's classic forms (o(1-o), o(1-o)(1-2o)) are used
literally, as in the paper's appendix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ._validation import check_choice

Fn = Callable[[torch.Tensor], torch.Tensor]
Deriv = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, o) -> derivative


@dataclass(frozen=True)
class Activation:
    name: str
    f: Fn
    d1: Deriv
    d2: Deriv
    f_: Fn | None = None  # in-place variant (overwrites its argument), where torch has one

    def inplace(self, x: torch.Tensor) -> torch.Tensor:
        return self.f_(x) if self.f_ is not None else self.f(x)


def _gelu_pdf(x):
    return torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _gelu_d1(x, o):
    # gelu(x) = x * Phi(x)  ->  Phi(x) + x phi(x)
    return 0.5 * (1 + torch.erf(x / math.sqrt(2))) + x * _gelu_pdf(x)


def _gelu_d2(x, o):
    # d/dx [Phi + x phi] = phi + phi + x * (-x phi) = phi (2 - x^2)
    return _gelu_pdf(x) * (2 - x * x)


HIDDEN = {
    "sigmoid": Activation("sigmoid", torch.sigmoid,
                          lambda x, o: o * (1 - o),
                          lambda x, o: o * (1 - o) * (1 - 2 * o), torch.sigmoid_),
    "tanh": Activation("tanh", torch.tanh,
                       lambda x, o: 1 - o * o,
                       lambda x, o: -2 * o * (1 - o * o), torch.tanh_),
    # ReLU has no curvature: f'' = 0 everywhere it is defined (we take f'(0) = 0, as torch does).
    "relu": Activation("relu", torch.relu,
                       lambda x, o: (x > 0).to(x.dtype),
                       lambda x, o: torch.zeros_like(x), torch.relu_),
    # exact (erf) GELU, torch.nn.GELU(approximate="none")
    "gelu": Activation("gelu", lambda x: torch.nn.functional.gelu(x), _gelu_d1, _gelu_d2),
}

OUTPUT = ("sigmoid", "softmax", "identity")


def hidden_activation(name: str) -> Activation:
    return HIDDEN[check_choice(name, HIDDEN, "hidden activation")]


def output_activation(name: str) -> str:
    return check_choice(name, OUTPUT, "output activation")


def apply_output(z: torch.Tensor, name: str) -> torch.Tensor:
    """Output activation on the output layer's pre-activations z (N, n_out)."""
    if name == "sigmoid":
        return torch.sigmoid(z)
    if name == "softmax":
        return torch.softmax(z, dim=-1)
    return z
