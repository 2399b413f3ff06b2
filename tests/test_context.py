"""The pruning context: its kept forward passes, and nothing left on the user's model."""
import gc
import pickle
import weakref

import numpy as np
import pytest
import torch

import shrinknet
from shrinknet.context import PruningContext

from .conftest import image_data, random_data, random_net, tiny_cnn


def test_cache_is_reused_and_set_gate_equals_a_fresh_forward():
    m = random_net([5, 4, 3])
    X, T = random_data()
    ctx = PruningContext(m, X, T, "sse")
    c = ctx.cache()
    assert ctx.cache() is c  # nothing changed: reused
    ctx.set_gate(1, 2, 0.0)
    ctx.set_gate(0, 4, 0.25)
    updated = ctx.cache()
    assert updated is c        # updated in place, and still known as valid (no new forward pass)
    fresh = PruningContext(m.clone(), X.clone(), T, "sse").cache()
    for a, b in zip(updated.pre + updated.act + updated.out + [updated.z],
                    fresh.pre + fresh.act + fresh.out + [fresh.z]):
        assert torch.equal(a, b)  # bit for bit


def test_cache_notices_weight_and_gate_edits():
    m = random_net([5])
    X, T = random_data()
    ctx = PruningContext(m, X, T, "sse")
    c = ctx.cache()
    with torch.no_grad():
        m.layers[1].weight[0, 0] += 1.0
    c2 = ctx.cache()
    assert c2 is not c and not torch.equal(c2.z, c.z)
    m.gates[0][1] = 0.0  # a direct edit, not through set_gate
    c3 = ctx.cache()
    assert c3 is not c2
    torch.testing.assert_close(c3.z, m.logits(X).detach(), rtol=1e-12, atol=1e-12)


def test_a_gated_models_cache_notices_buffer_edits():
    # BatchNorm statistics are buffers: an in-place edit must not leave a stale output (was: key of
    # parameters and gates only)
    X, y = image_data(n=6)
    gm = shrinknet.GatedModel(tiny_cnn(), None, X[:1])
    ctx = PruningContext(gm, X, torch.nn.functional.one_hot(y, 4).double(), "cross-entropy")
    before = ctx.cache().z.clone()
    with torch.no_grad():
        gm.model[1].running_mean += 1.0
    after = ctx.cache().z
    assert not torch.equal(after, before)
    torch.testing.assert_close(after, gm.outputs(X))


def test_evaluate_leaves_nothing_on_the_callers_model():
    m = random_net([7, 5])
    X, T = random_data(n=200)
    ref = weakref.ref(X)
    keys = set(m.__dict__)
    out = shrinknet.evaluate(m, X, T)
    assert set(m.__dict__) == keys and out["n"] == 200
    del X
    gc.collect()
    assert ref() is None                 # nothing (no cache) holds the caller's data


def test_prune_score_compare_leave_nothing_on_the_callers_model():
    m = random_net([4, 3])
    X, T = random_data(n=30)
    state = {k: v.clone() for k, v in m.state_dict().items()}
    keys = set(m.__dict__)
    shrinknet.prune(m, X, T, "brute-force", stop=3, compensation="lstsq")
    shrinknet.score(m, X, T, "taylor2")
    shrinknet.compare(m, X, T, ["taylor1"], steps=2, own_paths=False)
    assert set(m.__dict__) == keys
    assert all(torch.equal(v, state[k]) for k, v in m.state_dict().items())


def test_inputs_made_in_inference_mode_can_be_pruned():
    m = random_net([5, 4])
    X, T = random_data(n=30)
    with torch.inference_mode():
        Xi, Ti = X.clone(), T.clone()
    want = shrinknet.prune(m, X, T, "brute-force", stop=4)
    got = shrinknet.prune(m, Xi, Ti, "brute-force", stop=4)
    assert got.removed == want.removed and got.errors == want.errors
    with torch.inference_mode():            # and called from inside inference mode
        inside = shrinknet.prune(m, Xi, Ti, "taylor2", stop=4)
    assert inside.removed == shrinknet.prune(m, X, T, "taylor2", stop=4).removed


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_every_call_on_a_cnn_works_from_no_grad_and_inference_mode(mode):
    """Data made there and calls made there give what plain calls give (shrink's trace needs autograd)."""
    net = tiny_cnn()
    X, y = image_data(n=24)
    ctx = torch.no_grad if mode == "no_grad" else torch.inference_mode
    want = shrinknet.prune(net, X, y, "taylor2", stop=4)
    small_want = shrinknet.shrink(net, want, example_input=X[:1])
    with ctx():
        Xi, yi = X.clone(), y.clone()
        got = shrinknet.prune(net, Xi, yi, "taylor2", stop=4)
        small = shrinknet.shrink(net, got, example_input=Xi[:1])
        by_keep = shrinknet.shrink(net, got.keep_by_name(), example_input=Xi[:1])
        scores = shrinknet.score(net, Xi, yi, "taylor1")
        E = shrinknet.evaluate(net, Xi, yi)
        report = shrinknet.compare_models(net, small, Xi[:1], data=(Xi, yi))
    assert got.removed == want.removed and got.errors == want.errors
    assert torch.equal(small(X), small_want(X)) and torch.equal(by_keep(X), small(X))
    np.testing.assert_array_equal(scores[0], shrinknet.score(net, X, y, "taylor1")[0])
    assert E == shrinknet.evaluate(net, X, y) and report.after.params < report.before.params


