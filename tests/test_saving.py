"""Saving and loading shrunk models without pickle; ONNX export."""
import json

import numpy as np
import pytest
import torch

import shrinknet
from shrinknet import ShrinkNetError, load_model, save_model, shrink
from shrinknet.saving import read_meta
from tests.conftest import TinyResNet, image_data, random_net, tiny_cnn, tiny_resnet


def test_a_shrunk_sequential_loads_on_its_own(tmp_path):
    X, _ = image_data()
    small = shrink(tiny_cnn(), {"0": [1, 2], "9": [0, 4]}, X[:1])
    path = save_model(small, tmp_path / "s.safetensors", example_input=X[:1])
    meta = read_meta(path)
    assert json.loads(meta["input_shape"]) == [1, 8, 8] and meta["format"] == "shrinknet-module"
    back = load_model(path)
    assert type(back) is torch.nn.Sequential and back[0].out_channels == 2 and back[9].out_features == 2
    assert torch.equal(back(X), small(X))


def test_any_other_model_loads_into_a_template(tmp_path):
    X, _ = image_data(n_out=3)
    small = shrink(tiny_resnet(), {"conv1": [0, 2], "fc1": [1, 2]}, X[:1])
    path = save_model(small, tmp_path / "r.safetensors")
    with pytest.raises(ShrinkNetError, match="only loads into a template"):
        load_model(path)
    template = TinyResNet().double()
    back = load_model(path, template=template)
    assert torch.equal(back(X), small(X)) and template.conv1.out_channels == 3   # template untouched


def test_an_mlp_file_still_loads(tmp_path):
    m = random_net([5])
    m.save(tmp_path / "m.safetensors")
    assert isinstance(load_model(tmp_path / "m.safetensors"), shrinknet.MLP)


def test_bad_files_are_named_and_nothing_is_overwritten(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 20)
    with pytest.raises(ShrinkNetError, match="not a readable safetensors file"):
        load_model(bad)
    with pytest.raises(ShrinkNetError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "x"})
    with pytest.raises(ShrinkNetError, match="expected format 'shrinknet-module'"):
        load_model(tmp_path / "other.safetensors")
    net = tiny_cnn()
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0] = float("nan")
    path = save_model(net, tmp_path / "nan.safetensors")
    with pytest.raises(ShrinkNetError, match="NaN/inf"):
        load_model(path)
    # a template whose layers do not match the file
    save_model(tiny_cnn(), tmp_path / "cnn.safetensors")
    with pytest.raises(ShrinkNetError, match="not a Linear / Conv2d / Conv1D / BatchNorm of the template"):
        load_model(tmp_path / "cnn.safetensors", template=TinyResNet())


def test_a_file_naming_an_unknown_layer_type_is_refused(tmp_path):
    from safetensors.torch import save_file
    meta = {"format": "shrinknet-module", "shapes": "{}", "architecture": json.dumps({"type": "os.system"})}
    save_file({"w": torch.zeros(1)}, str(tmp_path / "evil.safetensors"), metadata=meta)
    with pytest.raises(ShrinkNetError, match="layer type 'os.system' is not supported"):
        load_model(tmp_path / "evil.safetensors")


def test_onnx_export_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    X, _ = image_data(n=5)
    small = shrink(tiny_cnn(), {"4": [0, 3], "9": [1, 2, 3]}, X[:1]).float()
    path = shrinknet.export_onnx(small, tmp_path / "s.onnx", X[:1].float())
    assert [f.name for f in tmp_path.iterdir()] == ["s.onnx"]        # one file: no hidden .data beside it
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    path = path.rename(moved / "copy.onnx")                              # runs alone, wherever it goes
    sess = ort.InferenceSession(str(path))
    got = sess.run(None, {"input": X.float().numpy()})[0]                 # batch 5: the batch size is free
    np.testing.assert_allclose(got, small(X.float()).detach().numpy(), atol=1e-5)
