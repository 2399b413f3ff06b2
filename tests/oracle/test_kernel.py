"""The compiled oracle kernel against the formula it computes, and the serial (step-to-step) path;
how it is found and loaded (both builds, the PyTorch fallback, the ABI check), and that its source
builds without warnings."""
import ast
import ctypes
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import shrinknet
from shrinknet import losses
from shrinknet.context import PruningContext
from shrinknet.criteria import check_scores, get_criterion, ranked
from shrinknet.oracle import kernel as fused
from shrinknet.oracle.cache import build as forward
from shrinknet.oracle.stepper import Stepper
from tests.conftest import random_data, random_net

needs_kernel = pytest.mark.skipif(fused.library() is None,
                                  reason="no compiled kernel installed: the PyTorch path is used")
ACT = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}
ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "shrinknet" / "oracle" / "_fused.c"


@pytest.fixture
def loader(monkeypatch):
    """A monkeypatch for what kernel.py's loader reads (the environment, _find, _variants, ABI, ...),
    with the loaded library and the warning forgotten before the test and again after it, once the
    patches are undone, so that the next test loads the installed library afresh."""
    fused._reset()
    yield monkeypatch
    monkeypatch.undo()
    fused._reset()


@pytest.fixture(params=fused.VARIANTS)
def build(request, loader):
    """Each installed build this CPU runs, loaded in turn (the tests that take it run on both)."""
    if os.environ.get("SHRINKNET_FUSED") == "0":
        pytest.skip("the compiled kernel is switched off (SHRINKNET_FUSED=0)")
    if request.param not in fused._variants():
        pytest.skip(f"this CPU cannot run the {request.param} build")
    if fused._find(request.param) is None:
        pytest.skip(f"the {request.param} build is not installed")
    loader.setattr(fused, "_variants", lambda: [request.param])
    assert fused.library() is not None and fused._variant == request.param
    return request.param


@pytest.fixture(params=["compiled", "torch"])
def path(request, monkeypatch):
    """The compiled kernel, then the PyTorch path (SHRINKNET_FUSED=0), for tests that must hold on both."""
    if request.param == "torch":
        monkeypatch.setenv("SHRINKNET_FUSED", "0")
    elif fused.library() is None:
        pytest.skip("no compiled kernel installed")
    assert fused.backend() == request.param
    return request.param


def formula(base, dh, w, T, loss, output, hidden=None):
    x = base[:, None, :] + dh[:, :, None] * w.T[None]                          # (n, c, R)
    if hidden is not None:
        gate, Wt, b, act = hidden
        x = (ACT[act](x) * gate) @ Wt + b                                       # (n, c, S)
    return losses.total(x, T[:, None, :], output, loss)


