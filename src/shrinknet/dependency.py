"""The dependency graph of a model: which layers must shrink when a unit goes (Torch-Pruning's DepGraph).

Both the gates (which units can be removed on their own, what feeds which consumer) and the surgery
(:mod:`shrinknet.surgery`) read it; it lives here so that neither imports the other.
"""
from __future__ import annotations

import torch
from torch import nn

from ._validation import ShrinkNetError
from .inputs import plain

#: layers whose outputs can be units
UNIT_TYPES = (nn.Linear, nn.Conv2d)


def dependency_graph(model: nn.Module, example_input: torch.Tensor):
    """Torch-Pruning's dependency graph of `model`, traced on `example_input`."""
    import torch_pruning as tp

    try:
        # the trace follows autograd: it needs grad mode, and inputs made under inference_mode cloned
        with torch.inference_mode(False), torch.enable_grad():
            return tp.DependencyGraph().build_dependency(model, example_inputs=plain(example_input), verbose=False)
    except Exception as e:
        raise ShrinkNetError(f"model: tracing its dependency graph failed ({type(e).__name__}: {e})") from None


def out_fn(mod):
    """Torch-Pruning's handler that removes output features / channels of `mod`."""
    import torch_pruning as tp
    return tp.prune_linear_out_channels if isinstance(mod, nn.Linear) else tp.prune_conv_out_channels


def group_of(graph, model: nn.Module, unit, idxs) -> dict[str, list[int]]:
    """{consumer module name: its input indices fed by `idxs`} for removing `idxs` of `unit`.
    Raises if other layers' outputs would have to shrink with them."""
    mods = dict(model.named_modules())
    names = {id(m): n for n, m in mods.items()}
    group = graph.get_pruning_group(mods[unit.name], out_fn(mods[unit.name]), idxs=[int(i) for i in idxs])
    consumers: dict[str, list[int]] = {}
    coupled = []
    for dep, ix in group:
        mod = dep.target.module
        name = names.get(id(mod))
        if name is None or not any(True for _ in mod.parameters(recurse=False)):
            continue                                   # parameter-free ops: activations, pooling, reshapes
        handler = getattr(dep.handler, "__name__", str(dep.handler))
        if "out_channels" in handler and name not in unit.chain:
            coupled.append((not isinstance(mod, UNIT_TYPES), name, type(mod).__name__))
        elif "in_channels" in handler:
            consumers[name] = sorted(int(i) for i in ix)
    if coupled:
        _, name, kind = min(coupled)                   # name a Linear / Conv2d where there is one
        raise ShrinkNetError(f"units of {unit.name!r} cannot be removed on their own: they are coupled to the "
                             f"output of module {name!r} ({kind}), e.g. through a residual addition, a "
                             f"normalisation over features or a depthwise convolution; choose the layers "
                             f"inside the block instead")
    return consumers


__all__ = ["UNIT_TYPES", "dependency_graph", "group_of", "out_fn"]
