"""prune() / score() on any nn.Module, as for the MLP class."""
import numpy as np
import pytest
import torch
from torch import nn

import shrinknet
from shrinknet import GatedModel, PruneResult, ShrinkNetError, Stop
from tests.conftest import image_data, random_data, random_net, tiny_cnn


def test_generic_brute_force_prunes_a_sequential_exactly_as_the_mlp_class():
    m = random_net([6, 5], "relu", "softmax")
    seq = nn.Sequential(m.layers[0], nn.ReLU(), m.layers[1], nn.ReLU(), m.layers[2])
    X, T = random_data()
    a = shrinknet.prune(m, X, T, "brute-force", loss="cross-entropy")
    b = shrinknet.prune(seq, X, T, "brute-force", loss="cross-entropy", units=["0", "2"], output_activation="softmax")
    # the same decisions, up to exact ties (near the end, removing the last unit of layer 0 or the one
    # of layer 1 it feeds changes the error identically; rounding then picks either)
    assert a.removed[:9] == b.removed[:9] and np.allclose(a.errors, b.errors, atol=1e-10)
    assert np.allclose(a.predicted, b.predicted, atol=1e-10)
    assert b.unit_names == ["0", "2"] and isinstance(b.model, GatedModel)


def test_prune_a_cnn_with_stops_and_test_tracking(tmp_path):
    net = tiny_cnn()
    X, y = image_data(n=40)
    Xt, yt = image_data(n=20, seed=1)
    before = net(X)
    r = shrinknet.prune(net, X, y, "taylor2", loss="cross-entropy", test=(Xt, yt),
                        stop=Stop(fraction=0.5, max_error_increase=0.5))
    assert torch.equal(net(X), before)                                      # untouched
    assert 0 < r.n_removed <= 7 and len(r.test_errors) == r.n_removed == len(r.accuracies)
    assert r.input_shape == [1, 8, 8] and r.unit_names == ["0", "4", "9"]
    assert all(e <= r.initial_error * 1.5 + 1e-12 for e in r.errors)
    r.save_json(tmp_path / "r.json")
    back = PruneResult.load_json(tmp_path / "r.json")
    assert back.unit_names == r.unit_names and back.keep_by_name() == r.keep_by_name()
    small = shrinknet.shrink(net, back)
    assert torch.allclose(small(X), r.model(X), atol=1e-10)


def test_iterative_brute_force_is_greedy_on_the_true_error():
    net = tiny_cnn()
    X, y = image_data(n=20)
    r = shrinknet.prune(net, X, y, "brute-force", loss="cross-entropy", stop=3)
    gm = GatedModel(net, example_input=X[:1])
    T = torch.nn.functional.one_hot(y, 4).double()
    for (l, u), E in zip(r.removed, r.errors):                              # a literal greedy loop
        best = None
        for ll, g in enumerate(gm.gates):
            for uu in torch.nonzero(g).flatten().tolist():
                gm.set_gate(ll, uu, 0.0)
                e = shrinknet.evaluate(gm, X, T, "cross-entropy")["error"]
                gm.set_gate(ll, uu, 1.0)
                if best is None or e < best[0] - 1e-12:
                    best = (e, ll, uu)
        assert (l, u) == best[1:] and abs(E - best[0]) < 1e-9
        gm.set_gate(l, u, 0.0)


def test_score_on_a_gated_model_and_integer_labels():
    X, y = image_data(n=10)
    gm = GatedModel(tiny_cnn(), ["4"], X[:1])
    s = shrinknet.score(gm, X, y, "brute-force", "cross-entropy")
    assert len(s) == 1 and s[0].shape == (5,)


@pytest.mark.parametrize("kwargs, message", [
    (dict(compensation="lstsq"), "works on shrinknet.MLP and on transformer units"),
    (dict(inplace=True), "inplace=True: expected a shrinknet.MLP"),
    (dict(units=["nope"]), "no module named"),
    (dict(criterion="nope"), "unknown criterion"),
])
def test_bad_options_are_named(kwargs, message):
    X, y = image_data(n=6)
    with pytest.raises(ShrinkNetError, match=message):
        shrinknet.prune(tiny_cnn(), X, y, **{"loss": "cross-entropy", **kwargs})


def test_bad_data_is_named():
    X, y = image_data(n=6)
    with pytest.raises(ShrinkNetError, match="expected 6 labels"):
        shrinknet.prune(tiny_cnn(), X, y[:5], loss="cross-entropy")
    with pytest.raises(ShrinkNetError, match="NaN/inf"):
        shrinknet.prune(tiny_cnn(), X * float("nan"), y, loss="cross-entropy")
    with pytest.raises(ShrinkNetError, match="forward pass on example input"):
        shrinknet.prune(tiny_cnn(), X[:, :, :5], y, loss="cross-entropy")
    with pytest.raises(ShrinkNetError, match="test X: expected samples of shape"):
        shrinknet.prune(tiny_cnn(), X, y, loss="cross-entropy", test=(X[:, :, :5], y))
    with pytest.raises(ShrinkNetError, match="units: an MLP's units"):
        shrinknet.prune(random_net([3]), *random_data(), units=["layers.0"])
    net = tiny_cnn()
    with torch.no_grad():
        net[9].weight[0, 0] = float("inf")
    with pytest.raises(ShrinkNetError, match="model parameter 9.weight"):
        shrinknet.prune(net, X, y, loss="cross-entropy")
