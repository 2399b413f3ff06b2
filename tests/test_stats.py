"""Parameters, FLOPs and latency before / after."""
import torch
from torch import nn

import shrinknet
from shrinknet.stats import flops, n_params
from tests.conftest import image_data, tiny_cnn


def test_counts_are_exact_on_a_linear_net():
    net = nn.Sequential(nn.Linear(10, 7), nn.ReLU(), nn.Linear(7, 3))
    assert n_params(net) == 10 * 7 + 7 + 7 * 3 + 3
    assert flops(net, torch.zeros(1, 10)) == 2 * (10 * 7 + 7 * 3)            # 2 per multiply-add


def test_conv_flops():
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1))
    assert flops(net, torch.zeros(1, 2, 5, 5)) == 2 * 5 * 5 * 3 * 2 * 9


def test_report_before_and_after():
    X, y = image_data(n=40)
    net = tiny_cnn().float()
    small = shrinknet.shrink(net, {"4": [0, 1], "9": [2]}, X[:1].float())
    r = shrinknet.compare_models(net, small, X[:1].float(), data=(X.float(), y), kept={"4": [2, 5]}, repeats=3)
    assert r.before.params == n_params(net) and r.after.params == n_params(small) < r.before.params
    assert r.after.flops < r.before.flops and r.before.latency_ms > 0 and r.after.latency_ms > 0
    assert 0 <= r.after.accuracy <= 1 and r.ratio("params") == r.after.params / r.before.params
    text = str(r)
    assert "parameters" in text and "FLOPs / sample" in text and "CPU latency" in text and "kept 4: 2 of 5" in text
    assert set(r.to_dict()["ratios"]) == {"params", "flops", "latency_ms"}
