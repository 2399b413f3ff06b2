"""The command line on Hugging Face model folders (issue 29, point 1): tiny GPT-2, BERT, LLaMA and ViT
folders made in tmp_path from configs with seeded random weights and a character tokenizer; ``prune``,
``shrink`` and ``compare`` run in process. The report's perplexity and accuracy against the same numbers
computed here by hand, the written folder reloaded by plain ``transformers``, and every refusal one line,
exit code 2, nothing left behind (and nothing from the folder run or unpickled)."""
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import shrinknet  # noqa: E402
from shrinknet import folders  # noqa: E402
from shrinknet.cli import main  # noqa: E402
from tests.test_transformers import _randomize  # noqa: E402  (std 0.3 weights: every unit moves the loss)

transformers.logging.set_verbosity_error()
pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = ("To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
        "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n") * 3
CHARS = sorted(set(TEXT))
SEQ = 12
TOL = dict(rtol=1e-5, atol=1e-5)


def _folder(path, model, tokenizer=None, **save):
    model.save_pretrained(path, **save)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path


def gpt2(path, layers=2, **save):
    cfg = transformers.GPT2Config(vocab_size=len(CHARS), n_embd=16, n_layer=layers, n_head=4, n_positions=32,
                                  n_inner=24, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = _randomize(transformers.GPT2LMHeadModel(cfg), 0)
    return _folder(path, model, folders.char_tokenizer(CHARS), **save), model


def llama(path):
    cfg = transformers.LlamaConfig(vocab_size=len(CHARS), hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=24, max_position_embeddings=32)
    torch.manual_seed(0)
    model = _randomize(transformers.LlamaForCausalLM(cfg), 0)
    return _folder(path, model, folders.char_tokenizer(CHARS)), model


def bert_mlm(path):
    tok = folders.char_tokenizer(CHARS, ["[MASK]", "[CLS]", "[SEP]"])
    cfg = transformers.BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=24, max_position_embeddings=32)
    torch.manual_seed(0)
    model = _randomize(transformers.BertForMaskedLM(cfg), 0)
    return _folder(path, model, tok), model, tok


def bert_classifier(path):
    cfg = transformers.BertConfig(vocab_size=len(CHARS), hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=24, max_position_embeddings=32, num_labels=3)
    torch.manual_seed(0)
    model = _randomize(transformers.BertForSequenceClassification(cfg), 0)
    return _folder(path, model), model


def vit(path):
    cfg = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=4, intermediate_size=24, num_labels=3)
    torch.manual_seed(0)
    model = _randomize(transformers.ViTForImageClassification(cfg), 0)
    return _folder(path, model), model


def texts(tmp_path):
    cut = len(TEXT) * 2 // 3
    (tmp_path / "train.txt").write_text(TEXT[:cut])
    (tmp_path / "test.txt").write_text(TEXT[cut:])
    return str(tmp_path / "train.txt"), str(tmp_path / "test.txt")


def causal_windows(text, seq=SEQ):
    """The windows the command line promises, made by hand: seq + 1 characters every seq characters."""
    ids = torch.tensor([CHARS.index(c) for c in text])
    n = (len(ids) - 1) // seq
    w = torch.stack([ids[i * seq: i * seq + seq + 1] for i in range(n)])
    return w[:, :-1], w[:, 1:]


@torch.no_grad()
def mean_ce(model, ids, targets):
    z = model(input_ids=ids).logits.float()
    live = targets != -100
    return float(F.cross_entropy(z[live], targets[live]))


def remade(model, out, example=None):
    """The run's smaller model made again here from its result.json (``shrink`` of the loaded result)."""
    r = out if isinstance(out, shrinknet.PruneResult) else shrinknet.PruneResult.load_json(Path(out) / "result.json")
    x = example if example is not None else {"input_ids": torch.zeros(1, SEQ, dtype=torch.long)}
    return shrinknet.shrink(model, r, example_input=x)


