"""Physical removal: the smaller model computes what the gated model computes."""
import pytest
import torch
from torch import nn

import shrinknet
from shrinknet import GatedModel, ShrinkNetError, shrink
from tests.conftest import image_data, random_data, random_net, tiny_cnn, tiny_resnet


def gated_output(model, keep, X):
    gm = GatedModel(model, list(keep), X[:1])
    for l, name in enumerate(gm.unit_names):
        g = torch.zeros(gm.units[l].size, dtype=torch.float64)
        g[list(keep[name])] = 1.0
        gm.gates[l].copy_(g)
    return gm(X)


def test_mlp_class_shrinks_to_a_smaller_mlp_with_gains_folded_in():
    m = random_net([6, 5], "tanh", "softmax")
    X, _ = random_data()
    m.gate0[2] = 0.0
    m.gate1[:] = torch.tensor([1.0, 0.0, 0.5, 2.0, 0.0], dtype=torch.float64)
    small = shrink(m, {"layers.0": [0, 1, 3, 4, 5], 1: [0, 2, 3]})
    assert small.sizes == [4, 5, 3, 3] and small.n_active() == 8
    assert torch.allclose(small(X), m(X), atol=1e-12)


def test_cnn_with_batchnorm_and_a_flatten():
    net = tiny_cnn()
    X, _ = image_data()
    keep = {"0": [0, 3], "4": [1, 2, 4], "9": [0, 1, 5]}
    small = shrink(net, keep, X[:1])
    assert (small[0].out_channels, small[1].num_features, small[4].in_channels) == (2, 2, 2)
    assert (small[4].out_channels, small[5].num_features) == (3, 3)
    assert (small[9].in_features, small[9].out_features, small[11].in_features) == (12, 3, 3)
    assert torch.allclose(small(X), gated_output(net, keep, X), atol=1e-10)
    # the caller's model is untouched
    assert net[0].out_channels == 4 and net[9].in_features == 20


def test_residual_network_inner_layers():
    net = tiny_resnet()
    X, _ = image_data(n_out=3)
    keep = {"conv1": [2], "fc1": [0, 3, 4, 6]}
    small = shrink(net, keep, X[:1])
    assert small.conv1.out_channels == 1 and small.conv2.in_channels == 1 and small.fc2.in_features == 4
    assert small.stem.out_channels == 4 and small.conv2.out_channels == 4           # the residual stream stays
    assert torch.allclose(small(X), gated_output(net, keep, X), atol=1e-10)


def test_coupled_channels_name_the_module_they_are_coupled_to():
    X, _ = image_data(n_out=3)
    with pytest.raises(ShrinkNetError, match=r"units of 'conv2' cannot be removed on their own: .* 'stem'"):
        shrink(tiny_resnet(), {"conv2": [0, 1]}, X[:1])


