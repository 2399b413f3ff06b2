"""The gated MLP: every hidden neuron's output is multiplied by a gain (gate).

gate = 1 is the trained net, gate = 0 is the neuron removed, any other value scales its
outgoing influence (the paper's gain plots). Criteria, the pruning loop and the gain
sweeps all act through these gates and never touch the weights.

    layer l (0-based over hidden layers):  x_l = W_l h_{l-1} + b_l,  h_l = gate_l * f(x_l)
    output:                                 z = W_L h_{L-1} + b_L,   o = out(z)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .oracle import kernel as fused
from ._io import atomic_target
from ._validation import ShrinkNetError, all_finite, as_tensor, check_inputs
from .activations import HIDDEN, apply_output
from .activations import hidden_activation as _hidden_activation
from .activations import output_activation as _check_output

FORMAT = "shrinknet-mlp"
FORMAT_VERSION = "1"


@dataclass
class Cache:
    """One forward pass, kept for the criteria.

    pre[l]: (N, K_l) pre-activations of hidden layer l; out[l]: (N, K_l) its gated outputs;
    act[l]: (N, K_l) its un-gated outputs f(x_l); z: (N, n_out) output pre-activations.
    """
    X: torch.Tensor
    pre: list
    act: list
    out: list
    z: torch.Tensor

    def inputs_to(self, layer: int) -> torch.Tensor:
        """Input of linear layer `layer` (0 = X, l = out[l-1])."""
        return self.X if layer == 0 else self.out[layer - 1]


def version_key(tensors) -> tuple:
    """Where each tensor's memory is and how often it has been changed in place: equal keys mean
    equal contents (torch bumps ``_version`` on every in-place change)."""
    return tuple((t.data_ptr(), t._version) for t in tensors)


class MLP(nn.Module):
    """Fully connected net with gated hidden neurons.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths from input to output, e.g. ``(400, 100, 10)``.
    hidden_activation : {"sigmoid", "tanh", "relu", "gelu"}
    output_activation : {"sigmoid", "softmax", "identity"}
    seed : int, optional
        Seeds the weight initialisation (torch's default Linear init).
    """

    def __init__(self, sizes: Sequence[int], hidden_activation: str = "sigmoid",
                 output_activation: str = "sigmoid", seed: int | None = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 3 or min(sizes) < 1:
            raise ShrinkNetError(f"sizes: expected at least (inputs, hidden, outputs), all >= 1, got {sizes}")
        self.hidden_activation = hidden_activation
        self._act = _hidden_activation(hidden_activation)
        self.output_activation = _check_output(output_activation)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.layers = nn.ModuleList(nn.Linear(a, b, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:]))
        for l, k in enumerate(sizes[1:-1]):
            self.register_buffer(f"gate{l}", torch.ones(k, dtype=dtype))

    # ---- structure -------------------------------------------------------------------
    @property
    def sizes(self) -> list[int]:
        return [self.layers[0].in_features] + [lin.out_features for lin in self.layers]

    @property
    def hidden_sizes(self) -> list[int]:
        return self.sizes[1:-1]

    # (the pruning loop reads these several times per removal: straight from the module's dicts,
    # not through nn.Module.__getattr__)
    @property
    def n_hidden_layers(self) -> int:
        return len(self._modules["layers"]) - 1

    @property
    def gates(self) -> list[torch.Tensor]:
        b = self._buffers
        return [b[f"gate{l}"] for l in range(self.n_hidden_layers)]

    def set_gates(self, gates) -> "MLP":
        """Copy gate values in (a list with one (K_l,) array per hidden layer)."""
        if len(gates) != self.n_hidden_layers:
            raise ShrinkNetError(f"gates: expected {self.n_hidden_layers} arrays, got {len(gates)}")
        for l, (g, k) in enumerate(zip(gates, self.hidden_sizes)):
            g = as_tensor(g, f"gates[{l}]", self.gates[l].dtype, self.gates[l].device)
            if g.shape != (k,):
                raise ShrinkNetError(f"gates[{l}]: expected shape ({k},), got {tuple(g.shape)}")
            self.gates[l].copy_(g)
        return self

    def reset_gates(self) -> "MLP":
        for g in self.gates:
            g.fill_(1.0)
        return self

    def active(self) -> list[np.ndarray]:
        """Indices of the neurons not removed (gate != 0), per hidden layer."""
        return [torch.nonzero(g != 0).flatten().cpu().numpy() for g in self.gates]

    def n_active(self) -> int:
        return int(sum(int((g != 0).sum()) for g in self.gates))

    def check_finite(self) -> None:
        for name, p in list(self.named_parameters()) + list(self.named_buffers()):
            if not all_finite(p.detach()):
                raise ShrinkNetError(f"model parameter {name}: expected finite values, got NaN/inf")

    # ---- forward ---------------------------------------------------------------------
    def _gates(self, gates):
        return self.gates if gates is None else list(gates)

    def logits(self, X: torch.Tensor, gates=None) -> torch.Tensor:
        """Output-layer pre-activations z (N, n_out)."""
        h = X
        for lin, g in zip(self.layers[:-1], self._gates(gates)):
            h = self._act.f(lin(h)) * g
        return self._output(h)

    def forward(self, X: torch.Tensor, gates=None) -> torch.Tensor:
        """Network outputs o = out(z), (N, n_out)."""
        return apply_output(self.logits(X, gates), self.output_activation)

    @torch.no_grad()
    def cache(self, X: torch.Tensor) -> Cache:
        """Every layer's activations on X, for the current weights and gates.

        Remembered per input tensor (the last two) and reused while neither X, the weights nor
        the gates have changed; :meth:`set_gate` updates it in place of a new forward pass.
        """
        memo = self.__dict__.setdefault("_memo", {})
        hit = memo.get(id(X))
        if hit is not None and hit[0] is X and hit[1] == self._state_key(X):
            return hit[2]
        c = Cache(X, [], [], [], None)
        self._forward_from(c, 0, X)
        if len(memo) >= 2:
            memo.pop(next(iter(memo)))
        memo[id(X)] = (X, self._state_key(X), c)
        return c

    def _state_key(self, X, state=None):
        # torch bumps a tensor's _version on every in-place change, so this notices any edit
        return version_key([X, *(self._state() if state is None else state)])

    def _state(self) -> list[torch.Tensor]:
        """The tensors besides X that a cache depends on: the gates, then every weight and bias."""
        return [*self.gates, *self.weights()]

    def weights(self) -> list[torch.Tensor]:
        """Every layer's weight and bias, read directly (quicker than walking the modules)."""
        return [t for lin in self._modules["layers"] for t in (lin._parameters["weight"], lin._parameters["bias"])]

    def _forward_from(self, c: Cache, first: int, h: torch.Tensor) -> None:
        """Recompute hidden layers first.. and the output of cache c from h (the input of layer first)."""
        del c.pre[first:], c.act[first:], c.out[first:]
        layers = list(self._modules["layers"])              # (slicing a ModuleList builds a new one)
        for lin, g in zip(layers[first:-1], self.gates[first:]):
            x = lin(h)
            a = self._act.f(x)
            h = a * g
            c.pre.append(x), c.act.append(a), c.out.append(h)
        c.z = self._output(h)

    def _output(self, h: torch.Tensor) -> torch.Tensor:
        # torch's linear for a handful of outputs costs several times the compiled product
        # (fused.linear; the pruning loop runs it after every removal); it keeps autograd
        lin = self.layers[-1]
        z = fused.linear(h, lin.weight, lin.bias)
        return lin(h) if z is None else z

    @torch.no_grad()
    def set_gate(self, layer: int, unit: int, value: float) -> None:
        """Set one gate; remembered caches are updated by recomputing only the layers downstream
        of it (the result is identical to a fresh forward pass)."""
        memo = self.__dict__.setdefault("_memo", {})
        state = self._state()                        # read once: pruning calls this at every step
        valid = [(k, X, c) for k, (X, key, c) in memo.items() if key == self._state_key(X, state)]
        g = state[layer]
        g[unit] = value
        for k, X, c in valid:
            if c.out[layer].device.type == "cpu" and c.out[layer].dtype in (torch.float32, torch.float64):
                # in NumPy: torch's indexing of one column costs tens of microseconds
                out = c.out[layer].numpy()[:, unit]
                np.multiply(c.act[layer].numpy()[:, unit], g.numpy()[unit], out=out)
            else:
                c.out[layer][:, unit] = c.act[layer][:, unit] * g[unit]
            self._forward_from(c, layer + 1, c.out[layer])
            memo[k] = (X, self._state_key(X, state), c)

    def predict(self, X) -> np.ndarray:
        """Outputs for an array-like X, as a NumPy array."""
        p = next(self.parameters())
        with torch.no_grad():
            return self(check_inputs(X, self.sizes[0], p.dtype, p.device)).cpu().numpy()

    # ---- construction ----------------------------------------------------------------
    @classmethod
    def from_numpy(cls, weights, biases, hidden_activation: str = "sigmoid",
                   output_activation: str = "sigmoid", dtype: torch.dtype = torch.float32) -> "MLP":
        """Build from arrays; ``weights[l]`` is (out_features, in_features) as in nn.Linear."""
        if len(weights) != len(biases) or len(weights) < 2:
            raise ShrinkNetError(f"weights/biases: expected the same number (>= 2) of arrays, "
                                 f"got {len(weights)} weights and {len(biases)} biases")
        Ws = [as_tensor(w, f"weights[{l}]", dtype) for l, w in enumerate(weights)]
        bs = [as_tensor(b, f"biases[{l}]", dtype) for l, b in enumerate(biases)]
        for l, (W, b) in enumerate(zip(Ws, bs)):
            if W.ndim != 2:
                raise ShrinkNetError(f"weights[{l}]: expected a 2-D (out, in) array, got shape {tuple(W.shape)}")
            if b.shape != (W.shape[0],):
                raise ShrinkNetError(f"biases[{l}]: expected shape ({W.shape[0]},), got {tuple(b.shape)}")
            if l and W.shape[1] != Ws[l - 1].shape[0]:
                raise ShrinkNetError(f"weights[{l}]: expected {Ws[l - 1].shape[0]} input columns "
                                     f"(weights[{l - 1}] has {Ws[l - 1].shape[0]} outputs), got {W.shape[1]}")
        m = cls([Ws[0].shape[1]] + [W.shape[0] for W in Ws], hidden_activation, output_activation, dtype=dtype)
        with torch.no_grad():
            for lin, W, b in zip(m.layers, Ws, bs):
                lin.weight.copy_(W)
                lin.bias.copy_(b)
        return m

    @classmethod
    def from_sequential(cls, seq: nn.Sequential, dtype: torch.dtype | None = None) -> "MLP":
        """Build from ``nn.Sequential(Linear, act, Linear, act, ..., Linear[, out_act])``."""
        names = {nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.ReLU: "relu", nn.GELU: "gelu"}
        outs = {nn.Sigmoid: "sigmoid", nn.Softmax: "softmax", nn.Identity: "identity"}
        mods = [m for m in seq if not isinstance(m, (nn.Identity, nn.Flatten, nn.Dropout))]
        tail = "identity"
        if mods and not isinstance(mods[-1], nn.Linear):
            last = mods.pop()
            if type(last) not in outs:
                raise ShrinkNetError(f"from_sequential: unsupported output activation {type(last).__name__}: "
                                     f"expected Sigmoid, Softmax or none")
            tail = outs[type(last)]
        linears, acts = mods[0::2], mods[1::2]
        for i, m in enumerate(linears):
            if not isinstance(m, nn.Linear):
                raise ShrinkNetError(f"from_sequential: expected nn.Linear at position {2 * i}, got {type(m).__name__}")
        for i, a in enumerate(acts):
            if type(a) not in names or (isinstance(a, nn.GELU) and a.approximate != "none"):
                raise ShrinkNetError(f"from_sequential: unsupported hidden activation {a!r} at position "
                                     f"{2 * i + 1}: expected one of Sigmoid, Tanh, ReLU, GELU")
        kinds = {names[type(a)] for a in acts}
        if len(kinds) != 1 or len(acts) != len(linears) - 1:
            raise ShrinkNetError(f"from_sequential: expected Linear layers separated by one shared activation, "
                                 f"got {[type(m).__name__ for m in seq]}")
        dt = dtype or linears[0].weight.dtype
        return cls.from_numpy([m.weight.detach() for m in linears],
                              [m.bias.detach() if m.bias is not None else torch.zeros(m.out_features)
                               for m in linears], kinds.pop(), tail, dtype=dt)

    def to_numpy(self):
        """(weights, biases) as lists of NumPy arrays, the inverse of from_numpy."""
        return ([l.weight.detach().cpu().numpy() for l in self.layers],
                [l.bias.detach().cpu().numpy() for l in self.layers])

    def clone(self, dtype=None, device=None) -> "MLP":
        m = MLP(self.sizes, self.hidden_activation, self.output_activation,
                dtype=dtype or self.layers[0].weight.dtype)
        m.load_state_dict(self.state_dict())
        return m.to(device=device) if device is not None else m

    def extra_repr(self) -> str:
        return (f"sizes={self.sizes}, hidden={self.hidden_activation}, output={self.output_activation}, "
                f"active={self.n_active()}/{sum(self.hidden_sizes)}")

    # ---- files -------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write to a .safetensors file (weights, biases, gates; no code). Atomic."""
        from safetensors.torch import save_file

        path = Path(path)
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "sizes": json.dumps(self.sizes),
                "hidden_activation": self.hidden_activation, "output_activation": self.output_activation}
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_target(path) as tmp:
            save_file(tensors, tmp, metadata=meta)
        return path

    @classmethod
    def load(cls, path) -> "MLP":
        """Read a file written by :meth:`save`. Never unpickles."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise ShrinkNetError(f"model file {path}: not found")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise ShrinkNetError(f"model file {path}: not a readable safetensors file ({e})") from None
        if meta.get("format") != FORMAT:
            raise ShrinkNetError(f"model file {path}: expected format {FORMAT!r}, got {meta.get('format')!r}")
        try:
            sizes = json.loads(meta["sizes"])
            m = cls(sizes, meta["hidden_activation"], meta["output_activation"],
                    dtype=tensors["layers.0.weight"].dtype)
            m.load_state_dict(tensors)
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise ShrinkNetError(f"model file {path}: inconsistent contents ({e})") from None
        m.check_finite()
        return m


def as_mlp(model) -> MLP:
    """Accept an MLP or an nn.Sequential of Linear + activation layers."""
    if isinstance(model, MLP):
        return model
    if isinstance(model, nn.Sequential):
        return MLP.from_sequential(model)
    raise ShrinkNetError(f"model: expected shrinknet.MLP or nn.Sequential of Linear/activation layers, "
                         f"got {type(model).__name__}")


__all__ = ["MLP", "Cache", "as_mlp", "HIDDEN"]
