"""Every criterion on models other than the MLP class: against the MLP class's own implementations,
the literal definition, finite differences and hand-worked values."""
import numpy as np
import pytest
import torch
from torch import nn

import shrinknet
from shrinknet import GatedModel
from shrinknet.criteria import available_criteria, get_criterion
from tests.conftest import image_data, random_data, random_net, tiny_cnn, tiny_resnet

ACT = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}
SAME_AS_MLP = ["brute-force", "brute-force-literal", "taylor1", "taylor1-abs", "taylor2-exact", "l1-in", "l2-in",
               "l1-out", "l2-out", "mean-activation", "activation-variance", "apoz", "random"]


def as_sequential(m):
    A = ACT[m.hidden_activation]
    mods = []
    for lin in m.layers[:-1]:
        mods += [lin, A()]
    return nn.Sequential(*mods, m.layers[-1])


def close(a, b, tol=1e-9):
    for x, y in zip(a, b):
        assert np.array_equal(np.isnan(x), np.isnan(y))
        np.testing.assert_allclose(x[~np.isnan(x)], y[~np.isnan(y)], rtol=tol, atol=tol)


@pytest.mark.parametrize("act, out, loss", [("sigmoid", "sigmoid", "sse"), ("relu", "softmax", "cross-entropy"),
                                            ("tanh", "identity", "sse"), ("gelu", "sigmoid", "cross-entropy")])
@pytest.mark.parametrize("criterion", SAME_AS_MLP)
def test_a_sequential_gated_generically_scores_as_the_mlp_class(act, out, loss, criterion):
    m = random_net([5, 4], act, out, n_in=6)
    X, T = random_data(n=30, n_in=6)
    m.gate0[1] = 0.0                                   # one neuron already removed
    seq = as_sequential(m)
    want = shrinknet.score(m, X, T, criterion, loss)
    gm = GatedModel(seq, ["0", "2"], X[:1], out)
    gm.set_gates([g.clone() for g in m.gates])
    got = shrinknet.score(gm, X, T, criterion, loss)
    close(want, got, 1e-7)


@pytest.mark.parametrize("out, loss", [("softmax", "cross-entropy"), ("identity", "sse"), ("sigmoid", "sse")])
def test_taylor2_is_the_exact_second_order_estimate_on_relu_nets(out, loss):
    m = random_net([5, 4], "relu", out, n_in=6)
    X, T = random_data(n=30, n_in=6)
    exact = shrinknet.score(m, X, T, "taylor2-exact", loss)
    close(exact, shrinknet.score(as_sequential(m), X, T, "taylor2", loss, units=["0", "2"], output_activation=out))


def test_hand_worked_values():
    # x = 1 -> h = relu([1, 2] x) = (1, 2) -> z = 3 h0 + 4 h1 = 11, t = 0, E = z^2 / 2 = 60.5
    net = nn.Sequential(nn.Linear(1, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [2.0]]))
        net[2].weight.copy_(torch.tensor([[3.0, 4.0]]))
    X, T = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    kw = dict(loss="sse", units=["0"])
    assert shrinknet.score(net, X, T, "brute-force", **kw)[0].tolist() == [-28.5, -56.0]   # E(8) - E, E(3) - E
    assert shrinknet.score(net, X, T, "taylor1", **kw)[0].tolist() == [-33.0, -88.0]       # -h_j w_j z
    assert shrinknet.score(net, X, T, "taylor2", **kw)[0].tolist() == [-28.5, -56.0]       # + (h_j w_j)^2 / 2
    assert shrinknet.score(net, X, T, "l1-out", **kw)[0].tolist() == [3.0, 4.0]
    assert shrinknet.score(net, X, T, "mean-activation", **kw)[0].tolist() == [1.0, 2.0]


def _gated(net, X, units=None):
    return GatedModel(net, units, X[:1])


@pytest.mark.parametrize("make", [tiny_cnn, tiny_resnet])
def test_batched_brute_force_equals_the_literal_definition(make):
    net = make()
    n_out = net(torch.zeros(1, 1, 8, 8, dtype=torch.float64)).shape[1]
    X, y = image_data(n=20, n_out=n_out)
    gm = _gated(net, X)
    T = torch.nn.functional.one_hot(y, n_out).double()
    gm.set_gate(0, 1, 0.0)
    fast = get_criterion("brute-force")(gm, X, T, "cross-entropy")
    lit = get_criterion("brute-force-literal")(gm, X, T, "cross-entropy")
    close([f.numpy() for f in fast], [l.numpy() for l in lit], 1e-10)
    E0 = shrinknet.evaluate(gm, X, T, "cross-entropy")["error"]
    gm.set_gate(1, 2, 0.0)
    assert abs(shrinknet.evaluate(gm, X, T, "cross-entropy")["error"] - E0 - float(fast[1][2])) < 1e-9


def _error(gm, X, T, loss="cross-entropy"):
    return float(shrinknet.evaluate(gm, X, T, loss)["error"])


@pytest.mark.parametrize("act", [nn.ReLU, nn.GELU, nn.Tanh])
def test_taylor_terms_against_finite_differences_in_the_gate(act):
    X, y = image_data(n=16)
    gm = _gated(tiny_cnn(act=act), X)
    T = torch.nn.functional.one_hot(y, 4).double()
    t1 = get_criterion("taylor1")(gm, X, T, "cross-entropy")
    t2x = get_criterion("taylor2-exact")(gm, X, T, "cross-entropy")
    h = 1e-4
    for l, u in [(0, 1), (1, 3), (2, 5)]:
        E = [None] * 3
        for i, s in enumerate((-h, 0.0, h)):
            gm.set_gate(l, u, 1.0 + s)
            E[i] = _error(gm, X, T)
        gm.set_gate(l, u, 1.0)
        d1 = (E[2] - E[0]) / (2 * h)                    # dE/dg
        d2 = (E[2] - 2 * E[1] + E[0]) / h ** 2           # d2E/dg2
        assert abs(float(t1[l][u]) - (-d1)) < 1e-6 * max(1, abs(d1))
        assert abs(float(t2x[l][u]) - (-d1 + 0.5 * d2)) < 1e-4 * max(1, abs(d2))


