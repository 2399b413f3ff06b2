"""Data as a DataLoader (any re-iterable of (X, T) batches): the same decisions as the tensors in memory."""
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import shrinknet
from shrinknet import ShrinkNetError
from tests.conftest import image_data, tiny_cnn

pytestmark = pytest.mark.usefixtures("one_thread")


def loader(X, y, batch_size=7):
    return DataLoader(TensorDataset(X, y), batch_size=batch_size)


class Counting:
    """A re-iterable of (X, T) batches that counts the passes made over it and the largest batch."""

    def __init__(self, X, y, size):
        self.X, self.y, self.size, self.passes = X, y, size, 0

    def __iter__(self):
        self.passes += 1
        for i in range(0, len(self.y), self.size):
            yield self.X[i:i + self.size], self.y[i:i + self.size]


@pytest.mark.parametrize("criterion", ["brute-force", "taylor1", "taylor2", "taylor2-exact", "fisher", "apoz", "l1-out"])
def test_prune_on_a_loader_decides_as_on_the_tensors(criterion):
    X, y = image_data(n=30)
    a = shrinknet.prune(tiny_cnn(), X, y, criterion=criterion, stop=shrinknet.Stop(n_neurons=8))
    b = shrinknet.prune(tiny_cnn(), loader(X, y), None, criterion=criterion, stop=shrinknet.Stop(n_neurons=8))
    assert a.removed == b.removed
    assert b.errors == pytest.approx(a.errors, rel=1e-12)
    assert b.accuracies == a.accuracies and b.initial_accuracy == a.initial_accuracy


def test_the_data_are_read_again_for_every_pass_and_never_kept():
    X, y = image_data(n=30)
    src = Counting(X, y, 7)
    ctx = shrinknet.PruningContext.start(tiny_cnn(), src, None)
    assert ctx.streaming and ctx.T is None
    before = src.passes
    E = ctx.error()
    assert src.passes == before + 1
    full = shrinknet.PruningContext.start(tiny_cnn(), X, y)
    assert float(E) == pytest.approx(float(full.error()), rel=1e-12)
    for l, k in enumerate(ctx.model.hidden_sizes):
        assert torch.allclose(shrinknet.oracle.errors_without(ctx, l, range(k)),
                              shrinknet.oracle.errors_without(full, l, range(k)), rtol=1e-12, atol=0)


def test_score_compare_and_evaluate_take_a_loader():
    X, y = image_data(n=30)
    for a, b in zip(shrinknet.score(tiny_cnn(), loader(X, y), None, "taylor2"),
                    shrinknet.score(tiny_cnn(), X, y, "taylor2")):
        assert a == pytest.approx(b, rel=1e-10, abs=1e-12)
    c1 = shrinknet.compare(tiny_cnn(), loader(X, y), None, ["taylor1", "mean-activation"], steps=3, own_paths=False)
    c2 = shrinknet.compare(tiny_cnn(), X, y, ["taylor1", "mean-activation"], steps=3, own_paths=False)
    assert [(r["criterion"], r["chosen_layer"], r["chosen_unit"]) for r in c1.rows] == \
        [(r["criterion"], r["chosen_layer"], r["chosen_unit"]) for r in c2.rows]
    e1, e2 = shrinknet.evaluate(tiny_cnn(), loader(X, y), None), shrinknet.evaluate(tiny_cnn(), X, y)
    assert e1["error"] == pytest.approx(e2["error"], rel=1e-12) and e1["accuracy"] == e2["accuracy"] and e1["n"] == 30


def test_the_mlp_gathers_a_loader_into_its_kept_forward_pass():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(40, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (40,), generator=g)
    mlp = shrinknet.MLP([5, 6, 3], "sigmoid", "softmax", seed=0, dtype=torch.float64)
    a = shrinknet.prune(mlp, X, y, criterion="brute-force", stop=shrinknet.Stop(n_neurons=4))
    b = shrinknet.prune(mlp, loader(X, y, 9), None, criterion="brute-force", stop=shrinknet.Stop(n_neurons=4))
    assert a.removed == b.removed and b.errors == pytest.approx(a.errors, rel=1e-12)


class Tokens(Dataset):
    """Dict samples, as a tokenizer-fed text data set gives them."""

    def __init__(self, n=12, length=6):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, 30, (n, length), generator=g)
        self.y = torch.randint(0, 2, (n,), generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i]}, self.y[i]


