"""The gated MLP: every hidden neuron's output is multiplied by a gain (gate).

gate = 1 is the trained net, gate = 0 is the neuron removed, any other value scales its
outgoing influence (the paper's gain plots). Criteria, the pruning loop and the gain
sweeps all act through these gates and never touch the weights.

    layer l (0-based over hidden layers):  x_l = W_l h_{l-1} + b_l,  h_l = gate_l * f(x_l)
    output:                                 z = W_L h_{L-1} + b_L,   o = out(z)

The forward pass is plain PyTorch (the oracle keeps its own compiled passes, see
:mod:`shrinknet.oracle`), and the model holds nothing but its weights and gates, so it pickles,
copies and runs the same with and without autograd.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ._io import atomic_target, check_target
from ._validation import ShrinkNetError, ShrinkNetFileNotFoundError, as_tensor, check_inputs, check_path
from .activations import HIDDEN, apply_output
from .activations import hidden_activation as _hidden_activation
from .activations import output_activation as _check_output
from .gating import Gated

FORMAT = "shrinknet-mlp"
FORMAT_VERSION = "1"


class MLP(Gated):
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
        _hidden_activation(hidden_activation)
        self.hidden_activation = hidden_activation
        self.output_activation = _check_output(output_activation)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.layers = nn.ModuleList(nn.Linear(a, b, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:]))
        for l, k in enumerate(sizes[1:-1]):
            self.register_buffer(f"gate{l}", torch.ones(k, dtype=dtype))

    # ---- structure -------------------------------------------------------------------
    @property
    def activation(self):
        """The hidden activation with its derivatives (looked up by name, not stored: its functions
        do not pickle)."""
        return HIDDEN[self.hidden_activation]

    @property
    def sizes(self) -> list[int]:
        return [self.layers[0].in_features] + [lin.out_features for lin in self.layers]

    @property
    def input_shape(self) -> tuple:
        return (self.layers[0].in_features,)

    # (the pruning loop reads these several times per removal: straight from the module's dicts,
    # not through nn.Module.__getattr__)
    @property
    def n_hidden_layers(self) -> int:
        return len(self._modules["layers"]) - 1

    @property
    def hidden_sizes(self) -> list[int]:
        return self.sizes[1:-1]

    @property
    def unit_names(self) -> list[str]:
        """"layers.l", or for an MLP read from an nn.Sequential, the names of its Linear layers there
        (so that a result's units name the user's modules)."""
        return self.__dict__.get("_names") or [f"layers.{l}" for l in range(self.n_hidden_layers)]

    def channel_dim(self, layer: int) -> int:
        return -1

    def weights(self) -> list[torch.Tensor]:
        """Every layer's weight and bias, read directly (quicker than walking the modules)."""
        return [t for lin in self._modules["layers"] for t in (lin._parameters["weight"], lin._parameters["bias"])]

    def state_tensors(self) -> list[torch.Tensor]:
        """The gates, then every weight and bias: all a cached forward pass depends on besides X."""
        return [*self.gates, *self.weights()]

    # ---- forward ---------------------------------------------------------------------
    def logits(self, X: torch.Tensor, gates=None) -> torch.Tensor:
        """Output-layer pre-activations z (N, n_out); ``gates`` replaces the gates for this pass
        (per group (K,), per-sample (N, K), or None for the group's own)."""
        own = self.gates
        gates = own if gates is None else [o if g is None else g for o, g in zip(own, gates)]
        h = X
        for lin, g in zip(self.layers[:-1], gates):
            h = self.activation.f(lin(h)) * g
        return self.layers[-1](h)

    def forward(self, X: torch.Tensor, gates=None) -> torch.Tensor:
        """Network outputs o = out(z), (N, n_out)."""
        return apply_output(self.logits(X, gates), self.output_activation)

    @torch.no_grad()
    def outputs(self, X: torch.Tensor, gates=None) -> torch.Tensor:
        """:meth:`logits` without autograd (one pass)."""
        return self.logits(X, gates)

    # ---- what the criteria read ------------------------------------------------------
    @torch.no_grad()
    def unit_outputs(self, chunks):
        """Yield (layer, un-gated outputs f(x_l) of a batch (n, K_l)) over the (X, T) pieces ``chunks``
        (or, the older form, a pruning context: its kept pass)."""
        if hasattr(chunks, "cache"):
            yield from enumerate(chunks.cache().act)
            return
        for Xb, _ in chunks:
            h = Xb
            for l, (lin, g) in enumerate(zip(self.layers[:-1], self.gates)):
                a = self.activation.f(lin(h))
                yield l, a
                h = a * g

    def fan_in(self, layer: int) -> torch.Tensor:
        """(K_l, K_{l-1}): each neuron's incoming weights, those from removed neurons zeroed."""
        W = self.layers[layer].weight
        return W * (self.gates[layer - 1] != 0) if layer else W

    def fan_out(self, layer: int) -> torch.Tensor:
        """(K_l, K_{l+1}): each neuron's outgoing weights, those to removed neurons zeroed."""
        W = self.layers[layer + 1].weight
        if layer + 1 < self.n_hidden_layers:
            W = W * (self.gates[layer + 1] != 0)[:, None]
        return W.T

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
            if type(last) not in outs or (isinstance(last, nn.Softmax) and last.dim not in (None, -1, 1)):
                raise ShrinkNetError(f"from_sequential: unsupported output activation {type(last).__name__}: "
                                     f"expected Sigmoid, Softmax over the features or none")
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
        mlp = cls.from_numpy([m.weight.detach() for m in linears],
                             [m.bias.detach() if m.bias is not None else torch.zeros(m.out_features)
                              for m in linears], kinds.pop(), tail, dtype=dt)
        mlp._names = [n for n, c in seq.named_children() if isinstance(c, nn.Linear)][:-1]
        # the user's own module, its weights left out: shrinknet.shrink gives a Sequential back
        mlp.__dict__["_sequential"] = _without_weights(seq)
        return mlp

    def to_numpy(self):
        """(weights, biases) as lists of NumPy arrays, the inverse of from_numpy."""
        return ([l.weight.detach().cpu().numpy() for l in self.layers],
                [l.bias.detach().cpu().numpy() for l in self.layers])

    def clone(self, dtype=None, device=None) -> "MLP":
        m = MLP(self.sizes, self.hidden_activation, self.output_activation,
                dtype=dtype or self.layers[0].weight.dtype)
        m.load_state_dict(self.state_dict())
        if "_names" in self.__dict__:
            m._names = list(self._names)
        if "_sequential" in self.__dict__:
            m.__dict__["_sequential"] = self._sequential
        return m.to(device=device) if device is not None else m

    def extra_repr(self) -> str:
        return (f"sizes={self.sizes}, hidden={self.hidden_activation}, output={self.output_activation}, "
                f"active={self.n_active()}/{sum(self.hidden_sizes)}")

    # ---- files -------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write to a .safetensors file (weights, biases, gates; no code). Atomic."""
        from safetensors.torch import save_file

        path = check_target(path)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        _check_gates(tensors, f"model for {path}")
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "sizes": json.dumps(self.sizes),
                "hidden_activation": self.hidden_activation, "output_activation": self.output_activation,
                "sha256": _digest(tensors)}
        with atomic_target(path) as tmp:
            save_file(tensors, tmp, metadata=meta)
        return path

    @classmethod
    def load(cls, path) -> "MLP":
        """Read a file written by :meth:`save`. Never unpickles."""
        from safetensors import safe_open

        path = check_path(path)
        if not path.is_file():
            raise (ShrinkNetError(f"model file: expected a file, got the folder {path}") if path.is_dir() else
                   ShrinkNetFileNotFoundError(f"model file {path}: not found"))
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != FORMAT:
                    raise ShrinkNetError(f"model file {path}: expected format {FORMAT!r}, got {meta.get('format')!r}")
                # the metadata's sizes against the stored shapes, before anything is allocated or read
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
                sizes = _sizes_matching(meta, shapes, path)
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except ShrinkNetError:
            raise
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise ShrinkNetError(f"model file {path}: not a readable safetensors file ({e})") from None
        if "sha256" in meta and _digest(tensors) != meta["sha256"]:
            raise ShrinkNetError(f"model file {path}: its tensors do not match the checksum it was saved with "
                                 f"(the file was changed or damaged after saving)")
        _check_gates(tensors, f"model file {path}")
        try:
            m = cls(sizes, meta["hidden_activation"], meta["output_activation"],
                    dtype=tensors["layers.0.weight"].dtype)
            m.load_state_dict(tensors)
        except (KeyError, ValueError, RuntimeError, TypeError) as e:
            raise ShrinkNetError(f"model file {path}: inconsistent contents ({e})") from None
        m.check_finite()
        return m


