"""Attention heads as units, in the attention styles of :data:`shrinknet.blocks.ATTENTION_STYLES`.

* **found**: a module of a registered attention style (:func:`shrinknet.blocks.register_attention_style`)
  gives its heads as a :class:`~shrinknet.blocks.Site` (q/k/v rows, the output projection's columns;
  with grouped key/value heads a unit is one key/value head with the query heads that read it).
  ``units="heads"`` picks every such module; a module that looks like attention but is of no known style
  is refused by name. ``nn.MultiheadAttention``, whose output projection no hook sees, is replaced in a
  working copy by :class:`shrinknet.attention.MultiheadAttention`, and nanoGPT's hand-written attention by
  :class:`shrinknet.causal_attention.CausalSelfAttention` (:meth:`HeadsKind.prepare`);
* **gated**, **cut** as every block-of-columns unit (:mod:`shrinknet.units.site`); the cut also sets
  the head counts the module keeps (its style says which), and removing every head keeps one silent
  head (attention code cannot run with none);
* **saved** as each attention module's head counts, and the names of the modules where shrinknet's
  MultiheadAttention stands in for torch's (metadata ``multihead_attention``) and its
  CausalSelfAttention for nanoGPT's (``causal_attention``), restored on load;
* **costed** by measuring the cut.
"""
from __future__ import annotations

import json

from torch import nn

from .. import blocks
from .._validation import ShrinkNetError
from .site import SiteKind

#: the metadata key of the modules where shrinknet's MultiheadAttention replaced torch's
META = "multihead_attention"
#: ... and of those where shrinknet's CausalSelfAttention replaced nanoGPT's
CAUSAL_META = "causal_attention"


class HeadsKind(SiteKind):
    """Attention heads (see the module's docstring)."""
    name = "heads"
    noun = "attention module"
    selectors = ("heads",)

    def select(self, selector, trace):
        heads, unknown = trace.heads, trace.unknown
        if not heads:
            extra = f" (attention modules of kinds it does not support: {', '.join(unknown[:5])})" if unknown else ""
            raise ShrinkNetError(f"units: 'heads' selects attention heads, but the model has no supported "
                                 f"attention module{extra}")
        if unknown:
            raise ShrinkNetError(f"units: attention module {unknown[0]!r} ({type(trace.mods[unknown[0]]).__name__}) is "
                                 f"not a supported attention implementation; name the supported ones instead "
                                 f"(e.g. {heads[0].name!r})")
        return [s.name for s in heads]

    def site(self, name, trace):
        return next((s for s in trace.heads if s.name == name), None)

    def prepare(self, model: nn.Module) -> None:
        # nn.MultiheadAttention computes its output projection through a functional call that no hook
        # sees, with heads tied to its width: swap in the equivalent module whose heads can be gated
        if any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
            from ..attention import replace_torch_attention
            replace_torch_attention(model)
        # nanoGPT's hand-written attention sizes its heads from its input width: swapped likewise, where
        # the drop-in computes the same output (one that computes something else stays, its heads unknown)
        from ..causal_attention import looks_like_nanogpt, replace_causal_attention
        if any(looks_like_nanogpt(m) for m in model.modules()):
            replace_causal_attention(model, strict=False)

    def cut(self, model, unit, kept, *, graph=None, example_input=None, fill=None) -> None:
        left = blocks.cut(model, unit.site, kept, silent=True)
        blocks.set_head_counts(dict(model.named_modules()), unit.site, left)

    # ---- saved ------------------------------------------------------------------------------------
    def shapes(self, model) -> dict:
        return blocks.head_counts(model)          # (the attention styles say which and where)

    def resizer(self, model, path):
        keeps_heads = set(blocks.head_counts(model))      # read before any layer is resized

        def resize(name, m, attrs) -> bool:
            if name not in keeps_heads or not set(attrs) <= blocks.head_attrs():
                return False
            for a, v in attrs.items():
                if type(getattr(m, a, None)) is not int:
                    raise ShrinkNetError(f"model file {path}: attention module {name!r} of the template has no "
                                         f"head count {a!r}")
                setattr(m, a, int(v))
            return True
        return resize

    def save_meta(self, model) -> dict:
        from ..attention import MultiheadAttention
        from ..causal_attention import CausalSelfAttention
        swapped = [n for n, m in model.named_modules() if isinstance(m, MultiheadAttention)]
        causal = [n for n, m in model.named_modules() if isinstance(m, CausalSelfAttention)]
        return {**({META: swapped} if swapped else {}), **({CAUSAL_META: causal} if causal else {})}

    def load_meta(self, model, meta, where) -> None:
        """Put shrinknet's MultiheadAttention / CausalSelfAttention where the saved model had them in
        place of torch's / nanoGPT's."""
        causal = json.loads(meta.get(CAUSAL_META, "[]"))
        if causal:
            from ..causal_attention import as_template
            try:
                as_template(model, causal)
            except (ShrinkNetError, AttributeError) as e:
                raise ShrinkNetError(f"{where}: {e}") from None
        names = json.loads(meta.get(META, "[]"))
        if not names:
            return
        from ..attention import MultiheadAttention
        mods = dict(model.named_modules())
        for name in names:
            m = mods.get(str(name))
            if not isinstance(m, nn.MultiheadAttention):
                raise ShrinkNetError(f"{where}: module {name!r} is not an nn.MultiheadAttention of the template")
            parent, _, child = str(name).rpartition(".")
            setattr(mods[parent] if parent else model, child, MultiheadAttention.from_torch(m))


HEADS = HeadsKind()

__all__ = ["CAUSAL_META", "HEADS", "HeadsKind", "META"]
