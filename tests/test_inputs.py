"""Batches as models take them (a tensor, a tuple or a dict of tensors) and outputs as models give
them (a tensor, a Hugging Face ModelOutput, a tuple): shrinknet.inputs."""
from collections.abc import Mapping

import numpy as np
import pytest
import torch
from torch import nn

import shrinknet
from shrinknet import ShrinkNetError
from shrinknet import inputs as batch


pytestmark = pytest.mark.usefixtures("one_thread")


class Encoding(Mapping):
    """A read-only mapping that is not a dict, like a tokenizer's BatchEncoding."""

    def __init__(self, **kw):
        self._d = kw

    def __getitem__(self, k):
        return self._d[k]

    def __iter__(self):
        return iter(self._d)

    def __len__(self):
        return len(self._d)


def test_float_tensors_take_the_dtype_integer_and_bool_tensors_keep_theirs():
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]], dtype=torch.int32)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    x = np.ones((2, 4))                                                    # float64 array
    out = batch.check({"input_ids": ids, "mask": mask, "x": x}, dtype=torch.float32)
    assert (out["input_ids"].dtype, out["mask"].dtype, out["x"].dtype) == (torch.int32, torch.bool, torch.float32)
    assert torch.equal(out["input_ids"], ids)
    assert batch.check(torch.arange(6).view(2, 3), dtype=torch.float64).dtype == torch.int64
    assert batch.check(torch.zeros(2, 3, dtype=torch.float16), dtype=torch.float64).dtype == torch.float64


def test_lists_of_tensors_are_tuples_and_mappings_are_dicts():
    a, b = torch.zeros(3, 2), torch.ones(3, dtype=torch.long)
    t = batch.check([a, b])
    assert isinstance(t, tuple) and len(t) == 2 and t[1].dtype == torch.long
    d = batch.check(Encoding(input_ids=b, attention_mask=b))
    assert type(d) is dict and list(d) == ["input_ids", "attention_mask"]


@pytest.mark.parametrize("X, message", [
    (None, r"X: expected a tensor, a tuple or a dict of tensors, got None"),
    ({}, r"X: expected a dict of tensors keyed by argument names, got keys \[\]"),
    ({1: torch.zeros(2)}, r"X: expected a dict of tensors keyed by argument names, got keys \[1\]"),
    ((), r"X: expected at least one tensor in the tuple, got none"),
    ({"ids": torch.zeros(3, 2), "mask": torch.zeros(2, 2)},
     r"X\['mask'\]: expected 3 samples on dim 0 like X\['ids'\], got 2 \(shape \(2, 2\)\)"),
    ((torch.zeros(3, 2), torch.zeros(4)), r"X\[1\]: expected 3 samples on dim 0 like X\[0\], got 4"),
    ({"x": torch.tensor([[1.0, float("nan")]])}, r"X\['x'\]: expected finite values, got 1 NaN/inf entries"),
    ({"x": torch.zeros(2, dtype=torch.complex64)}, r"X\['x'\]: expected a float, integer or boolean tensor"),
    ((torch.tensor(1.0),), r"X\[0\]: expected a non-empty batch \(N, ...\), got shape \(\)"),
    (torch.zeros(0, 3), r"X: expected a non-empty batch \(N, ...\), got shape \(0, 3\)"),
    ({"x": "text"}, r"X\['x'\]: expected a "),
])
def test_bad_batches_name_the_entry(X, message):
    with pytest.raises(ShrinkNetError, match=message):
        batch.check(X)


def test_take_repeat_rows_and_shapes_on_every_form():
    ids = torch.arange(6).view(3, 2)
    x = torch.arange(3.0)
    for X in (ids, (ids, x), {"a": ids, "b": x}):
        assert batch.rows(X) == 3
        part = batch.take(X, torch.tensor([2, 0]))
        assert [t.tolist() for t in batch.leaves(part)][0] == [[4, 5], [0, 1]]
        rep = batch.repeat(X, 2)                                       # copy-major: [X, X]
        assert batch.rows(rep) == 6 and torch.equal(batch.leaves(rep)[0], torch.cat([ids, ids]))
        assert type(rep) is type(X) and type(part) is type(X)
    assert batch.sample_shapes({"a": ids, "b": x}) == {"a": (2,), "b": ()}
    assert batch.describe({"a": ids}) == "{'a': (3, 2) torch.int64}"
    assert batch.describe((ids, x)) == "((3, 2) torch.int64, (3,) torch.float32)"


