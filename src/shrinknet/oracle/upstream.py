"""What lies upstream of a gate, computed once: module outputs recorded and replayed.

A candidate of group l changes only what the model computes after the gate of l fires. In eager
PyTorch anything finished before that moment cannot depend on the gate, so one recording pass per
chunk of data (:func:`record`) keeps the raw ``forward`` output of every module call that ends before
the gate fires; while :meth:`Recording.replaying` is on, the outermost of those calls return their
kept outputs instead of running (a pass that writes into one in place is caught before the next one),
and only the gate's module and what follows run per candidate. The modules' hooks still run around a
replayed ``forward`` (a gate on an upstream module applies to the recorded raw output as it did in
the recording), so the replayed pass computes the same numbers as a full one.

A replayed pass whose calls do not follow the recording (a model whose control flow before the gate
depends on something other than its inputs) raises :class:`ReplayMismatch`; the caller then runs full
passes instead.
"""
from __future__ import annotations

import contextlib

import torch


class ReplayMismatch(RuntimeError):
    """The replayed pass did not call the recorded modules in the recorded order."""


def _leaves(out) -> list[torch.Tensor]:
    """The tensors in a module's output (nested tuples, lists and dicts, Hugging Face ``ModelOutput``)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in _leaves(v)]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _leaves(v)]
    return []


@contextlib.contextmanager
def _patched(mods, make):
    """Each module of ``mods`` with ``forward`` replaced by ``make(module, original forward)``; the
    modules' own instance attributes restored afterwards."""
    saved = []
    try:
        for m in mods:
            saved.append((m, m.__dict__.get("forward")))
            m.forward = make(m, m.forward)
        yield
    finally:
        for m, own in reversed(saved):
            if own is None:
                del m.__dict__["forward"]
            else:
                m.forward = own


class Recording:
    """The module calls of one pass over one chunk of data: per call (module, start, end, parent call,
    raw output), in the order the calls began."""

    def __init__(self, calls, gate_at: dict):
        self.calls = calls
        self.gate_at = gate_at            # module -> index of its first call

    def plan(self, module, on_input: bool) -> dict:
        """{module: [kept raw output or None (run it), one per call the replayed pass makes]} for a
        gate on ``module`` (``on_input``: the gate scales the module's input, so it fires as the call
        begins; else its output, as its ``forward`` returns)."""
        first = self.gate_at.get(module)
        if first is None:
            return {}
        _, start, end, _, _ = self.calls[first]
        fires = start if on_input else end
        done = [c[2] <= fires if not on_input else c[2] < fires for c in self.calls]
        plan: dict = {}
        skipped = [False] * len(self.calls)
        for i, (m, _, _, parent, out) in enumerate(self.calls):
            if parent >= 0 and (skipped[parent] or (done[parent])):
                skipped[i] = True          # inside a replayed call: never made
                continue
            plan.setdefault(m, []).append(out if done[i] else None)
        return {m: outs for m, outs in plan.items() if any(o is not None for o in outs)}

    @contextlib.contextmanager
    def replaying(self, plan: dict):
        """While on, each call of a planned module returns its kept output or runs, in the recorded
        order; :class:`ReplayMismatch` where a pass makes more calls than planned, or where a pass
        wrote into a kept output (in place: the next pass would read the changed values)."""
        count = {m: 0 for m in plan}
        kept = [t for outs in plan.values() for o in outs if o is not None for t in _leaves(o)]
        versions = [t._version for t in kept]

        def make(m, orig):
            outs = plan[m]

            def forward(*args, **kwargs):
                k = count[m]
                if k >= len(outs):
                    raise ReplayMismatch(f"module {type(m).__name__} called more often than in the recording")
                count[m] = k + 1
                if outs[k] is None:
                    return orig(*args, **kwargs)
                return outs[k]
            return forward

        def reset():
            if any(t._version != v for t, v in zip(kept, versions)):
                raise ReplayMismatch("a replayed module's output was changed in place")
            for m in count:
                count[m] = 0
        with _patched(list(plan), make):
            yield reset


@torch.no_grad()
def record(model, Xb) -> Recording:
    """Run ``model`` (a :class:`~shrinknet.gating.GatedModel`) on ``Xb`` once, keeping every module
    call's raw output."""
    calls: list = []
    stack: list[int] = []
    clock = [0]
    first: dict = {}

    def make(m, orig):
        def forward(*args, **kwargs):
            i = len(calls)
            first.setdefault(m, i)
            calls.append([m, clock[0], None, stack[-1] if stack else -1, None])
            clock[0] += 1
            stack.append(i)
            try:
                out = orig(*args, **kwargs)
            finally:
                stack.pop()
            calls[i][2] = clock[0]
            clock[0] += 1
            calls[i][4] = out
            return out
        return forward
    with _patched(list(model.model.modules()), make):
        model(Xb)
    return Recording([tuple(c) for c in calls], first)


def gate_module(model, layer: int):
    """(the module whose call the gate of ``layer`` acts on, whether it scales that call's input)."""
    u = model.units[layer]
    mods = dict(model.model.named_modules())
    return mods[u.gate_at], bool(u.on_input and u.branch is None)
