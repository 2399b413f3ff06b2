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


class TiedLM(torch.nn.Module):
    """Token embedding, a hidden layer, and an output layer that shares the embedding's weight."""

    def __init__(self, vocab=11, width=6, hidden=8):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, width)
        self.fc1, self.fc2 = torch.nn.Linear(width, hidden), torch.nn.Linear(hidden, width)
        self.head = torch.nn.Linear(width, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(self.fc2(torch.relu(self.fc1(self.emb(ids)))))


def _stored(path):
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return sorted(f.keys()), dict(f.metadata())


def test_tied_weights_are_stored_once_and_tied_again(tmp_path):
    torch.manual_seed(0)
    ids = torch.randint(0, 11, (5, 3))
    small = shrink(TiedLM(), {"fc1": [0, 2, 3, 7]}, ids[:1])
    assert small.head.weight is small.emb.weight
    path = save_model(small, tmp_path / "lm.safetensors")
    keys, meta = _stored(path)
    assert "head.weight" not in keys and "emb.weight" in keys and json.loads(meta["tied"]) == {"head.weight": "emb.weight"}
    back = load_model(path, template=TiedLM())
    assert back.head.weight is back.emb.weight                             # one tensor: training moves both
    assert sum(p.numel() for p in back.parameters()) == sum(p.numel() for p in small.parameters()) == 11 * 6 + 6 * 4 + 4 + 4 * 6 + 6
    assert torch.equal(back(ids), small(ids)) and back.fc1.out_features == 4


def test_a_file_written_before_ties_were_recorded_loads_tied(tmp_path):
    from safetensors.torch import load_file, save_file
    torch.manual_seed(0)
    ids = torch.randint(0, 11, (5, 3))
    small = shrink(TiedLM(), {"fc1": [1, 4]}, ids[:1])
    keys, meta = _stored(save_model(small, tmp_path / "new.safetensors"))
    tensors = load_file(str(tmp_path / "new.safetensors"))
    tensors["head.weight"] = tensors["emb.weight"].clone()                 # as files were written: twice
    old = {k: v for k, v in meta.items() if k not in ("tied", "resized", "sha256")}
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=old)
    back = load_model(tmp_path / "old.safetensors", template=TiedLM())
    assert back.head.weight is back.emb.weight and torch.equal(back(ids), small(ids))
    assert back.shrinknet_resized == {"fc1": {"in_features": 6, "out_features": 8},      # as in the template
                                      "fc2": {"in_features": 8, "out_features": 6}}
    again = load_model(save_model(back, tmp_path / "again.safetensors"), template=TiedLM())
    assert again.head.weight is again.emb.weight and torch.equal(again(ids), small(ids))


def test_a_model_saved_untied_loads_untied_into_a_template_that_ties(tmp_path):
    torch.manual_seed(0)
    ids = torch.randint(0, 11, (5, 3))
    net = TiedLM()
    net.head.weight = torch.nn.Parameter(net.emb.weight.detach() * 2)       # fine-tuned apart
    back = load_model(save_model(net, tmp_path / "u.safetensors"), template=TiedLM())
    assert back.head.weight is not back.emb.weight
    assert torch.equal(back.head.weight, net.head.weight) and torch.equal(back.emb.weight, net.emb.weight)
    assert torch.equal(back(ids), net(ids))


def test_only_the_layers_shrink_resized_may_differ_from_the_template(tmp_path):
    from safetensors.torch import load_file, save_file
    X, _ = image_data(n_out=3)
    small = shrink(tiny_resnet(), {"conv1": [0, 2], "fc1": [1, 2]}, X[:1])
    path = save_model(small, tmp_path / "r.safetensors")
    assert json.loads(read_meta(path)["resized"]) == {"bn1": {"num_features": 3}, "conv1": {"in_channels": 4, "out_channels": 3},
                                                      "conv2": {"in_channels": 3, "out_channels": 4},
                                                      "fc1": {"in_features": 64, "out_features": 7},
                                                      "fc2": {"in_features": 7, "out_features": 3}}

    class Wider(TinyResNet):                                              # another head: 5 outputs
        def __init__(self):
            super().__init__()
            self.fc2 = torch.nn.Linear(7, 5)
    with pytest.raises(ShrinkNetError, match=r"template: its layer 'fc2' has out_features=5, but .* was saved from "
                                             r"a model with out_features=3 there \(before shrink\)"):
        load_model(path, template=Wider().double())
    # a file from before the record loads as it did (any layer may differ), the layers it resized recorded
    meta = {k: v for k, v in read_meta(path).items() if k not in ("resized", "sha256")}
    save_file(load_file(str(path)), str(tmp_path / "old.safetensors"), metadata=meta)
    back = load_model(tmp_path / "old.safetensors", template=TinyResNet().double())
    assert torch.equal(back(X), small(X)) and back.shrinknet_resized == json.loads(read_meta(path)["resized"])


def test_a_mixed_precision_model_keeps_each_tensors_precision(tmp_path):
    class Mixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.norm, self.b = torch.nn.Linear(4, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 2)
            self.a.bfloat16(), self.b.bfloat16()

        def forward(self, x):
            return self.b(self.norm(self.a(x.bfloat16()).float()).bfloat16())
    torch.manual_seed(0)
    net = Mixed()
    with torch.no_grad():
        net.norm.weight.copy_(torch.tensor([1.0001, 0.9999, 1.00002, 1.0, 0.99995]))   # not bfloat16 numbers
    back = load_model(save_model(net, tmp_path / "m.safetensors"), template=Mixed())
    assert {k: v.dtype for k, v in back.state_dict().items()} == {k: v.dtype for k, v in net.state_dict().items()}
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), net.state_dict().values()))


def test_a_compiled_model_is_saved_as_the_module_it_wraps(tmp_path):
    X, _ = image_data()
    net = tiny_cnn()
    path = save_model(torch.compile(net), tmp_path / "c.safetensors", example_input=X[:1])
    assert not any("_orig_mod" in k for k in _stored(path)[0])
    assert torch.equal(load_model(path)(X), net(X))