def test_an_mlp_pickles_and_copies():
    m = random_net([5, 4], "gelu", "softmax")
    X, _ = random_data()
    back = pickle.loads(pickle.dumps(m))
    assert torch.equal(back(X), m(X))
    gm = shrinknet.GatedModel(tiny_cnn(), None, image_data(n=2)[0][:1])
    gm.set_gate(0, 1, 0.0)
    X, _ = image_data(n=3)
    again = pickle.loads(pickle.dumps(gm))
    assert torch.equal(again(X), gm(X)) and again.gates[0][1] == 0


def test_the_mlps_output_rounds_the_same_with_and_without_autograd():
    m = random_net([6], "sigmoid", "sigmoid")
    m.float()
    X = torch.randn(300, 4)
    with torch.no_grad():
        a = m(X)
    assert torch.equal(a, m(X).detach())


@pytest.mark.parametrize("labels", [torch.tensor([0, 2, 1, 1]), [0, 2, 1, 1]])
def test_integer_labels_default_to_cross_entropy(labels):
    m = random_net([3], "relu", "identity")
    X, _ = random_data(n=4)
    r = shrinknet.prune(m, X, labels, "brute-force", stop=1)
    assert r.loss == "cross-entropy"
    assert shrinknet.prune(m, X, labels, "brute-force", stop=1, loss="sse").loss == "sse"
    onehot = torch.nn.functional.one_hot(torch.as_tensor(labels), 3).double()
    assert shrinknet.prune(m, X, onehot, "brute-force", stop=1).loss == "sse"


def test_apply_takes_the_users_own_gated_model():
    X, y = image_data(n=8)
    gm = shrinknet.GatedModel(tiny_cnn(), None, X[:1])
    r = shrinknet.prune(gm, X, y, "taylor1", stop=2)
    applied = r.apply(gm)
    assert applied is not gm and applied.n_active() == gm.n_active() - 2


def test_a_compensated_result_shrinks_only_its_own_model():
    m = random_net([5, 4])
    X, T = random_data(n=40)
    seq = torch.nn.Sequential(m.layers[0], torch.nn.Sigmoid(), m.layers[1], torch.nn.Sigmoid(), m.layers[2],
                              torch.nn.Sigmoid())
    r = shrinknet.prune(seq, X, T, "brute-force", stop=3, compensation="lstsq")
    with pytest.raises(shrinknet.ShrinkNetError, match="shrink\\(result.model, result\\)"):
        shrinknet.shrink(seq, r)
    small = shrinknet.shrink(r.model, r)
    assert shrinknet.evaluate(small, X, T, "sse")["error"] == pytest.approx(r.errors[-1], rel=1e-9)


def test_evaluate_puts_every_submodules_mode_back():
    net = tiny_cnn().train()
    net[1].eval()                                           # a frozen BatchNorm
    X, y = image_data(n=4)
    shrinknet.evaluate(net, X, y)
    assert net.training and not net[1].training and net[5].training


def test_a_sequential_that_flattens_is_pruned_as_it_takes_its_inputs():
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    X = torch.randn(20, 1, 2, 2)
    y = torch.randint(0, 3, (20,))
    r = shrinknet.prune(seq, X, y, "brute-force", stop=2)
    assert r.n_removed == 2 and shrinknet.evaluate(seq, X, y)["n"] == 20


def test_approximate_criteria_instances_serve_several_runs():
    from shrinknet.criteria.approximate import BruteForceTopK
    tk = BruteForceTopK(2, 100)
    X, T = random_data(n=30)
    a, b = random_net([6, 5], seed=1), random_net([4, 4], seed=2)
    first = shrinknet.prune(a, X, T, tk, stop=3)
    assert first.removed[0] == shrinknet.prune(a, X, T, "brute-force", stop=1).removed[0]   # step 1 is exact
    shrinknet.prune(b, X, T, tk, stop=3)                     # another model: no scores carried over
    again = shrinknet.prune(a, X, T, tk, stop=3)
    assert again.removed == first.removed and again.errors == first.errors


def test_older_form_criteria_with_a_default_loss_and_renamed_criteria():
    m = random_net([4])
    X, T = random_data(n=20)

    def old(model, X, T, loss="sse"):
        return [g.clone() for g in model.gates]
    assert [list(s) for s in shrinknet.score(m, X, T, old, "sse")] == [[1.0] * 4]
    shrinknet.register_criterion("t2-alias", shrinknet.criteria.get_criterion("taylor2"), overwrite=True)
    assert shrinknet.prune(m, X, T, "t2-alias", stop=1, loss="sse").criterion == "t2-alias"
