"""What a model costs: parameters, FLOPs and CPU latency, before and after shrinking.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and
convolutions, 2 per multiply-add, for one sample); latency is the median wall time of a
forward pass over a batch on the CPU, after warm-up runs, with torch's current thread count.

    >>> report = compare_models(model, small, example_input=X[:1], data=(X_test, y_test))
    >>> print(report)             # a table: params, FLOPs, latency, accuracy, before / after
"""
from __future__ import annotations

import copy
import json
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from . import inputs as batch_
from ._io import write_text
from ._validation import ShrinkNetError, check_materialized, unwrap_compiled
from .finding import plain_attention
from .metrics import accuracy_of, outputs
from .results import PruneResult

#: samples per timed forward pass, timed runs, warm-up runs
LATENCY_BATCH, LATENCY_REPEATS, LATENCY_WARMUP = 64, 30, 5


@dataclass
class ModelStats:
    """Cost of one model. ``latency_ms`` is for a batch of ``latency_batch`` samples on the CPU."""
    params: int
    flops: int
    latency_ms: float
    latency_batch: int
    accuracy: float | None = None


def n_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


@torch.no_grad()
def flops(model: nn.Module, example_input) -> int:
    """FLOPs of one forward pass on a single sample (inputs as :mod:`shrinknet.inputs` takes them)."""
    from torch.utils.flop_counter import FlopCounterMode
    mode = FlopCounterMode(display=False)
    with mode, plain_attention():
        batch_.call(model, batch_.take(example_input, slice(0, 1)))
    return int(mode.get_total_flops())


@torch.no_grad()
def latency_ms(model: nn.Module, example_input: torch.Tensor, batch: int = LATENCY_BATCH,
               repeats: int = LATENCY_REPEATS, warmup: int = LATENCY_WARMUP) -> float:
    """Median milliseconds of one forward pass over `batch` copies of the example, on the CPU."""
    m = copy.deepcopy(model).cpu().eval()
    x = batch_.repeat(batch_.to(batch_.take(example_input, slice(0, 1)), device="cpu"), batch)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            batch_.call(m, x)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Share of samples classified right (y: labels or one-hot rows), as :func:`shrinknet.evaluate`
    counts it: the largest output, or for a single output, output > 0 (> 0.5 for an MLP with
    sigmoid / softmax outputs)."""
    from ._validation import check_targets
    out = outputs(model, X)
    T = y.reshape(-1, 1) if out.shape[1] == 1 and out.ndim == 2 else check_targets(y, out.shape[0], out.shape[1:])
    kind = getattr(model, "output_activation", "identity")     # an MLP's (or GatedModel's) own
    return accuracy_of(out.cpu(), T.cpu().to(out.dtype), kind)


def model_stats(model: nn.Module, example_input, *, data=None, batch: int = LATENCY_BATCH,
                repeats: int = LATENCY_REPEATS) -> ModelStats:
    """Parameters, FLOPs per sample, CPU latency (and accuracy on ``data=(X, y)``) of ``model``."""
    if not isinstance(model, nn.Module):
        raise ShrinkNetError(f"model: expected a torch nn.Module, got {type(model).__name__}")
    model = unwrap_compiled(model)
    check_materialized(model)
    p = next(iter(model.parameters()), None)
    dt, dev = (p.dtype, p.device) if p is not None else (torch.float32, None)
    x = batch_.check(example_input, "example_input", dt, dev)
    was = model.training
    model.eval()
    try:
        s = ModelStats(n_params(model), flops(model, x), latency_ms(model, x, batch, repeats), batch)
        if data is not None:
            X = batch_.check(data[0], "data X", dt, dev)
            s.accuracy = accuracy(model, X, torch.as_tensor(data[1]))
    finally:
        model.train(was)
    return s


@dataclass
class ShrinkReport:
    """Cost before and after shrinking, and what was kept."""
    before: ModelStats
    after: ModelStats
    kept: dict = field(default_factory=dict)      # unit group -> [kept, of]

    def ratio(self, what: str) -> float:
        a, b = getattr(self.before, what), getattr(self.after, what)
        return float(b) / float(a) if a else float("nan")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ratios"] = {k: self.ratio(k) for k in ("params", "flops", "latency_ms")}
        return d

    def save_json(self, path):
        return write_text(path, json.dumps(self.to_dict(), indent=1))

    def __str__(self) -> str:
        b, a = self.before, self.after
        rows = [("parameters", f"{b.params:,}", f"{a.params:,}", f"{self.ratio('params'):.1%}"),
                ("FLOPs / sample", f"{b.flops:,}", f"{a.flops:,}", f"{self.ratio('flops'):.1%}"),
                (f"CPU latency (batch {b.latency_batch})", f"{b.latency_ms:.3f} ms", f"{a.latency_ms:.3f} ms",
                 f"{self.ratio('latency_ms'):.1%}")]
        if b.accuracy is not None and a.accuracy is not None:
            rows.append(("accuracy", f"{b.accuracy:.2%}", f"{a.accuracy:.2%}", f"{100 * (a.accuracy - b.accuracy):+.2f} pt"))
        w = [max(len(r[i]) for r in rows + [("", "before", "after", "after/before")]) for i in range(4)]
        lines = ["  ".join(h.ljust(w[i]) if i == 0 else h.rjust(w[i]) for i, h in enumerate(r))
                 for r in [("", "before", "after", "after/before")] + rows]
        lines += [f"kept {k}: {v[0]} of {v[1]}" for k, v in self.kept.items()]
        return "\n".join(lines)


def compare_models(before: nn.Module, after: nn.Module, example_input, *, data=None, kept=None,
                   batch: int = LATENCY_BATCH, repeats: int = LATENCY_REPEATS) -> ShrinkReport:
    """:class:`ShrinkReport` of two models on the same example input (and data); ``kept`` is
    {group: [kept, of]} or the PruneResult the smaller model came from. The latencies are
    timed in alternating rounds, so that a change in machine load hits both alike; each is the
    lowest of the rounds' medians."""
    if isinstance(kept, PruneResult):         # units kept of each group, from the result
        kept = {n: [len(k), s] for (n, k), s in zip(kept.keep_by_name().items(), kept.hidden_sizes)}
    a = model_stats(before, example_input, data=data, batch=batch, repeats=repeats)
    b = model_stats(after, example_input, data=data, batch=batch, repeats=repeats)
    p = next(before.parameters())
    x = batch_.check(example_input, "example_input", p.dtype, p.device)
    for _ in range(2):
        a.latency_ms = min(a.latency_ms, latency_ms(before, x, batch, repeats))
        b.latency_ms = min(b.latency_ms, latency_ms(after, x, batch, repeats))
    return ShrinkReport(a, b, kept or {})


__all__ = ["ModelStats", "ShrinkReport", "model_stats", "compare_models", "n_params", "flops", "latency_ms"]
