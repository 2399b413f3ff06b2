"""The unit-kind interface and its registry (shrinknet.units.base): a kind added through the registry
alone is found, gated, pruned, cut, saved and costed; and the generic machinery asks the registry,
never which kind it holds."""
import ast
from pathlib import Path

import pytest
import torch
from torch import nn

import shrinknet
from shrinknet import GatedModel, ShrinkNetError, Stop, load_model, prune, save_model, shrink, unit_costs
from shrinknet.finding import find_units
from shrinknet.units import KINDS, Unit, UnitKind, kind_of, register_unit_kind
from shrinknet.units.base import Trace

SRC = Path(shrinknet.__file__).parent


class Rows(UnitKind):
    """A toy kind: the rows of a Linear named "<module>:rows" (or every Linear but the last with
    units="rows"), gated on the Linear's own output (no BatchNorm / activation chain) and cut by hand:
    its rows, and the columns of the next Linear called."""
    name = "rows"
    noun = "row block"
    selectors = ("rows",)

    def claims(self, name):
        return name.endswith(":rows")

    def check_name(self, name, trace):
        if self.unit(name, trace) is None:
            raise ShrinkNetError(f"units: no Linear {name[:-5]!r}")
        return name

    def select(self, selector, trace):
        linears = [n for n, m, *_ in trace.calls if isinstance(m, nn.Linear)]
        return [n + ":rows" for n in linears[:-1]]

    def unit(self, name, trace):
        if not name.endswith(":rows"):
            return None
        call = trace.call(name[:-5])
        if call is None or not isinstance(call[1], nn.Linear):
            return None
        return Unit(name, self.name, call[1].out_features, name[:-5], (name[:-5],))

    def first_module(self, unit):
        return unit.gate_at

    def cut(self, model, unit, kept, **_):
        names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        mine, nxt = model.get_submodule(unit.gate_at), model.get_submodule(names[names.index(unit.gate_at) + 1])
        idx = torch.tensor(sorted(kept))
        with torch.no_grad():
            mine.weight = nn.Parameter(mine.weight[idx].clone())
            mine.bias = nn.Parameter(mine.bias[idx].clone())
            mine.out_features = len(kept)
            nxt.weight = nn.Parameter(nxt.weight[:, idx].clone())
            nxt.in_features = len(kept)


@pytest.fixture
def rows():
    kind = register_unit_kind(Rows())
    try:
        yield kind
    finally:
        del KINDS["rows"]


def _net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    X = torch.randn(40, 3, dtype=torch.float64)
    return net, X, net(X).detach() + 0.1 * torch.randn(40, 2, dtype=torch.float64)


def test_a_kind_registered_alone_is_found_gated_pruned_cut_saved_and_costed(rows, tmp_path):
    net, X, T = _net()
    gm = GatedModel(net, units="rows", example_input=X[:1])
    assert [(u.name, u.kind, u.size) for u in gm.units] == [("0:rows", "rows", 5), ("2:rows", "rows", 4)]
    # gated on the Linear's output: gate 0 on row 1 of layer 0 is the net with that row's weights zeroed
    gm.set_gate(0, 1, 0.0)
    want = net[0].weight.detach().clone()
    bare = gm.bare_copy()
    with torch.no_grad():
        bare[0].weight[1] = 0.0
        bare[0].bias[1] = 0.0
    assert torch.equal(gm(X), bare(X)) and torch.equal(net[0].weight, want)     # (the user's net untouched)
    gm.reset_gates()
    # the oracle prunes through the gate; shrink cuts with the kind's own cut and checks it against the gate
    res = prune(gm, X, T, criterion="brute-force", stop=Stop(n_units=3), loss="sse")
    assert len(res.removed) == 3
    # the first removal is the unit whose gate costs least, as the brute-force score on the gated model says
    scores = shrinknet.score(gm, X, T, "brute-force", loss="sse")
    flat = [(s, (l, j)) for l, sl in enumerate(scores) for j, s in enumerate(sl)]
    assert tuple(res.removed[0]) == min(flat)[1]
    keep = res.keep_by_name()
    small = shrink(gm, res)
    assert [small[0].out_features, small[2].out_features] == [len(keep["0:rows"]), len(keep["2:rows"])]
    gm.set_gates([torch.isin(torch.arange(k), torch.tensor(keep[n])).double()
                  for n, k in zip(gm.unit_names, gm.hidden_sizes)])
    assert torch.allclose(small(X), gm(X), rtol=0, atol=1e-12)
    # saved and loaded as any shrunk Sequential (the Linear kind records the shapes the cut changed)
    back = load_model(save_model(small, tmp_path / "rows.safetensors"))
    assert torch.equal(back(X), small(X))
    # costed by measuring the kind's cut: a row of layer 0 is 3 weights + a bias in and 4 weights out
    gm.reset_gates()
    assert unit_costs(gm) == [shrinknet.UnitCost(3 + 1 + 4, 2 * (3 + 4)), shrinknet.UnitCost(5 + 1 + 2, 2 * (5 + 2))]