def test_taylor2_drops_only_the_activation_curvature():
    # ReLU: taylor2 == taylor2-exact; GELU: they differ (the net is not linear in the gate)
    X, y = image_data(n=16)
    for act, same in [(nn.ReLU, True), (nn.GELU, False)]:
        gm = _gated(tiny_cnn(act=act), X)
        T = torch.nn.functional.one_hot(y, 4).double()
        a = torch.cat(get_criterion("taylor2")(gm, X, T, "cross-entropy"))
        b = torch.cat(get_criterion("taylor2-exact")(gm, X, T, "cross-entropy"))
        assert torch.allclose(a, b, atol=1e-9) == same


def test_every_registered_criterion_runs_on_a_cnn_and_marks_removed_units():
    X, y = image_data(n=12)
    gm = _gated(tiny_cnn(), X)
    gm.set_gate(1, 0, 0.0)
    T = torch.nn.functional.one_hot(y, 4).double()
    for name in available_criteria():
        s = get_criterion(name)(gm, X, T, "cross-entropy")
        assert [v.shape for v in s] == [(4,), (5,), (6,)], name
        assert torch.isnan(s[1][0]) and torch.isfinite(s[1][1:]).all(), name


def test_weight_norms_follow_the_flatten():
    X, _ = image_data(n=2)
    net = tiny_cnn()
    gm = _gated(net, X)
    out = get_criterion("l1-out")(gm, X, None, "sse")
    # channel c of conv "4" feeds columns 4c..4c+3 of the Linear after the 2x2 flatten
    want = net[9].weight.detach().abs().reshape(6, 5, 4).sum((0, 2))
    assert torch.allclose(out[1], want)
    gm.set_gate(2, 0, 0.0)                             # a removed consumer row no longer counts
    out = get_criterion("l1-out")(gm, X, None, "sse")
    assert torch.allclose(out[1], want - net[9].weight.detach().abs().reshape(6, 5, 4)[0].sum(1))
    l2in = get_criterion("l2-in")(gm, X, None, "sse")
    assert torch.allclose(l2in[0], net[0].weight.detach().reshape(4, -1).norm(dim=1))


def test_a_criterion_registered_in_the_older_form_works_on_any_model():
    # fn(model, X, T, loss): one registry, every criterion on the MLP class and any gated model alike
    shrinknet.register_criterion("older-form-test", lambda model, X, T, loss: [g * 0 + l for l, g in
                                                                              enumerate(model.gates)], overwrite=True)
    X, y = image_data(n=4)
    s = shrinknet.score(tiny_cnn(), X, y, "older-form-test", "cross-entropy")
    assert [list(v) for v in s] == [[0.0] * 4, [1.0] * 5, [2.0] * 6]


@pytest.mark.parametrize("make", [tiny_cnn, tiny_resnet])
def test_the_vmapped_oracle_equals_copies_of_the_data_and_the_definition_in_small_chunks(make):
    """Under vmap the layers upstream of the unit run once per chunk; with one candidate a chunk, many
    chunks, the errors are the replicated copies' and the definition's."""
    from shrinknet.oracle import replicated
    net = make()
    n_out = net(torch.zeros(1, 1, 8, 8, dtype=torch.float64)).shape[1]
    X, y = image_data(n=20, n_out=n_out)
    ctx = shrinknet.PruningContext.start(net, X, y)
    ctx.set_gate(0, 1, 0.0)
    ctx.model.downstream = [10 ** 9] * ctx.model.n_hidden_layers     # budget: one candidate per pass
    ctx.model.batch_rows = 7                                           # and three passes over the data
    for l, k in enumerate(ctx.model.hidden_sizes):
        units = torch.arange(k)
        assert replicated._vmap_chunks(ctx.model, l, 20, k) == (7, 1)
        vm = shrinknet.oracle.errors_without(ctx, l, units)
        lit = shrinknet.oracle.literal_errors(ctx, l, units)
        ctx.evaluator.vmap.ok = False
        rep = shrinknet.oracle.errors_without(ctx, l, units)
        ctx.evaluator.vmap.ok = True
        np.testing.assert_allclose(vm.numpy(), lit.numpy(), rtol=1e-12)
        np.testing.assert_allclose(rep.numpy(), lit.numpy(), rtol=1e-12)


class ItemInForward(nn.Module):
    """A model that reads a value out of a tensor in its forward pass, which vmap cannot batch."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        scale = 1.0 + 0.0 * float(h.detach().sum())  # data-dependent Python value
        return self.fc2(h) * scale


def test_a_model_vmap_cannot_run_falls_back_to_copies_of_the_data_with_one_warning():
    torch.manual_seed(0)
    X, y = torch.randn(15, 4, dtype=torch.float64), torch.randint(0, 3, (15,))
    ctx = shrinknet.PruningContext.start(ItemInForward().double(), X, y)
    units = torch.arange(6)
    with pytest.warns(RuntimeWarning, match="cannot run this model under torch.func.vmap"):
        fast = shrinknet.oracle.errors_without(ctx, 0, units)
    np.testing.assert_allclose(fast.numpy(), shrinknet.oracle.literal_errors(ctx, 0, units).numpy(), rtol=1e-12)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # remembered: no second attempt, no second warning
        shrinknet.oracle.errors_without(ctx, 0, units)
