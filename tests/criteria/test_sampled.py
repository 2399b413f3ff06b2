"""taylor2-sampled: the Gauss-Newton diagonal from random output vectors, exact in expectation,
seeded, and at one backward pass per batch and draw whatever the outputs."""
import itertools
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import shrinknet
from shrinknet import derivatives, losses
from shrinknet.criteria.taylor import sampled_taylor2


class Seq(nn.Module):
    """A small sequence model (not an MLP, so taylor2 is the Gauss-Newton diagonal): (N, P, 3) inputs,
    (N, P, m) logits, a ReLU block and a tanh block of units; BACKWARD counts backward passes (of
    this model and of the working copies made of it)."""

    def __init__(self, m: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.a, self.b, self.c = nn.Linear(3, 5), nn.Linear(5, 4), nn.Linear(4, m)

    def forward(self, x):
        h = torch.tanh(self.b(torch.relu(self.a(x))))
        return self.c(_Count.apply(h))


BACKWARD = [0]


class _Count(torch.autograd.Function):
    # identity whose backward counts, so a test counts the backward passes a criterion takes
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        BACKWARD[0] += 1
        return g


def seq_data(n=6, positions=2, m=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, positions, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, m, (n, positions), generator=g)
    y[0, 0] = -100                                           # an ignored position
    return X, y


@pytest.mark.parametrize("loss, output", [("cross-entropy", "identity"), ("cross-entropy", "softmax"),
                                          ("cross-entropy", "sigmoid"), ("sse", "identity"), ("sse", "sigmoid"),
                                          ("sse", "softmax")])
def test_the_draws_average_to_the_loss_hessian(loss, output):
    # E[a b^T] = d2E/dz2 per sample: 200,000 draws of one sample's outputs against the exact Hessian
    z = torch.tensor([[0.3, -1.2, 0.8]], dtype=torch.float64)
    T = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    R = 200_000
    a, b = derivatives.sampled_cotangents(z.expand(R, 3), T.expand(R, 3), output, loss,
                                          torch.Generator().manual_seed(0))
    b = a if b is None else b
    est = (a[:, :, None] * b[:, None, :]).mean(0)
    exact = derivatives.output_hessian(z, T, output, loss)[0]
    scale = float(exact.abs().max())
    assert scale > 0.01                                                # a Hessian worth comparing
    np.testing.assert_allclose(est.numpy(), exact.numpy(), atol=0.03 * scale)   # Monte Carlo: ~1/sqrt(R)


def test_enumerating_every_label_weighted_by_its_probability_gives_taylor2_exactly(monkeypatch):
    # The sampler replaced by an enumeration of every label sequence (k_1, k_2) of a 2-position output,
    # each sample's vector scaled by sqrt(D * p(k_1) p(k_2)): the mean over the D = 9 "draws" is then the
    # expectation itself, and must be taylor2's Gauss-Newton value to rounding (ignored position included).
    m, P = 3, 2
    combos = list(itertools.product(range(m), repeat=P))
    draw = iter(range(10 ** 6))

    def enumerated(z, T, output, loss, gen):
        k = combos[next(draw) % len(combos)]
        p = torch.softmax(z.detach(), -1)                                 # (n, P, m)
        onehot = torch.zeros_like(p)
        w = torch.ones(z.shape[0], dtype=z.dtype)
        for pos, label in enumerate(k):
            onehot[:, pos, label] = 1.0
            w = w * p[:, pos, label]
        a = (p - onehot) * T.sum(-1, keepdim=True).sqrt() * (len(combos) * w).sqrt()[:, None, None]
        return a, None

    X, y = seq_data()
    exact = shrinknet.score(Seq(), X, y, "taylor2", dtype=torch.float64)
    monkeypatch.setattr(derivatives, "sampled_cotangents", enumerated)
    got = shrinknet.score(Seq(), X, y, sampled_taylor2(draws=len(combos)), dtype=torch.float64)
    for e, g in zip(exact, got):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("loss, output", [("cross-entropy", "identity"), ("sse", "identity"), ("sse", "sigmoid")])
def test_many_draws_converge_to_taylor2(loss, output):
    X, y = seq_data(n=4)
    T = y.clamp(min=0) if loss == "cross-entropy" else torch.rand(4, 2, 3, generator=torch.Generator().manual_seed(2),
                                                                    dtype=torch.float64)
    kw = dict(loss=loss, output_activation=output, dtype=torch.float64)
    exact = shrinknet.score(Seq(), X, T, "taylor2", **kw)
    first = shrinknet.score(Seq(), X, T, "taylor1", **kw)
    got = shrinknet.score(Seq(), X, T, sampled_taylor2(draws=600), **kw)
    for e, g, f in zip(exact, got, first):
        curvature = e - f
        scale = np.abs(curvature).max()
        assert scale > 1e-3
        np.testing.assert_allclose(g - f, curvature, atol=0.1 * scale)   # Monte Carlo: ~1/sqrt(600) relative


def test_the_same_scores_on_every_run_and_other_ones_with_another_seed():
    X, y = seq_data()
    a = shrinknet.score(Seq(), X, y, "taylor2-sampled")
    b = shrinknet.score(Seq(), X, y, "taylor2-sampled")
    c = shrinknet.score(Seq(), X, y, sampled_taylor2(seed=7))
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.allclose(u, v) for u, v in zip(a, c))