class TinyText(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.fc1, self.fc2 = torch.nn.Embedding(30, 8), torch.nn.Linear(8, 10), torch.nn.Linear(10, 2)

    def forward(self, input_ids):
        return self.fc2(torch.relu(self.fc1(self.emb(input_ids).mean(1))))


def test_a_loader_of_dict_batches_with_token_ids():
    ds = Tokens()
    a = shrinknet.prune(TinyText(), {"input_ids": ds.ids}, ds.y, criterion="brute-force", stop=shrinknet.Stop(n_neurons=4))
    b = shrinknet.prune(TinyText(), DataLoader(ds, batch_size=5), None, criterion="brute-force",
                        stop=shrinknet.Stop(n_neurons=4))
    assert a.removed == b.removed and b.errors == pytest.approx(a.errors, rel=1e-6)


class Singles:
    """A re-iterable of bare input batches (no targets)."""

    def __iter__(self):
        X, _ = image_data(n=10)
        yield X[:5]
        yield X[5:]


def test_bad_loaders_are_named():
    X, y = image_data(n=20)
    with pytest.raises(ShrinkNetError, match="T: expected None when X is a DataLoader"):
        shrinknet.prune(tiny_cnn(), loader(X, y), y)
    with pytest.raises(ShrinkNetError, match="got an iterator .* which can be read only once"):
        shrinknet.prune(tiny_cnn(), iter(loader(X, y)), None)
    with pytest.raises(ShrinkNetError, match="expected batches of \\(X, T\\) pairs, got Tensor as batch 0"):
        shrinknet.prune(tiny_cnn(), Singles(), None)
    bad = [(X[:10], y[:10]), (X[10:, :, :4], y[10:])]
    with pytest.raises(ShrinkNetError, match=r"X \(batch 1\): expected samples of shape"):
        shrinknet.prune(tiny_cnn(), bad, None, stop=shrinknet.Stop(n_neurons=1))
    with pytest.raises(ShrinkNetError, match="draws a subset of the samples, which needs them in memory"):
        shrinknet.prune(tiny_cnn(), loader(X, y), None, criterion="brute-force-subset", stop=shrinknet.Stop(n_neurons=1))


def test_a_long_run_on_a_loader_shows_its_batches(capsys):
    X, y = image_data(n=30)
    ctx = shrinknet.PruningContext.start(tiny_cnn(), loader(X, y), None)
    seen = []
    ctx.X.on_batch = seen.append
    ctx.error()
    assert seen == [0, 1, 2, 3, 4] and ctx.X.n_batches == 5
    shrinknet.prune(tiny_cnn(), loader(X, y), None, criterion="taylor1", stop=shrinknet.Stop(n_neurons=2),
                    progress=True)
    assert "batch 5/5" in capsys.readouterr().err


def test_a_test_set_may_be_a_loader_too():
    X, y = image_data(n=30)
    Xt, yt = image_data(n=20, seed=5)
    a = shrinknet.prune(tiny_cnn(), X, y, criterion="taylor1", stop=shrinknet.Stop(n_neurons=4), test=(Xt, yt))
    b = shrinknet.prune(tiny_cnn(), loader(X, y), None, criterion="taylor1", stop=shrinknet.Stop(n_neurons=4),
                        test=(loader(Xt, yt, 6), None))
    assert b.test_errors == pytest.approx(a.test_errors, rel=1e-12) and b.test_accuracies == a.test_accuracies
    with pytest.raises(ShrinkNetError, match="test: expected \\(X_test, T_test\\), or \\(a DataLoader"):
        shrinknet.prune(tiny_cnn(), X, y, test=loader(Xt, yt))
    with pytest.raises(ShrinkNetError, match="its batches carry the targets, got a T too"):
        shrinknet.prune(tiny_cnn(), X, y, test=(loader(Xt, yt), yt))


def test_a_loader_is_evaluated_with_one_loss_and_its_batches_shape_explained():
    X, y = image_data(n=20)
    mixed = [(X[:10], y[:10]), (X[10:], torch.nn.functional.one_hot(y[10:], 4).double())]
    whole = shrinknet.evaluate(tiny_cnn(), X, y)                 # cross-entropy, chosen by integer labels
    assert shrinknet.evaluate(tiny_cnn(), mixed, None)["error"] == pytest.approx(whole["error"], rel=1e-12)
    with pytest.raises(ShrinkNetError, match="T: expected targets, got None \\(None only with X a DataLoader"):
        shrinknet.prune(tiny_cnn(), X, None)


def test_a_tuple_of_pairs_is_a_loader_and_decides_as_the_tensors():
    X, y = image_data(n=30)
    a = shrinknet.prune(tiny_cnn(), X, y, criterion="taylor2", stop=shrinknet.Stop(n_neurons=5))
    pairs = tuple((X[i:i + 7], y[i:i + 7]) for i in range(0, 30, 7))
    b = shrinknet.prune(tiny_cnn(), pairs, None, criterion="taylor2", stop=shrinknet.Stop(n_neurons=5))
    assert b.removed == a.removed and b.errors == pytest.approx(a.errors, rel=1e-12)
    assert shrinknet.evaluate(tiny_cnn(), pairs, None)["error"] == pytest.approx(
        shrinknet.evaluate(tiny_cnn(), X, y)["error"], rel=1e-12)
    # a tuple of tensors is still one batch of several inputs, not a loader
    from shrinknet.inputs import is_loader
    assert not is_loader((X, X)) and is_loader(pairs) and is_loader(list(pairs))