def run(*argv):
    return main(["--quiet", *map(str, argv)])


def report(out):
    return json.loads((Path(out) / "report.json").read_text())


# ---- causal LMs --------------------------------------------------------------------------------------
def test_shrink_a_gpt2_folder_reports_the_perplexity_of_the_test_windows(tmp_path, capsys):
    folder, model = gpt2(tmp_path / "gpt")
    train, test = texts(tmp_path)
    out = tmp_path / "small"
    assert run("shrink", folder, "--data", train, "--test-data", test, "--seq-len", SEQ, "--n-neurons", 6,
               "--out", out) == 0
    text = capsys.readouterr().out
    rep = report(out)
    X, Y = causal_windows(Path(test).read_text())
    assert rep["quality"]["before"]["positions"] == Y.numel()
    assert rep["quality"]["before"]["perplexity"] == pytest.approx(math.exp(mean_ce(model, X, Y)), rel=1e-6)
    # the smaller model, made again from the run's result, gives the "after" numbers
    r = shrinknet.PruneResult.load_json(out / "result.json")
    assert r.n_removed == 6 and r.unit_names[0] == "transformer.h.0.attn"          # heads and FFN neurons by default
    small = remade(model, r)
    assert rep["quality"]["after"]["perplexity"] == pytest.approx(math.exp(mean_ce(small, X, Y)), rel=1e-6)
    assert rep["after"]["params"] == sum(p.numel() for p in small.parameters()) < rep["before"]["params"]
    assert "perplexity" in text and "FLOPs / sample" in text and f"the {len(X)} windows of {test}" in text
    # the folder's weights are the smaller model's, in transformers' own names
    from safetensors.torch import load_file
    saved = load_file(out / "model" / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in small.state_dict().items() if k in saved)
    assert (out / "model" / "tokenizer.json").is_file() and (out / "model" / "generation_config.json").is_file()


def test_a_uniform_ffn_shrink_reloads_with_plain_transformers(tmp_path):
    folder, model = gpt2(tmp_path / "gpt", layers=1)
    train, test = texts(tmp_path)
    out = tmp_path / "small"
    assert run("shrink", folder, "--data", train, "--seq-len", SEQ, "--units", "ffn", "--n-neurons", 5,
               "--out", out) == 0
    assert report(out)["plain_from_pretrained"] is True
    small = remade(model, out)
    back = transformers.GPT2LMHeadModel.from_pretrained(out / "model")
    assert back.config.n_inner == 19 and back.transformer.h[0].mlp.c_fc.weight.shape == (16, 19)
    X, _ = causal_windows(Path(test).read_text())
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=X).logits, small(input_ids=X).logits, **TOL)
    tok = transformers.AutoTokenizer.from_pretrained(out / "model")
    assert tok("To be")["input_ids"] == [CHARS.index(c) for c in "To be"]
    ids = back.generate(X[:1, :4], max_new_tokens=3, do_sample=False)            # the generation config came along
    assert ids.shape == (1, 7) and torch.equal(ids[:, :4], X[:1, :4])


def test_a_non_uniform_shrink_is_refused_by_plain_from_pretrained_not_loaded_wrong(tmp_path):
    folder, _ = gpt2(tmp_path / "gpt")
    train, _ = texts(tmp_path)
    out = tmp_path / "small"
    assert run("shrink", folder, "--data", train, "--seq-len", SEQ, "--n-neurons", 6, "--out", out) == 0
    assert report(out)["plain_from_pretrained"] is False
    with pytest.raises(Exception, match=r"load it with shrinknet\.from_pretrained\(folder\)"):
        transformers.GPT2LMHeadModel.from_pretrained(out / "model")
    with pytest.raises(ValueError, match=r"load it with shrinknet\.from_pretrained\(folder\)"):
        transformers.AutoModelForCausalLM.from_pretrained(out / "model")
    # shrinknet's own reload gives the shrunk model; its tokenizer loads the usual way
    back = shrinknet.from_pretrained(out / "model")
    assert type(back) is transformers.GPT2LMHeadModel
    assert sum(p.numel() for p in back.parameters()) == report(out)["after"]["params"]
    tok = transformers.AutoTokenizer.from_pretrained(out / "model")
    assert tok.decode(tok("to be")["input_ids"]) == "to be"
    # and the command line takes the smaller folder again
    again = tmp_path / "again"
    assert run("shrink", out / "model", "--data", train, "--seq-len", SEQ, "--n-neurons", 2, "--out", again) == 0
    assert report(again)["before"]["params"] == report(out)["after"]["params"]