def test_a_name_of_the_kind_s_form_is_checked_by_the_kind(rows):
    net, X, _ = _net()
    assert [u.name for u in find_units(net, X[:1], ["2:rows"])] == ["2:rows"]
    with pytest.raises(ShrinkNetError, match="units: no Linear '9'"):
        GatedModel(net, units=["9:rows"], example_input=X[:1])


def test_registry_order_places_a_kind_and_refuses_what_is_not_one():
    before = list(KINDS)
    assert before == ["sublayer", "heads", "gated-ffn", "ffn", "conv2d", "linear"]
    toy = Rows()
    try:
        register_unit_kind(toy, before="linear")
        assert list(KINDS) == [*before[:-1], "rows", "linear"]
        register_unit_kind(toy)                         # a name already there: replaced in place
        assert list(KINDS) == [*before[:-1], "rows", "linear"] and KINDS["rows"] is toy
    finally:
        del KINDS["rows"]
    assert list(KINDS) == before
    with pytest.raises(ShrinkNetError, match="kind: expected a shrinknet.units.UnitKind, got str"):
        register_unit_kind("rows")
    with pytest.raises(ShrinkNetError, match="kind: expected a non-empty name, got ''"):
        register_unit_kind(UnitKind())
    with pytest.raises(ShrinkNetError, match="before: expected a registered unit kind .*got 'nope'"):
        register_unit_kind(Rows(), before="nope")
    assert "rows" not in KINDS
    with pytest.raises(ShrinkNetError, match="units: 'x' is of kind 'nope', which is not registered"):
        kind_of(Unit("x", "nope", 1, "x", ("x",)))


def test_the_default_gate_scales_the_channel_dimension_exactly():
    kind, u = UnitKind(), Unit("a", "linear", 3, "a", ("a",))
    t = torch.arange(12.0).reshape(2, 2, 3)                               # (B, positions, K)
    g = torch.tensor([1.0, 0.0, 0.5])
    assert torch.equal(kind.gate(u, t, g), t * torch.tensor([1.0, 0.0, 0.5]))
    rows = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 2.0]])              # per-sample gates (B, K)
    assert torch.equal(kind.gate(u, t, rows), t * rows[:, None, :])
    assert kind.gate(u, t, rows)[1, 1].tolist() == [0.0, 10.0, 22.0]


def test_trace_counts_calls_and_caches_what_kinds_derive():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    x = torch.ones(1, 2)
    calls = [("0", net[0], x, net[0](x)), ("1", net[1], None, None), ("0", net[0], x, None)]
    t = Trace(net, calls, None, [], [], [])
    assert t.counts == {"0": 2, "1": 1} and t.call("1")[1] is net[1] and t.call("2") is None
    assert not t.transformer
    made = []
    assert t.cached("k", lambda: made.append(1) or 7) == 7 and t.cached("k", lambda: made.append(1) or 8) == 7
    assert made == [1]


# ---- the generic machinery asks the registry -------------------------------------------------------

DISPATCHERS = ["finding.py", "gating.py", "surgery.py", "saving.py", "costs.py"]


def _kind_questions(path: Path) -> list[str]:
    """Where a file asks which kind a unit is: a comparison with a ``.kind`` attribute or a built-in
    kind's name, a read of ``.site`` / ``.branch``, an isinstance against nn.Conv2d / nn.MultiheadAttention."""
    names = set(KINDS)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            if any((isinstance(side, ast.Attribute) and side.attr == "kind") or (
                    isinstance(side, ast.Constant) and side.value in names) for side in [node.left, *node.comparators]):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Attribute) and node.attr in ("site", "branch"):
            found.append(f"{path.name}:{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            if any(getattr(a, "attr", None) in ("Conv2d", "MultiheadAttention") for a in ast.walk(node.args[1])):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return sorted(found, key=lambda f: int(f.split(":")[1]))


@pytest.mark.parametrize("name", DISPATCHERS)
def test_the_dispatching_modules_never_ask_which_kind_they_hold(name):
    assert _kind_questions(SRC / name) == []


def test_the_kind_question_finder_finds_kind_questions(tmp_path):
    p = tmp_path / "x.py"
    p.write_text("if u.kind == 'conv2d':\n    pass\nif u.branch is not None:\n    pass\n"
                 "ok = isinstance(m, nn.Conv2d)\nfine = u.kind_of\n")
    assert _kind_questions(p) == ["x.py:1: u.kind == 'conv2d'", "x.py:3: .branch", "x.py:5: isinstance(m, nn.Conv2d)"]