def test_call_passes_the_batch_as_the_model_takes_it():
    seen = []

    class Probe(nn.Module):
        def forward(self, *args, **kw):
            seen.append((len(args), sorted(kw)))
            return torch.zeros(1)
    t = torch.zeros(2, 1)
    batch.call(Probe(), t)
    batch.call(Probe(), (t, t))
    batch.call(Probe(), {"input_ids": t, "attention_mask": t})
    assert seen == [(1, []), (2, []), (0, ["attention_mask", "input_ids"])]


def test_logits_of_every_output_form():
    z = torch.randn(2, 3)
    assert batch.logits_of(z) is z
    assert batch.logits_of((z, "extra")) is z
    assert batch.logits_of({"loss": None, "logits": z}) is z
    transformers = pytest.importorskip("transformers")
    out = transformers.modeling_outputs.SequenceClassifierOutput(logits=z)
    assert batch.logits_of(out) is z
    with pytest.raises(ShrinkNetError, match="expected its output to be a tensor, an output with 'logits' or a tuple "
                                             "starting with a tensor, got str"):
        batch.logits_of("nope")


def test_inference_mode_tensors_are_cloned_so_caches_can_read_versions():
    with torch.inference_mode():
        t = torch.ones(2, 2)
    out = batch.plain({"a": t, "b": torch.ones(2)})
    assert not out["a"].is_inference() and torch.equal(out["a"], t)


class Pair(nn.Module):
    """Takes (ids, mask) positionally and returns a tuple: logits first."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.fc1, self.fc2 = nn.Embedding(10, 6), nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, ids, mask):
        h = (self.emb(ids) * mask[..., None]).sum(1)
        return self.fc2(torch.relu(self.fc1(h))), mask.sum()


def test_a_tuple_batch_with_token_ids_prunes_like_a_single_model_call():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 10, (16, 5), generator=g)
    mask = (torch.rand(16, 5, generator=g) > 0.2).float()
    y = torch.randint(0, 3, (16,), generator=g)
    net = Pair()
    r = shrinknet.prune(net, (ids, mask), y, "brute-force", stop=3)
    assert r.unit_names == ["fc1"] and r.n_removed == 3
    gm = r.model
    assert torch.equal(gm.example[0], ids[:1])                           # token ids kept as integers
    keep = r.keep_by_name()["fc1"]
    small = shrinknet.shrink(net, r)
    assert small.fc1.out_features == len(keep) == 5
    assert torch.allclose(small(ids, mask)[0], gm((ids, mask)), atol=1e-6)
    ev = shrinknet.evaluate(small, (ids, mask), y)
    assert ev["error"] == pytest.approx(r.errors[-1], rel=1e-5) and ev["n"] == 16


def test_nested_lists_of_numbers_are_samples_and_uint8_images_take_the_models_dtype():
    import shrinknet
    assert not batch.is_loader([[0, 0], [0, 1], [1, 0], [1, 1]])
    assert batch.is_loader([(torch.zeros(2, 3), torch.zeros(2))])
    m = shrinknet.MLP([2, 3, 1], "sigmoid", "sigmoid", seed=0)
    assert shrinknet.evaluate(m, [[0, 0], [0, 1], [1, 0], [1, 1]], [0, 1, 1, 0], "sse")["n"] == 4
    img = torch.randint(0, 255, (5, 1, 4, 4), dtype=torch.uint8)
    assert batch.check(img, "X", torch.float64).dtype == torch.float64
    ids = torch.randint(0, 9, (5, 4))
    assert batch.check(ids, "X", torch.float64).dtype == torch.int64
