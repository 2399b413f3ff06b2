"""What removing one unit saves, against hand-worked counts and against shrink itself."""
import pytest
import torch

import shrinknet
from shrinknet import UnitCost, unit_costs
from shrinknet.stats import flops, n_params


def test_mlp_neuron_costs_are_its_weights_in_and_out():
    m = shrinknet.MLP([4, 6, 5, 3])
    # layer 0: 4 weights in, a bias, 5 weights out; FLOPs 2 per multiply-add: 2 (4 + 5)
    assert unit_costs(m) == [UnitCost(10, 18), UnitCost(10, 18)]
    m.set_gate(1, 0, 0.0)           # one neuron of layer 1 gone: a layer-0 neuron now feeds 4
    assert unit_costs(m) == [UnitCost(9, 16), UnitCost(10, 18)]


def test_conv_channel_costs_its_filter_batchnorm_and_the_columns_after_the_flatten():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 6 * 6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    gm = shrinknet.GatedModel(net, example_input=torch.randn(1, 3, 8, 8))
    conv, fc = unit_costs(gm)
    # filter 27 + bias + BatchNorm's weight and bias, and 36 columns of the Linear (x 5 rows)
    assert conv == UnitCost(27 + 1 + 2 + 36 * 5, 2 * (36 * 27 + 36 * 5))
    assert fc == UnitCost(144 + 1 + 2, 2 * (144 + 2))


def test_attention_head_and_ffn_neuron_costs_equal_what_shrink_removes():
    from transformers import BertConfig, BertForSequenceClassification
    torch.manual_seed(0)
    D, H, I, T = 16, 2, 12, 6
    cfg = BertConfig(vocab_size=40, hidden_size=D, num_hidden_layers=1, num_attention_heads=H, intermediate_size=I,
                     max_position_embeddings=16, num_labels=2)
    bert = BertForSequenceClassification(cfg).eval()
    x = {"input_ids": torch.randint(0, 40, (1, T))}
    gm = shrinknet.GatedModel(bert, units=["heads", "ffn"], example_input=x)
    heads, ffn = unit_costs(gm)
    d = D // H
    assert heads.params == 3 * (D * d + d) + D * d           # its q, k, v rows and its output columns
    assert ffn.params == D + 1 + D                           # its row in, bias, column out
    assert ffn.flops == 2 * T * (D + D)
    # its projections' products, as stats.flops counts them (it does not see the products inside
    # scaled_dot_product_attention, so a head's scores are not in its cost)
    assert heads.flops == 2 * T * (3 * D * d + D * d)
    # against shrink: removing two heads' worth and a neuron saves exactly twice / once the cost
    small = shrinknet.shrink(gm, {gm.unit_names[0]: [1], gm.unit_names[1]: list(range(1, I))})
    base = shrinknet.shrink(gm, {n: list(range(k)) for n, k in zip(gm.unit_names, gm.hidden_sizes)})
    assert n_params(base) - n_params(small) == heads.params + ffn.params
    assert flops(base, x) - flops(small, x) == heads.flops + ffn.flops


def test_a_group_with_nothing_left_costs_nothing_and_plain_modules_are_refused():
    m = shrinknet.MLP([3, 2, 2])
    m.set_gate(0, 0, 0.0)
    assert unit_costs(m) == [UnitCost(3 + 1 + 2, 2 * (3 + 2))]    # the last unit: what it takes with it
    m.set_gate(0, 1, 0.0)
    assert unit_costs(m) == [UnitCost(0, 0)]
    with pytest.raises(shrinknet.ShrinkNetError, match="model: expected shrinknet.MLP or shrinknet.GatedModel"):
        unit_costs(torch.nn.Linear(2, 2))


def test_a_sublayer_costs_its_branch_as_the_sublayer_kind_counts_it():
    from tests.test_sublayers import lm_data, llama
    from shrinknet import sublayers
    X, _ = lm_data()
    model = llama().double()
    gm = shrinknet.GatedModel(model, units=["blocks"], example_input=X)
    got = unit_costs(gm)
    want = [sublayers.cost(model, u.branch, X) for u in gm.units]
    assert [c.params for c in got] == [w["params"] for w in want]
    # FLOPs as compare_models counts them: the projections, and in an attention sublayer also the
    # scores and the weighted values (T x T x E multiply-adds each), which sublayers.cost leaves out
    T, E = (X["input_ids"] if isinstance(X, dict) else X).shape[1], model.config.hidden_size
    assert [c.flops for c in got] == [w["flops"] + (4 * T * T * E if k % 2 == 0 else 0) for k, w in enumerate(want)]
