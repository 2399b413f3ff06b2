"""Max pooling as the maximum of strided views: the very numbers of max_pool2d, only where no graph is built."""
import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import shrinknet
from shrinknet import pooling


def test_hand_sized_window_maxima():
    x = torch.tensor([[[[1., 5., -2., 0., 9.],
                        [3., -1., 4., 4., 9.],
                        [7., 2., -8., -9., 9.]]]])
    # 2 x 2 windows; the odd last row and column are dropped, as max_pool2d drops them
    assert pooling.strided_max(x, 2, 2).tolist() == [[[[5., 4.]]]]
    assert pooling.strided_max(x, 1, 2).tolist() == [[[[5., 0.], [3., 4.], [7., -8.]]]]
    assert pooling.strided_max(x, 3, 1).tolist() == [[[[7., 5., 4., 4., 9.]]]]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.booleans(),
       st.integers(0, 2 ** 31 - 1), st.sampled_from([torch.float32, torch.float64, torch.bfloat16]))
def test_equals_max_pool2d(kh, kw, h, w, unbatched, seed, dtype):
    h, w = max(h, kh), max(w, kw)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, h, w, generator=g).to(dtype)
    x[x > 1.5] = float("nan")
    x[x < -1.5] = float("-inf")
    x = x[0] if unbatched else x
    ref = F.max_pool2d(x, (kh, kw))
    got = pooling.strided_max(x, kh, kw)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    assert torch.equal(got.isnan(), ref.isnan())
    assert torch.equal(got.nan_to_num(0.0), ref.nan_to_num(0.0))


def test_only_non_overlapping_windows_are_patched():
    m = nn.Sequential(nn.MaxPool2d(2), nn.MaxPool2d((2, 3)), nn.MaxPool2d(3, stride=2), nn.MaxPool2d(2, padding=1),
                      nn.MaxPool2d(2, ceil_mode=True), nn.MaxPool2d(2, return_indices=True), nn.AvgPool2d(2))
    assert pooling.pools(m) == [m[0], m[1]]
    with pooling.strided_max_pooling(m):
        assert "forward" in m[0].__dict__ and "forward" in m[1].__dict__
        assert not any("forward" in p.__dict__ for p in m[2:])
    assert not any("forward" in p.__dict__ for p in m)             # restored


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 3, 3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 2 * 2, 2)).eval()


class _Counting:
    """Counts torch.nn.functional.max_pool2d's calls while on (what nn.MaxPool2d.forward calls)."""

    def __enter__(self):
        self.n, self.orig = 0, F.max_pool2d

        def counted(*a, **k):
            self.n += 1
            return self.orig(*a, **k)
        F.max_pool2d = counted
        return self

    def __exit__(self, *exc):
        F.max_pool2d = self.orig


def test_patched_pass_equals_the_plain_one_and_calls_no_max_pool2d():
    m, x = _cnn(), torch.randn(5, 1, 13, 13)
    with torch.no_grad():
        with _Counting() as plain:
            ref = m(x)
        with pooling.strided_max_pooling(m), _Counting() as patched:
            got = m(x)
            assert torch.equal(m[2](input=x), F.max_pool2d(x, 2))          # called by keyword too
    assert torch.equal(got, ref)
    assert plain.n == 2 and patched.n == 1                                # the keyword call's reference only


def test_a_window_larger_than_the_input_is_max_pool2ds_error():
    with pytest.raises(ValueError, match="x: expected at least a 3 x 3 window"):
        pooling.strided_max(torch.zeros(1, 1, 2, 5), 3, 3)
    m = nn.MaxPool2d(3)
    with torch.no_grad(), pooling.strided_max_pooling([m]), pytest.raises(RuntimeError):
        m(torch.zeros(1, 1, 2, 5))


def test_with_grad_enabled_the_pool_runs_as_it_is():
    # a window of equal values: max_pool2d's gradient goes to one element, a maximum's is split
    x = torch.zeros(1, 1, 2, 2, requires_grad=True)
    m = nn.MaxPool2d(2)
    with pooling.strided_max_pooling([m]):
        m(x).sum().backward()
    assert sorted(x.grad.flatten().tolist()) == [0.0, 0.0, 0.0, 1.0]


def test_gated_model_pools_by_strided_maxima_and_scores_as_the_literal_loop():
    m, x = _cnn(), torch.randn(12, 1, 13, 13, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 2, (12,), generator=torch.Generator().manual_seed(2))
    ctx = shrinknet.PruningContext.start(m, x, y)
    gm = ctx.model
    assert gm._pools == [gm.model[2], gm.model[5]]
    with torch.no_grad():
        ref = m(x)
        with _Counting() as passes:
            assert torch.equal(gm(x), ref)
    assert passes.n == 0
    for layer, K in enumerate(gm.hidden_sizes):
        with _Counting() as oracle:
            fast = shrinknet.oracle.errors_without(ctx, layer, list(range(K)))
        assert oracle.n == 0                                       # recording and replays included
        lit = shrinknet.oracle.literal_errors(ctx, layer, list(range(K)))
        torch.testing.assert_close(fast.double(), lit.double(), rtol=1e-6, atol=0)
        assert bool((fast != fast[0]).any())                       # the candidates' errors differ


def test_copies_of_a_gated_model_pool_their_own_modules_and_carry_no_patch():
    m, x = _cnn(), torch.randn(4, 1, 13, 13)
    gm = shrinknet.GatedModel(m, example_input=x[:1])
    with pooling.strided_max_pooling(gm._pools):                   # a copy taken inside a pass
        inside = gm.clone()
        bare = gm.bare_copy()
    assert not any(pooling.is_patched(p) for p in bare.modules())
    for other in (inside, copy.deepcopy(gm), pickle.loads(pickle.dumps(gm))):
        assert other._pools == [other.model[2], other.model[5]]
        assert not any(pooling.is_patched(p) for p in other.model.modules())
        with torch.no_grad(), _Counting() as c:
            assert torch.equal(other(x), gm(x))
        assert c.n == 0