def test_llama_with_grouped_kv_heads_shrinks_and_reloads(tmp_path):
    folder, model = llama(tmp_path / "llama")
    train, test = texts(tmp_path)
    out = tmp_path / "small"
    assert run("shrink", folder, "--data", train, "--test-data", test, "--seq-len", SEQ, "--units", "ffn",
               "--criterion", "taylor1", "--fraction", "0.25", "--out", out) == 0
    small = remade(model, out)
    back = transformers.LlamaForCausalLM.from_pretrained(out / "model")
    assert back.config.intermediate_size == 18
    X, Y = causal_windows(Path(test).read_text())
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=X).logits, small(input_ids=X).logits, **TOL)
    assert report(out)["quality"]["after"]["perplexity"] == pytest.approx(math.exp(mean_ce(small, X, Y)), rel=1e-6)


def test_a_sharded_bfloat16_folder_comes_back_in_bfloat16(tmp_path):
    cfg_folder, model = gpt2(tmp_path / "gpt", layers=1)
    model = model.to(torch.bfloat16)
    folder = _folder(tmp_path / "bf16", model, folders.char_tokenizer(CHARS), max_shard_size="1KB")
    assert (folder / "model.safetensors.index.json").is_file() and not (folder / "model.safetensors").exists()
    train, _ = texts(tmp_path)
    out = tmp_path / "small"
    assert run("shrink", folder, "--data", train, "--seq-len", SEQ, "--units", "ffn", "--n-neurons", 4,
               "--out", out) == 0
    back = transformers.GPT2LMHeadModel.from_pretrained(out / "model", dtype="auto")
    assert back.dtype == torch.bfloat16 and back.config.n_inner == 20


def test_npz_and_safetensors_data_give_the_text_files_run(tmp_path):
    folder, _ = gpt2(tmp_path / "gpt")
    train, _ = texts(tmp_path)
    X, Y = causal_windows(Path(train).read_text())
    # labels as Hugging Face takes them (the inputs, shifted inside): windows one token longer give the
    # text's targets at every position but the extra last one, whose output a causal model's others ignore
    W = torch.cat([X, Y[:, -1:]], 1)
    np.savez(tmp_path / "d.npz", input_ids=W.numpy())                # no labels: the inputs
    from safetensors.torch import save_file
    save_file({"input_ids": W, "attention_mask": torch.ones_like(W), "labels": W.clone()},
              str(tmp_path / "d.safetensors"))
    runs = []
    for data in (train, tmp_path / "d.npz", tmp_path / "d.safetensors"):
        out = tmp_path / f"o{len(runs)}"
        assert run("prune", folder, "--data", data, "--seq-len", SEQ, "--criterion", "taylor1", "--n-neurons", 5,
                   "--out", out) == 0
        runs.append(json.loads((out / "result.json").read_text()))
    assert runs[0]["removed"] == runs[1]["removed"] == runs[2]["removed"]
    assert runs[1]["errors"] == runs[2]["errors"]
    assert runs[0]["errors"] == pytest.approx(runs[1]["errors"], rel=1e-5)