def test_features_normalised_together_cannot_be_removed_alone():
    net = nn.Sequential(nn.Linear(3, 5), nn.LayerNorm(5), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(ShrinkNetError, match=r"coupled to the output of module '1' \(LayerNorm\)"):
        shrink(net, {"0": [0, 1]}, torch.zeros(1, 3))


def test_a_unit_that_is_not_silent_when_gated_is_caught():
    class SigmoidAfter(nn.Module):                    # functional sigmoid after the gate: f(0) = 0.5
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(torch.sigmoid(self.a(x)))
    torch.manual_seed(0)
    with pytest.raises(ShrinkNetError, match="differs from the gated one"):
        shrink(SigmoidAfter(), {"a": [0, 1]}, torch.zeros(1, 3))


def test_a_prune_result_is_a_keep():
    net = tiny_cnn()
    X, y = image_data(n=30)
    res = shrinknet.prune(net, X, y, "taylor2", loss="cross-entropy", stop=shrinknet.Stop(n_neurons=6))
    small = shrink(net, res)
    assert sum(res.hidden_sizes) - 6 == small[0].out_channels + small[4].out_channels + small[9].out_features
    assert torch.allclose(small(X), res.model(X), atol=1e-10)
    assert torch.allclose(small(X), res.apply(net)(X), atol=1e-10)
    assert torch.allclose(shrink(res.model)(X), small(X), atol=1e-12)        # a GatedModel: its own gates


def test_a_sequential_mlp_pruned_on_the_mlp_path_shrinks_by_its_own_names():
    m = random_net([6, 5], "relu", "identity")
    seq = nn.Sequential(m.layers[0], nn.ReLU(), m.layers[1], nn.ReLU(), m.layers[2])
    X, T = random_data()
    res = shrinknet.prune(seq, X, T, "brute-force", stop=5)
    assert res.unit_names == ["0", "2"]
    small = shrink(seq, res)
    assert small[0].out_features + small[2].out_features == 6
    assert torch.allclose(small(X), res.model.logits(X), atol=1e-10)


def test_the_index_form_of_keep_shrinks_every_model_kind_as_the_name_form():
    net = tiny_cnn()
    X, y = image_data(n=30)
    res = shrinknet.prune(net, X, y, "taylor2", loss="cross-entropy", stop=shrinknet.Stop(n_units=6))
    keep = res.keep()
    assert list(keep) == [0, 1, 2] and keep.names == res.unit_names == ["0", "4", "9"]
    by_index, by_name = shrink(net, keep), shrink(net, res.keep_by_name(), X[:1])
    assert [p.shape for p in by_index.parameters()] == [p.shape for p in by_name.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(by_index.state_dict().values(), by_name.state_dict().values()))
    assert torch.allclose(by_index(X), res.model(X), atol=1e-10)
    # a plain dict by index: group l is the l-th of the model's default unit groups (here 0, 4, 9)
    plain = {0: keep[0], 1: keep[1], 2: keep[2]}
    assert torch.equal(shrink(net, plain, X[:1])(X), by_index(X))


def test_the_index_form_of_keep_on_a_transformer_names_its_heads():
    from tests.test_transformers import MODELS
    spec = MODELS["bert"]
    model = spec["make"]()
    X, y = spec["data"]()
    res = shrinknet.prune(model, X, y, "l2-out", units=["heads", *spec["ffn"]], stop=shrinknet.Stop(n_units=7))
    small = shrink(model, res.keep(), X)
    ref = shrink(model, res)
    with torch.no_grad():
        assert torch.equal(small(**X).logits, ref(**X).logits)
    assert [p.shape for p in small.parameters()] == [p.shape for p in ref.parameters()]


def test_a_sequential_pruned_as_an_mlp_shrinks_back_to_a_sequential():
    m = random_net([6, 5], "relu", "identity")
    drop = nn.Dropout(0.3)
    seq = nn.Sequential(m.layers[0], nn.ReLU(), drop, m.layers[1], nn.ReLU(), m.layers[2]).eval()
    seq[3].bias = None                                    # a layer without bias stays without
    X, T = random_data()
    res = shrinknet.prune(seq, X, T, "brute-force", stop=5)
    assert isinstance(res.model, shrinknet.MLP)
    for keep in (res, res.keep()):
        small = shrink(res.model, keep)
        assert type(small) is nn.Sequential and [type(c) for c in small] == [type(c) for c in seq]
        assert small[0].out_features + small[3].out_features == 6 and small[3].bias is None
        assert small[2].p == 0.3 and not small.training and not small[2].training
        assert torch.allclose(small(X), res.model.logits(X), atol=1e-10)
    # the user's own Sequential, given to shrink with the result: the same model
    assert torch.allclose(shrink(seq, res)(X), small(X), atol=1e-10)


@pytest.mark.parametrize("keep, message", [
    ({"0": []}, "expected at least one unit to keep"),
    ({"0": [0, 9]}, r"expected distinct indices in \[0, 4\)"),
    ({"0": [1, 1]}, "distinct"),
    ({"zz": [0]}, "no module named 'zz'"),
    ({"1": [0]}, "is a BatchNorm2d"),
    ({}, "non-empty dict"),
    (None, "got None"),
])
def test_bad_keep_is_named(keep, message):
    X, _ = image_data(n=2)
    with pytest.raises(ShrinkNetError, match=message):
        shrink(tiny_cnn(), keep, X[:1])


def test_example_input_is_needed_for_a_plain_module():
    with pytest.raises(ShrinkNetError, match="example_input"):
        shrink(tiny_cnn(), {"0": [0]})


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_model_shrinks_in_its_own_dtype(dtype):
    """Removal only selects rows and columns, so the smaller model is exactly the float32 one's, in the
    model's dtype; the check against the gated model compares float32 copies (in half precision it would
    see rounding as a difference)."""
    import copy
    net, (X, _) = tiny_cnn().to(dtype), image_data()
    keep = {"0": [0, 3], "4": [1, 2, 4], "9": [0, 1, 5]}
    small = shrink(net, keep, X[:1])
    want = shrink(copy.deepcopy(net).float(), keep, X[:1].float())
    assert {p.dtype for p in small.parameters()} == {dtype}
    assert all(torch.equal(a.float(), b) for a, b in zip(small.state_dict().values(), want.state_dict().values()))
    assert (small[0].out_channels, small[4].out_channels, small[9].out_features) == (2, 3, 3)
    assert next(net.parameters()).dtype == dtype and net[0].out_channels == 4        # untouched


def test_shrink_records_the_layers_it_resized_and_a_second_shrink_adds_to_them():
    X, _ = image_data()
    small = shrink(tiny_cnn(), {"0": [0, 3]}, X[:1])
    # the conv, its BatchNorm and the consumer conv, with their shapes before
    assert small.shrinknet_resized == {"0": {"in_channels": 1, "out_channels": 4}, "1": {"num_features": 4},
                                       "4": {"in_channels": 4, "out_channels": 5}}
    smaller = shrink(small, {"9": [1, 2]}, X[:1])
    assert smaller.shrinknet_resized == {**small.shrinknet_resized, "9": {"in_features": 20, "out_features": 6},
                                         "11": {"in_features": 6, "out_features": 4}}
    again = shrink(smaller, {"0": [1]}, X[:1])
    assert again.shrinknet_resized["0"] == {"in_channels": 1, "out_channels": 4}      # the first shape stays