def test_a_resumed_run_draws_what_the_uninterrupted_one_drew(tmp_path):
    X, y = seq_data(n=8)
    whole = shrinknet.prune(Seq(), X, y, "taylor2-sampled", stop=shrinknet.Stop(n_neurons=4), progress=False)
    shrinknet.prune(Seq(), X, y, "taylor2-sampled", stop=shrinknet.Stop(n_neurons=2), checkpoint=tmp_path / "c",
                    progress=False)
    resumed = shrinknet.prune(Seq(), X, y, "taylor2-sampled", stop=shrinknet.Stop(n_neurons=4),
                              checkpoint=tmp_path / "c", progress=False)
    assert resumed.resumed_steps == 2
    assert resumed.removed == whole.removed and resumed.predicted == whole.predicted


def test_backward_passes_per_batch_do_not_grow_with_the_outputs():
    X, y = seq_data(n=6, positions=4, m=6)
    counts = {}
    for name in ("fisher", "taylor2-sampled", "taylor2"):
        ctx = shrinknet.PruningContext.start(Seq(m=6), X, y)
        BACKWARD[0] = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shrinknet.criteria.get_criterion(name).scores(ctx)
        counts[name] = BACKWARD[0]
    # one batch: fisher 1; sampled 1 (dE/dg) + 1 draw; taylor2 1 + one per position and output (4 x 6)
    assert counts == {"fisher": 1, "taylor2-sampled": 2, "taylor2": 1 + 4 * 6}
    ctx = shrinknet.PruningContext.start(Seq(m=6), X, y)
    BACKWARD[0] = 0
    sampled_taylor2(draws=5).scores(ctx)
    assert BACKWARD[0] == 6


def test_taylor2_says_up_front_what_it_will_cost():
    X, y = seq_data(n=6, positions=4, m=6)
    with pytest.warns(UserWarning, match=r"taylor2 takes 25 backward passes per batch .* fisher takes 1 \(25x\).*"
                                         r"'taylor2-sampled'"):
        shrinknet.score(Seq(m=6), X, y, "taylor2")
    X, y = seq_data(n=6, positions=2, m=3)                                  # 7 passes: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shrinknet.score(Seq(), X, y, "taylor2")


def test_on_the_mlp_it_refuses_compensation_and_names_taylor2():
    m = shrinknet.MLP([4, 5, 3], seed=0)
    X = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (10,), generator=torch.Generator().manual_seed(1))
    assert all(np.isfinite(s).all() for s in shrinknet.score(m, X, y, "taylor2-sampled"))
    with pytest.raises(shrinknet.ShrinkNetError, match="expected compensation='none' on the MLP class"):
        shrinknet.prune(m, X, y, "taylor2-sampled", compensation="mean", stop=shrinknet.Stop(n_neurons=1))