def _without_weights(seq: nn.Sequential) -> nn.Sequential:
    """A copy of ``seq`` whose Linear layers hold meta tensors (shapes only): the structure, modes and
    bias flags :meth:`as_sequential` rebuilds from, at no memory cost."""
    memo = {}
    for c in seq.children():
        if isinstance(c, nn.Linear):
            for t in c.parameters():
                memo[id(t)] = nn.Parameter(torch.empty_like(t, device="meta"), requires_grad=t.requires_grad)
    return copy.deepcopy(seq, memo)


def as_sequential(mlp: MLP) -> nn.Module:
    """``mlp`` as the ``nn.Sequential`` it was read from (:meth:`MLP.from_sequential`): the Sequential's
    own modules (activations, dropout, flags) around Linear layers with ``mlp``'s weights; ``mlp``
    itself where it was not read from one. A layer built without a bias stays so while its bias is 0."""
    seq = mlp.__dict__.get("_sequential")
    if seq is None:
        return mlp
    seq = copy.deepcopy(seq)
    names = [n for n, c in seq.named_children() if isinstance(c, nn.Linear)]
    for n, lin in zip(names, mlp.layers):
        old = getattr(seq, n)
        bias = old.bias is not None or bool(lin.bias.detach().any())
        new = nn.Linear(lin.in_features, lin.out_features, bias=bias, device=lin.weight.device, dtype=lin.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(lin.weight)
            new.weight.requires_grad_(old.weight.requires_grad)
            if bias:
                new.bias.copy_(lin.bias)
                new.bias.requires_grad_(old.bias.requires_grad if old.bias is not None else True)
        setattr(seq, n, new.train(old.training))
    return seq


def _digest(tensors: dict) -> str:
    """SHA-256 of the tensors' names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())      # the raw bytes, whatever the dtype
    return h.hexdigest()


def _check_gates(tensors: dict, what: str) -> None:
    """A saved model's gates lie in [0, 1] (removed .. as trained). ``set_gate`` takes any gain, for
    sweeps such as the paper's gain surfaces, but such a state is refused here rather than saved as a
    model (and a file holding one is damaged or not ours)."""
    for k, g in tensors.items():
        if k.startswith("gate") and g.numel() and not bool(((g >= 0) & (g <= 1)).all()):
            raise ShrinkNetError(f"{what}: {k} expected gates in [0, 1] (0 = removed, 1 = as trained), got values "
                                 f"from {float(g.min()):g} to {float(g.max()):g}")


def _sizes_matching(meta: dict, shapes: dict, path) -> list[int]:
    """The layer sizes the metadata gives, checked against the stored tensors' shapes."""
    try:
        sizes = json.loads(meta["sizes"])
    except (KeyError, ValueError):
        raise ShrinkNetError(f"model file {path}: no readable 'sizes' in its metadata") from None
    if not (isinstance(sizes, list) and len(sizes) >= 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes)):
        raise ShrinkNetError(f"model file {path}: expected sizes as a list of at least 2 positive integers, got "
                             f"{str(sizes)[:100]}")
    want = {}
    for l in range(len(sizes) - 1):
        want[f"layers.{l}.weight"], want[f"layers.{l}.bias"] = (sizes[l + 1], sizes[l]), (sizes[l + 1],)
    for l in range(len(sizes) - 2):
        want[f"gate{l}"] = (sizes[l + 1],)
    if shapes != want:
        diff = sorted(set(want.items()) ^ set(shapes.items()))[:4]
        raise ShrinkNetError(f"model file {path}: its metadata says sizes {sizes}, but the stored tensors do not "
                             f"have those shapes (e.g. {', '.join(f'{k} {v}' for k, v in diff)})")
    return sizes


__all__ = ["MLP", "HIDDEN"]