def problem(dtype, S, R, c=11, n=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    T = torch.softmax(r(n, S), 1) if S > 1 else torch.rand(n, S, generator=g, dtype=dtype)
    return r(n, R) * 3, r(n, c), r(R, c), T, r(R, S), r(S)


# ---- finding and loading the library ------------------------------------------------------------

def test_backend_says_which_path_runs(loader):
    assert shrinknet.backend is fused.backend
    installed = fused.library() is not None              # (without a library this gives the one warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # and no other warning, on either path
        assert fused.backend() == ("compiled" if installed else "torch")
        loader.setenv("SHRINKNET_FUSED", "0")
        assert fused.backend() == "torch" and fused.library() is None
        loader.setattr(fused, "_find", lambda variant: None)    # switched off: nothing is even looked for
        fused._reset()
        assert fused.backend() == "torch"


@needs_kernel
def test_the_library_is_the_installed_build_for_this_cpu():
    lib = fused.library()
    assert fused._variant == fused._variants()[0] or fused._find(fused._variants()[0]) is None
    assert Path(lib._name).parent == Path(fused.__file__).parent          # loaded from the package only
    assert Path(lib._name).name.startswith(f"_fused_{fused._variant}")
    assert fused.BLOCK == 64 and fused.MAX_OUTPUTS == 16                  # the library's values
    assert fused.LANES == {torch.float32: 8, torch.float64: 4}
    assert set(fused.MODES.values()) == set(range(5)) and None not in fused.HIDDEN.values()
    assert bool(lib.threaded()) == fused._threaded


def _one_warning(caught):
    mine = [w for w in caught if "compiled oracle kernel is unavailable" in str(w.message)]
    assert len(mine) == 1, [str(w.message) for w in caught]
    assert "PyTorch path" in str(mine[0].message)
    return str(mine[0].message)


def test_without_a_library_the_package_prunes_on_torch_with_one_warning(loader):
    m = random_net([6, 5], "sigmoid", "softmax", seed=3)
    X, T = random_data(seed=3)
    compiled = shrinknet.prune(m, X, T, "brute-force", loss="cross-entropy") if fused.library() else None
    loader.delenv("SHRINKNET_FUSED", raising=False)              # the kernel is wanted...
    loader.setattr(fused, "_find", lambda variant: None)          # ...but installed without a C compiler
    fused._reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fused.backend() == "torch"
        without = shrinknet.prune(m, X, T, "brute-force", loss="cross-entropy")
        literal = shrinknet.prune(m, X, T, "brute-force-literal", loss="cross-entropy")
        assert fused.library() is None and fused.backend() == "torch"
    assert "_fused_portable library in" in _one_warning(caught)
    assert without.removed == literal.removed
    np.testing.assert_allclose(without.errors, literal.errors, rtol=1e-12)
    if compiled is not None:
        assert compiled.removed == without.removed
        np.testing.assert_allclose(compiled.errors, without.errors, rtol=1e-12)


def test_switched_off_nothing_is_loaded_and_nothing_warns(loader):
    loader.setattr(fused, "_find", lambda variant: None)
    loader.setenv("SHRINKNET_FUSED", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = random_net([4])
        X, T = random_data()
        assert shrinknet.prune(m, X, T, "brute-force", stop=2).removed
        assert fused.backend() == "torch"


class _Wider(ctypes.Structure):
    _fields_ = fused.CandArgs._fields_ + [("extra", ctypes.c_int64)]


class _Reordered(ctypes.Structure):
    _fields_ = [fused.StepArgs._fields_[1], fused.StepArgs._fields_[0], *fused.StepArgs._fields_[2:]]


@needs_kernel
@pytest.mark.parametrize("change, why", [(("ABI", fused.ABI + 1), "ABI version"),
                                         (("CandArgs", _Wider), "struct cand_args has"),
                                         (("StepArgs", _Reordered), "struct step_args has field")],
                         ids=["abi", "struct-size", "field-offset"])
def test_a_library_of_another_interface_is_refused(loader, change, why):
    # as if this file and the library came from different versions: the library is not called
    loader.setattr(fused, *change)
    m = random_net([5, 4])
    X, T = random_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fused.library() is None and fused.backend() == "torch"
        r = shrinknet.prune(m, X, T, "brute-force", stop=3)
    assert why in _one_warning(caught)
    assert r.removed == shrinknet.prune(m, X, T, "brute-force-literal", stop=3).removed


def _flags() -> dict:
    """setup.py's flags of each build (read, not imported: importing it would run setup())."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    return next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                and getattr(node.targets[0], "id", None) == "FLAGS")


# the builds setup.py makes, each with OpenMP, and one without (setup.py's retry where the compiler lacks it)
@pytest.mark.skipif(shutil.which("cc") is None or not SOURCE.is_file(), reason="no C compiler or no source")
@pytest.mark.parametrize("variant, openmp", [("avx512", True), ("avx2", True), ("portable", True), ("avx2", False)])
def test_the_kernel_builds_without_warnings(variant, openmp, tmp_path, loader):
    import platform
    if variant != "portable" and platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(f"the {variant} build is for x86-64")
    out = tmp_path / f"_fused_{variant}.so"
    cmd = ["cc", *_flags()[variant], "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
           *(["-fopenmp"] if openmp else []), str(SOURCE), "-o", str(out), "-lm"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if openmp and done.returncode and "openmp" in done.stderr.lower():
        pytest.skip("the compiler has no OpenMP")
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr, done.stderr
    if variant not in fused._variants():
        return                                                        # this CPU cannot run it
    # the source speaks kernel.py's interface (an installed build may be older than the source)
    assert fused._check(ctypes.CDLL(str(out)))[0] is not None
    if not openmp:   # one thread, and the same numbers as with OpenMP (runs are added in run order)
        base, dh, w, T, Wt, b = problem(torch.float32, 10, 9, n=3000)
        h = (torch.rand(9, generator=torch.Generator().manual_seed(1)), Wt, b, "tanh")
        installed = (fused.candidate_losses(base, dh, w, T, "sse", "sigmoid", h)[0]
                     if fused.library() is not None and fused._variant == variant else None)
        loader.delenv("SHRINKNET_FUSED", raising=False)
        loader.setattr(fused, "_find", lambda v: out)
        loader.setattr(fused, "_variants", lambda: [variant])
        fused._reset()
        assert fused.library().threaded() == 0 and not fused._threaded
        got = fused.candidate_losses(base, dh, w, T, "sse", "sigmoid", h)[0]
        torch.testing.assert_close(got, formula(base, dh, w, T, "sse", "sigmoid", h), rtol=2e-6, atol=2e-6)
        assert installed is None or torch.equal(got, installed)


# ---- the kernel's numbers -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("loss, output", list(fused.MODES))
# every gate 1 takes a path of its own in the kernel (no product)
@pytest.mark.parametrize("hidden, gates", [(None, None)] + [(a, g) for a in ("sigmoid", "tanh", "relu")
                                                             for g in ("random", "ones")])
@pytest.mark.parametrize("S", [3, 12])                    # a width compiled as a constant, and one that is not
def test_candidate_losses_are_the_formula(dtype, loss, output, hidden, gates, S, build):
    R = S if hidden is None else 9
    base, dh, w, T, Wt, b = problem(dtype, S, R)
    dh[:, 3] = 0                                                                # a candidate that does not move
    g = torch.rand(R, dtype=dtype) * 2 if gates == "random" else torch.ones(R, dtype=dtype)
    h = None if hidden is None else (g, Wt, b, hidden)
    got, moved = fused.candidate_losses(base, dh, w, T, loss, output, h)
    want = formula(base, dh, w, T, loss, output, h)
    tol = 2e-6 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    assert moved.tolist() == [j != 3 for j in range(11)]


@needs_kernel
def test_moves_gathered_from_a_layer_equal_the_moves_given():
    base, _, w, T, Wt, b = problem(torch.float64, 3, 7, c=5)
    src = torch.randn(37, 20, dtype=torch.float64)
    idx, f = torch.tensor([4, 0, 19, 4, 7]), torch.tensor([-1.0, 2.0, 0.5, 0.0, -3.0], dtype=torch.float64)
    h = (torch.ones(7, dtype=torch.float64), Wt, b, "tanh")
    got, moved = fused.candidate_losses(base, (src, idx, f), w, T, "sse", "sigmoid", h)
    want, _ = fused.candidate_losses(base, src[:, idx] * f, w, T, "sse", "sigmoid", h)
    torch.testing.assert_close(got, want, rtol=1e-14, atol=0)
    assert moved.tolist() == [True, True, True, False, True]


@needs_kernel
def test_columns_gathered_by_the_kernel_equal_the_columns_given():
    base, dh, w, T, Wt, b = problem(torch.float32, 3, 6)
    full = torch.randn(37, 10)
    cols = np.array([7, 0, 3, 9, 4, 5])
    base = full[:, cols].contiguous()
    h = (torch.rand(6), Wt, b, "sigmoid")
    want, _ = fused.candidate_losses(base, dh, w, T, "sse", "sigmoid", h)
    got, _ = fused.candidate_losses(full, dh, w, T, "sse", "sigmoid", h, cols=cols)
    assert torch.equal(got, want)                                     # the same numbers, read another way


@needs_kernel
def test_a_call_after_a_larger_one_gives_the_same_numbers():
    # the small per-call arrays are reused (fused._Scratch): a larger call leaves its numbers past the
    # smaller call's end, which must be padding that is zeroed again, never read as data
    small = problem(torch.float32, 3, 5, c=3, n=20, seed=1)
    big = problem(torch.float32, 10, 40, c=50, n=30, seed=2)
    call = lambda p, hid: fused.candidate_losses(p[0], p[1], p[2], p[3], "sse", "sigmoid",
                                                 (torch.rand(p[4].shape[0], generator=torch.Generator().manual_seed(3)),
                                                  p[4], p[5], hid))
    first = [call(small, "sigmoid"), call(small, "relu")]
    call(big, "sigmoid"), call(big, "relu")
    fused.linear(torch.rand(9, 70), torch.rand(12, 70), torch.rand(12))
    again = [call(small, "sigmoid"), call(small, "relu")]
    for (E1, m1), (E2, m2) in zip(first, again):
        assert torch.equal(E1, E2) and torch.equal(m1, m2)
    torch.testing.assert_close(first[0][0], formula(*small[:4], "sse", "sigmoid", (
        torch.rand(5, generator=torch.Generator().manual_seed(3)), small[4], small[5], "sigmoid")),
        rtol=2e-6, atol=2e-6)


@needs_kernel
def test_calls_from_two_threads_at_once_give_each_its_own_numbers():
    # ctypes lets go of the GIL during a call: each thread has its own scratch arrays and argument structs
    from concurrent.futures import ThreadPoolExecutor
    problems = [problem(torch.float32, 10, 30, c=40, n=400, seed=s) for s in (4, 5)]
    call = lambda p: fused.candidate_losses(p[0], p[1], p[2], p[3], "sse", "sigmoid",
                                            (torch.ones(30), p[4], p[5], "sigmoid"))[0]
    want = [call(p) for p in problems]
    def worker(k):
        return all(torch.equal(call(problems[k]), want[k]) for _ in range(40))
    with ThreadPoolExecutor(2) as pool:
        assert all(pool.map(worker, [0, 1, 0, 1]))


@needs_kernel
@pytest.mark.parametrize("n, length", [(1, 64), (64, 64), (2048, 64), (2049, 128), (4000, 128), (60000, 1920)])
def test_runs_of_samples_are_whole_blocks_and_at_most_runs(n, length):
    assert fused.run_length(n) == length
    assert -(-n // length) <= fused.RUNS and length % fused.BLOCK == 0


@needs_kernel
@pytest.mark.skipif(not fused._threaded, reason="built without OpenMP")
def test_the_numbers_do_not_depend_on_the_thread_count():
    # the runs' sums are kept apart and added in run order, whichever thread took which run
    p = problem(torch.float32, 10, 30, c=40, n=3000, seed=6)
    store = fused.new_store(3000, 40, 10, torch.float32)
    call = lambda: fused.candidate_losses(p[0], p[1], p[2], p[3], "sse", "sigmoid",
                                          (torch.ones(30), p[4], p[5], "sigmoid"), store)[0]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, stored = call(), store.clone()
        torch.set_num_threads(3)
        assert all(torch.equal(call(), one) for _ in range(5)) and torch.equal(store, stored)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stored_outputs_follow_a_change_of_gates(dtype, build):
    # stored with gates g, then units 2 and 5 change: the update equals computing afresh with the new gates
    base, dh, w, T, Wt, b = problem(dtype, 3, 8, c=13)
    g = torch.rand(8, dtype=dtype) + 0.5
    store = fused.new_store(37, 13, 3, dtype)
    fused.candidate_losses(base, dh, w, T, "sse", "softmax", (g, Wt, b, "sigmoid"), store, init=True)
    g2 = g.clone()
    g2[[2, 5]] = torch.tensor([0.0, 1.7], dtype=dtype)
    rows = torch.tensor([2, 5])
    got, _ = fused.candidate_losses(base[:, rows], dh, w[rows], T, "sse", "softmax",
                                    ((g2 - g)[rows], Wt[rows], b, "sigmoid"), store, init=False)
    want = formula(base, dh, w, T, "sse", "softmax", (g2, Wt, b, "sigmoid"))
    tol = 2e-6 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)


@needs_kernel
def test_bad_arguments_are_refused_by_the_kernel():
    # the C side checks what it is given (here an unknown loss mode) rather than computing with it
    base, dh, w, T, Wt, b = problem(torch.float32, 3, 3)
    assert fused.library() is not None                  # loaded first: a load fills MODES in from the library
    bad = dict(fused.MODES)
    bad[("sse", "sigmoid")] = 99
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused, "MODES", bad)
        with pytest.raises(RuntimeError, match="bad arguments"):
            fused.candidate_losses(base, dh, w, T, "sse", "sigmoid")


# ---- the serial (step-to-step) path -----------------------------------------------------------------

@needs_kernel
@pytest.mark.parametrize("hidden", [[6], [5, 4], [4, 3, 5]])
@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "gelu"])
@pytest.mark.parametrize("out, loss", [("sigmoid", "sse"), ("softmax", "cross-entropy"), ("identity", "sse"),
                                       ("sigmoid", "cross-entropy")])
def test_serial_choice_is_the_lowest_score_at_every_step(hidden, act, out, loss):
    m = random_net(hidden, act, out, seed=len(hidden))
    X, T = random_data(seed=3, classes=loss == "cross-entropy" or out != "sigmoid")
    if act == "relu":
        m.gates[0][0] = 0.0                      # and relu nets get a dead unit: exact ties by index
    s = Stepper(m, X, T, loss)
    crit = get_criterion("brute-force")
    while m.n_active():
        scores = check_scores(crit(m, X, T, loss), m, "brute-force")
        want = ranked(scores)[0]
        got = s.best(forward(m, X))
        # the lowest score, of a unit that has it (which of two units tied up to rounding is chosen
        # may differ: the literal-definition test below checks exact ties)
        np.testing.assert_allclose(got[2], want[2], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(float(scores[got[0]][got[1]]), want[2], rtol=1e-9, atol=1e-12)
        m.set_gate(got[0], got[1], 0.0)


@pytest.mark.parametrize("hidden", [[6], [5, 4], [4, 3, 5]])
@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "gelu"])   # gelu: the kernel for the last layer only
@pytest.mark.parametrize("loss", ["sse", "cross-entropy"])
def test_fast_serial_prune_decides_as_the_literal_definition(hidden, act, loss, path):
    m = random_net(hidden, act, "softmax", seed=7)
    X, T = random_data(seed=7)
    fast = shrinknet.prune(m, X, T, "brute-force", loss=loss)
    lit = shrinknet.prune(m, X, T, "brute-force-literal", loss=loss)
    assert fast.removed == lit.removed
    np.testing.assert_allclose(fast.predicted, lit.predicted, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fast.errors, lit.errors, rtol=1e-12)


@needs_kernel
@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu"])
def test_the_oracle_decides_the_same_with_and_without_the_kernel(act, monkeypatch):
    m = random_net([7, 6, 5], act, "softmax")
    X, T = random_data()
    with_kernel = shrinknet.prune(m, X, T, "brute-force", loss="cross-entropy")
    monkeypatch.setenv("SHRINKNET_FUSED", "0")
    assert fused.library() is None
    without = shrinknet.prune(m, X, T, "brute-force", loss="cross-entropy")
    assert with_kernel.removed == without.removed
    np.testing.assert_allclose(with_kernel.predicted, without.predicted, rtol=1e-9, atol=1e-9)


@needs_kernel
def test_float32_serial_prune_matches_the_float64_one_on_a_trained_net():
    # the kernel's float32 arithmetic (its own exp, reciprocal) decides as float64 does on a real net
    from shrinknet.paper.data import load
    from shrinknet.paper.train import TrainConfig, train
    d = load("digits")
    m = shrinknet.MLP([64, 12, 8, 10], "sigmoid", "sigmoid", seed=0)
    train(m, d.X_train, d.T_train, TrainConfig(epochs=5, seed=0))
    r32 = shrinknet.prune(m, d.X_train, d.T_train, "brute-force", stop=10)
    r64 = shrinknet.prune(m, d.X_train, d.T_train, "brute-force", stop=10, dtype=torch.float64)
    assert r32.removed == r64.removed
    np.testing.assert_allclose(r32.errors, r64.errors, rtol=1e-5)


def _step_by_two_kernel_calls(m, X, T, loss, E0):
    """Each layer's (unit, score) as the stepper chose them with one kernel call per layer (before the
    compiled step): the reference the compiled step must equal exactly."""
    from shrinknet.oracle import rank1 as oracle
    cache, out = forward(m, X), []
    for l, g in enumerate(m.gates):
        units = np.flatnonzero(g.numpy())
        if not units.size:
            out.append(None)
            continue
        minus = -np.ones(units.size, fused.NUMPY[T.dtype])
        if l == m.n_hidden_layers - 1:
            E, still = oracle.kernel_errors(m, cache, T, loss, l, units, (cache.out[l], units, minus))
        else:
            rows = np.flatnonzero(m.gates[l + 1].numpy())
            E, still = oracle.before_last(m, cache, T, loss, l, units, (cache.out[l], units, minus), rows,
                                          m.gates[l + 1].numpy()[rows])
        E0r = np.asarray(E0, E.dtype)
        s = np.where(still, E0r, E) - E0r
        k = int(np.argmin(s))
        out.append((int(units[k]), float(s[k])))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("hidden, act", [([5], "sigmoid"), ([6, 9], "sigmoid"), ([6, 9], "tanh"), ([6, 9], "relu")])
@pytest.mark.parametrize("out, loss", [("sigmoid", "sse"), ("softmax", "cross-entropy")])
def test_the_compiled_step_chooses_as_one_kernel_call_per_layer(dtype, hidden, act, out, loss, build):
    m = random_net(hidden, act, out, n_out=10, seed=2).to(dtype)
    X, T = random_data(n=150, n_out=10, seed=2)
    X, T = X.to(dtype), T.to(dtype)
    m.gates[0][1] = 0.0                                   # a removed unit: not a candidate, moves nothing
    with torch.no_grad():
        m.layers[-1].weight[:, -1] = 0.0                  # a unit of the last layer that reaches nothing
    L, cache = m.n_hidden_layers, forward(m, X)
    E0 = fused.measure(cache.z, T, loss, out)[0]
    before = None
    if L == 2:
        rows = np.flatnonzero(m.gates[1].numpy())
        before = (cache.pre[1], cache.out[0], m.gates[0], m.layers[1].weight, rows, m.gates[1].numpy()[rows],
                  None, True, act)
    got = fused.serial_step(cache.z, cache.out[L - 1], m.gates[L - 1], m.layers[-1].weight, m.layers[-1].bias,
                            T, loss, out, E0, before)
    want = _step_by_two_kernel_calls(m, X, T, loss, E0)
    assert got == ([None] + want if L == 1 else want)
    assert got[-1][0] != hidden[-1] - 1 or got[-1][1] == 0.0     # reaching nothing: exactly no change


@needs_kernel
def test_the_compiled_step_follows_removals_through_the_kept_outputs():
    # kept outputs brought up to date unit by unit give the scores computed afresh, up to rounding
    m = random_net([7, 8], "sigmoid", "sigmoid", n_out=10, seed=4).to(torch.float32)
    X, T = random_data(n=300, n_out=10, seed=4)
    X, T = X.float(), T.float()
    store = fused.new_store(300, 7, 10, torch.float32)
    def step(rows, gain, init, keep):
        cache = forward(m, X)
        E0 = fused.measure(cache.z, T, "sse", "sigmoid")[0]
        before = (cache.pre[1], cache.out[0], m.gates[0], m.layers[1].weight, rows, gain, keep, init, "sigmoid")
        return fused.serial_step(cache.z, cache.out[1], m.gates[1], m.layers[-1].weight, m.layers[-1].bias,
                                 T, "sse", "sigmoid", E0, before)
    step(np.arange(8), np.ones(8, np.float32), True, store)
    for u in (3, 0, 6):
        m.set_gate(1, u, 0.0)
        followed = step(np.array([u]), np.array([-1.0], np.float32), False, store)
        rows = np.flatnonzero(m.gates[1].numpy())
        fresh = step(rows, m.gates[1].numpy()[rows], True, None)
        assert [p[0] for p in followed] == [p[0] for p in fresh]
        np.testing.assert_allclose([p[1] for p in followed], [p[1] for p in fresh], rtol=1e-4, atol=1e-4)


@needs_kernel
def test_the_compiled_step_names_a_non_finite_score():
    m = random_net([4, 5], n_out=3, seed=1)
    X, T = random_data(seed=1)
    cache = forward(m, X)
    rows = np.arange(5)
    before = (cache.pre[1], cache.out[0], m.gates[0], m.layers[1].weight, rows, np.ones(5), None, True, "sigmoid")
    with pytest.raises(FloatingPointError) as e:
        fused.serial_step(cache.z, cache.out[1], m.gates[1], m.layers[-1].weight, m.layers[-1].bias, T, "sse",
                          "sigmoid", float("nan"), before)
    assert e.value.args[0] == (0, 0)                  # layer a (the first checked), its first unit
    m.gates[0].zero_()                                # no candidate before the last layer: the last one's
    with pytest.raises(shrinknet.ShrinkNetError, match=r"non-finite score to active neuron \(layer 1, unit 0\)"):
        Stepper(m, X, T * float("nan"), "sse").best(forward(m, X))


def test_serial_path_steps_aside_where_it_does_not_apply(path):
    m = random_net([5, 4])
    X, T = random_data()
    assert Stepper(m, X, T, "sse", compensation="mean").best(forward(m, X)) is None     # compensation: the loop scores
    assert shrinknet.oracle.best(PruningContext(m, X, T, "sse", compensation="mean")) is None
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)).double()
    gm = shrinknet.GatedModel(net, example_input=X[:1])
    assert shrinknet.oracle.best(PruningContext(gm, X, T, "sse")) is None                 # not the MLP class
    if path == "torch":
        assert Stepper(m, X, T, "sse").best(forward(m, X)) is None                         # no kernel
    r = shrinknet.prune(m, X, T, "brute-force", compensation="mean", stop=2)
    assert len(r.removed) == 2


# ---- the pruning loop's helpers -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("loss, output", list(fused.MODES))
@pytest.mark.parametrize("S", [1, 3, 10, 12])
def test_measure_is_the_loss_and_the_argmax_count(dtype, loss, output, S, build):
    g = torch.Generator().manual_seed(S)
    n = 45                                                            # not a multiple of the vector width
    z = torch.randn(n, S, generator=g, dtype=dtype) * 3
    z[5] = z[5, 0]                                                    # a row of equal outputs: the first counts
    T = torch.nn.functional.one_hot(torch.randint(0, S, (n,), generator=g), S).to(dtype)
    T[5] = 0
    T[5, S // 2] = 1
    E, right = fused.measure(z, T, loss, output)
    tol = 2e-6 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(E, float(losses.total(z, T, output, loss)), rtol=tol, atol=tol)
    if S > 1:
        assert right == int((z.argmax(1) == T.argmax(1)).sum())


@needs_kernel
def test_measure_notices_outputs_changed_in_place():
    z, T = torch.randn(20, 3), torch.softmax(torch.randn(20, 3), 1)
    first = fused.measure(z, T, "sse", "sigmoid")
    assert fused.measure(z, T, "sse", "sigmoid") == first              # remembered
    z.add_(1.0)
    np.testing.assert_allclose(fused.measure(z, T, "sse", "sigmoid")[0],
                               float(losses.total(z, T, "sigmoid", "sse")), rtol=2e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n, R, S", [(1, 5, 1), (37, 13, 3), (100, 16, 10), (700, 101, 16), (9, 3, 12)])
def test_linear_is_torchs_product(dtype, n, R, S, build):
    g = torch.Generator().manual_seed(R)
    h, W, b = (torch.randn(*s, generator=g, dtype=dtype) for s in ((n, R), (S, R), (S,)))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(fused.linear(h, W, b), torch.nn.functional.linear(h, W, b), rtol=tol, atol=tol)


@needs_kernel
def test_linear_leaves_autograd_and_wide_outputs_to_torch():
    h, W, b = torch.randn(4, 3), torch.randn(2, 3, requires_grad=True), torch.randn(2)
    assert fused.linear(h, W, b) is None                              # a gradient is wanted
    with torch.no_grad():
        assert fused.linear(h, W, b) is not None
        assert fused.linear(h, torch.randn(17, 3), torch.randn(17)) is None
    m = random_net([5])
    X, _ = random_data()
    c = forward(m, X)
    lin = m.layers[-1]
    with torch.no_grad():
        assert torch.equal(c.z, fused.linear(c.out[-1], lin.weight, lin.bias))    # the caches' pass uses it
    torch.testing.assert_close(c.z, m.logits(X).detach())              # torch's own: rounding apart


def test_the_loop_measures_with_and_without_the_kernel_alike(monkeypatch):
    from shrinknet.metrics import error_and_accuracy
    z, T = torch.randn(50, 4, dtype=torch.float64), torch.eye(4, dtype=torch.float64)[torch.arange(50) % 4]
    fast = error_and_accuracy(z, T, "softmax", "cross-entropy", True)
    monkeypatch.setenv("SHRINKNET_FUSED", "0")
    slow = error_and_accuracy(z, T, "softmax", "cross-entropy", True)
    np.testing.assert_allclose(fast[0], slow[0], rtol=1e-12)
    assert fast[1] == slow[1]