def test_prune_on_a_folder_reports_the_gated_model_and_compare_judges_criteria(tmp_path, capsys):
    folder, model = gpt2(tmp_path / "gpt")
    train, test = texts(tmp_path)
    out = tmp_path / "p"
    assert run("prune", folder, "--data", train, "--test-data", test, "--seq-len", SEQ, "--criterion", "fisher",
               "--fraction", "0.2", "--out", out) == 0
    r = shrinknet.PruneResult.load_json(out / "result.json")
    X, Y = causal_windows(Path(test).read_text())
    small = remade(model, r)
    rep = report(out)
    assert rep["before"]["perplexity"] == pytest.approx(math.exp(mean_ce(model, X, Y)), rel=1e-6)
    assert rep["after"]["perplexity"] == pytest.approx(math.exp(mean_ce(small, X, Y)), rel=1e-5)
    assert r.n_removed == round(0.2 * r.initially_active) and r.test_errors          # the test windows tracked
    out = tmp_path / "c"
    assert run("compare", folder, "--data", train, "--seq-len", SEQ, "--criteria", "taylor1", "fisher",
               "--steps", 2, "--eval-samples", 8, "--out", out) == 0
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("criterion") and {r.split(",")[0] for r in rows[1:]} == {"taylor1", "fisher"}


def test_whole_sublayers_on_the_command_line(tmp_path, capsys):
    folder, model = gpt2(tmp_path / "gpt")
    train, test = texts(tmp_path)
    out = tmp_path / "small"
    assert run("shrink", folder, "--data", train, "--test-data", test, "--seq-len", SEQ, "--units", "blocks",
               "--criterion", "taylor1", "--n-neurons", 1, "--out", out) == 0
    r = shrinknet.PruneResult.load_json(out / "result.json")
    assert all(n.endswith(":sublayer") for n in r.unit_names) and len(r.unit_names) == 4 and r.n_removed == 1
    small = remade(model, r)
    X, Y = causal_windows(Path(test).read_text())
    assert report(out)["quality"]["after"]["perplexity"] == pytest.approx(math.exp(mean_ce(small, X, Y)), rel=1e-6)
    assert report(out)["plain_from_pretrained"] is False


# ---- masked LM and classifiers --------------------------------------------------------------------------
def test_masking_is_seeded_and_as_hugging_faces_collator():
    x = torch.randint(0, 30, (200, 100), generator=torch.Generator().manual_seed(0))
    x[:, 0], x[:, -1] = 31, 32                                            # [CLS], [SEP]: never masked
    inp, labels = folders.mask_tokens(x, 33, 34, special=[31, 32])
    again, labels2 = folders.mask_tokens(x, 33, 34, special=[31, 32])
    assert torch.equal(inp["input_ids"], again["input_ids"]) and torch.equal(labels, labels2)
    chosen = labels != -100
    assert torch.equal(labels[chosen], x[chosen]) and not chosen[:, [0, -1]].any()
    assert torch.equal(inp["input_ids"][~chosen], x[~chosen])             # the rest untouched
    n = int(chosen.sum())
    assert abs(n / (200 * 98) - 0.15) < 0.01
    masked = int((inp["input_ids"][chosen] == 33).sum())
    kept = int((inp["input_ids"][chosen] == x[chosen]).sum())
    assert abs(masked / n - 0.8) < 0.03 and abs(kept / n - 0.1) < 0.03 + 1 / 34   # (a random draw may keep it)


def test_a_masked_lm_reports_the_perplexity_of_its_masked_tokens(tmp_path):
    folder, model, tok = bert_mlm(tmp_path / "bert")
    train, test = texts(tmp_path)
    out = tmp_path / "small"
    assert run("shrink", folder, "--data", train, "--test-data", test, "--seq-len", 16, "--n-neurons", 4,
               "--out", out) == 0
    X, labels = folders.text_windows(tok, Path(test).read_text(), 16, "masked-lm", len(tok))
    ids = X["input_ids"]
    assert (ids[:, 0] == tok.cls_token_id).all() and (ids[:, -1] == tok.sep_token_id).all()
    small = remade(model, out)
    rep = report(out)["quality"]
    assert rep["before"]["positions"] == int((labels != -100).sum()) > 0
    for key, m in (("before", model), ("after", small)):
        assert rep[key]["perplexity"] == pytest.approx(math.exp(mean_ce(m, ids, labels)), rel=1e-6)


