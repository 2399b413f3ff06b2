"""Every submodule of shrink's result and of result.model keeps the training flag it had in the user's model."""
import torch
from torch import nn

import shrinknet
from shrinknet.gating import restore_training, training_flags


class Inner(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.drop, self.fc2 = nn.Linear(6, 10), nn.Dropout(0.5), nn.Linear(10, 3)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.fc1(x))))


class Wrapper(nn.Module):
    """The usual wrapper: .eval() called on the inner model only, so the wrapper stays in train mode."""

    def __init__(self):
        super().__init__()
        self.inner = Inner()

    def forward(self, x):
        return self.inner(x)


def _wrapped():
    torch.manual_seed(0)
    w = Wrapper()
    w.inner.eval()
    return w


def test_shrink_and_result_model_keep_each_submodule_s_mode():
    w = _wrapped()
    X, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    assert w.training and not w.inner.training and not w.inner.drop.training
    r = shrinknet.prune(w, X, y, "taylor1", units=["inner.fc1"], stop=shrinknet.Stop(n_units=4), progress=False)
    assert r.model.training and not r.model.model.inner.training and not r.model.model.inner.drop.training
    small = shrinknet.shrink(w, r)
    assert training_flags(small) == training_flags(w)                # not every module in train mode
    assert small.inner.fc1.out_features == 6
    torch.testing.assert_close(small(X), r.model(X))                 # dropout off: the same outputs, twice
    torch.testing.assert_close(small(X), small(X))


def test_a_model_in_train_mode_stays_in_train_mode():
    w = _wrapped().train()
    X, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    r = shrinknet.prune(w, X, y, "taylor1", units=["inner.fc1"], stop=shrinknet.Stop(n_units=2), progress=False)
    assert r.model.model.inner.drop.training                        # pruned in eval mode, handed back as given
    assert all(training_flags(shrinknet.shrink(w, r)).values())


def test_restore_training_gives_new_modules_their_parent_s_mode():
    m = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(), nn.ReLU()))
    m[1].eval()
    flags = training_flags(m)
    m.train()
    m.append(nn.Dropout())                                          # a module the flags do not name
    restore_training(m, flags)
    assert [x.training for x in m.modules()] == [True, True, False, False, False, True]