def _labelled_ids(n, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, len(CHARS), (n, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[::3, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, 3, (n,), generator=g)}


@torch.no_grad()
def _accuracy(model, d, key):
    x = {k: v for k, v in d.items() if k != "labels"}
    z = model(**x).logits if key == "input_ids" else model(pixel_values=x["pixel_values"]).logits
    return float((z.argmax(-1) == d["labels"]).double().mean())


def test_a_sequence_classifier_on_npz_data_reports_accuracy(tmp_path, capsys):
    folder, model = bert_classifier(tmp_path / "bert")
    train, test = _labelled_ids(40, 1), _labelled_ids(30, 2)
    np.savez(tmp_path / "train.npz", **{k: v.numpy() for k, v in train.items()})
    np.savez(tmp_path / "test.npz", **{k: v.numpy() for k, v in test.items()})
    out = tmp_path / "small"
    assert run("shrink", folder, "--data", tmp_path / "train.npz", "--test-data", tmp_path / "test.npz",
               "--n-neurons", 5, "--out", out) == 0
    small = remade(model, out, {k: v[:1] for k, v in test.items() if k != "labels"})
    rep = report(out)
    assert rep["quality"]["before"]["accuracy"] == _accuracy(model, test, "input_ids") == rep["before"]["accuracy"]
    assert rep["quality"]["after"]["accuracy"] == _accuracy(small, test, "input_ids") == rep["after"]["accuracy"]
    assert rep["quality"]["before"]["samples"] == 30 and "accuracy" in capsys.readouterr().out


def test_an_image_classifier_on_safetensors_data(tmp_path):
    from safetensors.torch import save_file
    folder, model = vit(tmp_path / "vit")
    g = torch.Generator().manual_seed(3)
    data = {"pixel_values": torch.randn(24, 1, 8, 8, generator=g), "labels": torch.randint(0, 3, (24,), generator=g)}
    save_file(data, str(tmp_path / "d.safetensors"))
    out = tmp_path / "small"
    assert run("shrink", folder, "--data", tmp_path / "d.safetensors", "--units", "ffn", "--n-neurons", 3,
               "--out", out) == 0
    small = remade(model, out, {"pixel_values": data["pixel_values"][:1]})
    assert report(out)["quality"]["after"]["accuracy"] == _accuracy(small, data, "pixel_values")
    back = transformers.ViTForImageClassification.from_pretrained(out / "model")
    with torch.no_grad():
        torch.testing.assert_close(back(pixel_values=data["pixel_values"]).logits,
                                   small(pixel_values=data["pixel_values"]).logits, **TOL)


# ---- refusals: one line, exit code 2, nothing left behind, nothing from the folder run --------------------
class _Touch:
    """Unpickling this creates the file ``path``: it shows whether a pickle was ever loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _bad(tmp_path, kind):
    """(argv, what the one line must say) for one kind of bad input."""
    folder, _ = gpt2(tmp_path / "gpt")
    train, _ = texts(tmp_path)
    marker = tmp_path / "RAN"
    cfg = json.loads((folder / "config.json").read_text())
    if kind == "no config.json":
        (folder / "config.json").unlink()
        return [folder, "--data", train], "no config.json"
    if kind == "code in the folder":
        (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
        cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
        (folder / "config.json").write_text(json.dumps(cfg))
        return [folder, "--data", train], "names code in the folder (auto_map"
    if kind == "code in the tokenizer":
        tc = json.loads((folder / "tokenizer_config.json").read_text())
        (folder / "tokenization_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
        tc["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
        (folder / "tokenizer_config.json").write_text(json.dumps(tc))
        return [folder, "--data", train], "tokenizer_config.json names code in the folder"
    if kind == "pickled weights":
        (folder / "model.safetensors").unlink()
        (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Touch(marker)))
        return [folder, "--data", train], "weights only as pytorch_model.bin (pickle)"
    if kind == "unknown architecture":
        cfg["architectures"] = ["GPT2Model"]                          # no head: nothing to measure a loss on
        (folder / "config.json").write_text(json.dumps(cfg))
        return [folder, "--data", train], "unknown architecture 'GPT2Model'"
    if kind == "no tokenizer":
        for f in ("tokenizer.json", "tokenizer_config.json"):
            (folder / f).unlink()
        return [folder, "--data", train], "no tokenizer"
    if kind == "npz keys of another model":
        np.savez(tmp_path / "d.npz", pixel_values=np.zeros((4, 1, 8, 8), np.float32), labels=np.zeros(4, np.int64))
        return [folder, "--data", tmp_path / "d.npz"], "keys ['pixel_values'] are not inputs of GPT2LMHeadModel"
    if kind == "pickled npz":
        np.savez(tmp_path / "d.npz", input_ids=np.array([_Touch(marker)], dtype=object))
        return [folder, "--data", tmp_path / "d.npz"], "no pickled objects"
    if kind == "no data":
        return [folder], "--data: a model folder needs its own calibration data"
    if kind == "text for a classifier":
        vfolder, _ = vit(tmp_path / "vit")
        return [vfolder, "--data", train], "a text file is data for a language model"
    if kind == "seq-len past the context":
        return [folder, "--data", train, "--seq-len", 33], "--seq-len: expected a length in [2, 32]"
    if kind == "text shorter than a window":
        (tmp_path / "short.txt").write_text("To be")
        return [folder, "--data", tmp_path / "short.txt", "--seq-len", SEQ], "at least --seq-len + 1 = 13 tokens"
    if kind == "test data of another width":
        np.savez(tmp_path / "t.npz", input_ids=np.zeros((3, 5), np.int64), labels=np.zeros(4, np.int64))
        return [folder, "--data", train, "--test-data", tmp_path / "t.npz"], "expected every array to have 3 samples"
    raise AssertionError(kind)


BAD = ["no config.json", "code in the folder", "code in the tokenizer", "pickled weights", "unknown architecture",
       "no tokenizer", "npz keys of another model", "pickled npz", "no data", "text for a classifier",
       "seq-len past the context", "text shorter than a window", "test data of another width"]


@pytest.mark.parametrize("kind", BAD)
@pytest.mark.parametrize("cmd", ["shrink", "prune"])
def test_bad_folders_and_data_are_one_line_exit_2_and_leave_nothing(tmp_path, capsys, kind, cmd):
    argv, match = _bad(tmp_path, kind)
    capsys.readouterr()                                  # (transformers' bars while the folder was made)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    stop = ["--n-neurons", "2"]
    assert run(cmd, *argv, *stop, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.startswith("shrinknet: error: ") and err.count("\n") == 1 and match in err, err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before      # nothing written, nothing run
    assert not (tmp_path / "RAN").exists()


def test_folder_options_on_a_model_file_are_refused(tmp_path, capsys):
    m = tmp_path / "m.safetensors"
    shrinknet.MLP([4, 3, 2], seed=0).save(m)
    assert run("prune", m, "--data", "diamond", "--test-data", "x.txt", "--out", tmp_path / "o") == 2
    assert "--test-data: only a model folder takes it" in capsys.readouterr().err
    assert run("shrink", m, "--data", "diamond", "--seq-len", "8", "--fraction", "0.5", "--out", tmp_path / "o") == 2
    assert "--seq-len: only a model folder takes it" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
