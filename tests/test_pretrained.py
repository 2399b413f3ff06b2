"""Issue 29, point 3: a shrunk transformer as a folder that reloads, and uniform pruning.

The folders are written here and reloaded in one fresh Python process (nothing of this one's state can
help it): plain ``transformers.AutoModelFor....from_pretrained`` for the uniform folders,
``shrinknet.from_pretrained`` for per-layer ones, whose plain load must fail naming it.
"""
import json
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")

import shrinknet  # noqa: E402
from shrinknet import ShrinkNetError, Stop  # noqa: E402
from shrinknet.checkpoint import digest  # noqa: E402

from .conftest import random_data, random_net  # noqa: E402
from .test_transformers import MODELS, logits  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

AUTO = {"bert": "AutoModelForSequenceClassification", "gpt2": "AutoModelForCausalLM",
        "llama": "AutoModelForCausalLM", "vit": "AutoModelForImageClassification"}
CAUSAL = ("gpt2", "llama")
PROMPT = torch.tensor([[3, 7, 1]])
SOURCE_FILES = {"tokenizer.json": '{"model": "a tokenizer of this test"}\n',
                "tokenizer_config.json": '{"model_max_length": 16}\n'}
GENERATION = {"max_new_tokens": 5, "do_sample": False, "pad_token_id": 0, "eos_token_id": 39}


def _scores(plan):
    """A criterion scoring each unit plan[name][unit] (default 1), NaN where already removed."""
    def crit(ctx):
        out = []
        for name, g in zip(ctx.model.unit_names, ctx.model.gates):
            s = torch.ones_like(g)
            for u, v in plan.get(name, {}).items():
                s[u] = v
            out.append(torch.where(g == 0, torch.nan, s))
        return out
    return crit


def _units(kind):
    spec = MODELS[kind]
    return spec["heads"], spec["ffn"]


def _per_layer_plan(kind):
    """Head 1 of the first attention module, nothing of the second; 5 FFN neurons of the first block, 2 of the
    second (so no config can say the sizes)."""
    heads, ffn = _units(kind)
    return {heads[0]: {1: 0.0}, ffn[0]: {u: 0.0 for u in (0, 3, 5, 7, 20)}, ffn[1]: {2: 0.0, 11: 0.0}}, 8


def _uniform_plan(kind):
    """Scores under which a uniform run removes 1 head (KV group) and 3 FFN neurons per block where heads are
    units (LLaMA, ViT), else 3 FFN neurons per block."""
    heads, ffn = _units(kind)
    plan = {ffn[0]: {0: 0.1, 4: 0.2, 9: 0.3}, ffn[1]: {6: 0.15, 2: 0.25, 20: 0.35}}
    if kind in ("llama", "vit"):
        plan.update({heads[0]: {1: 0.05}, heads[1]: {0: 0.5}})
        return plan, ["heads", *ffn], 2 + 6
    return plan, ffn, 6


def _save_inputs(X, path):
    from safetensors.torch import save_file
    save_file(dict(X) if isinstance(X, dict) else {"x": X}, str(path))


CHILD = r"""
import json, sys, torch, transformers
from safetensors.torch import load_file
import shrinknet
from shrinknet.checkpoint import digest
transformers.logging.set_verbosity_error()
out = {}
for case in json.load(open(sys.argv[1])):
    r = {}
    if case["plain"]:
        model = getattr(transformers, case["auto"]).from_pretrained(case["folder"]).eval()
    else:
        model = shrinknet.from_pretrained(case["folder"])
        try:
            getattr(transformers, case["auto"]).from_pretrained(case["folder"])
            r["plain_error"] = None
        except Exception as e:
            r["plain_error"] = f"{type(e).__name__}: {e}"
    X = load_file(case["inputs"])
    with torch.no_grad():
        z = (model(X["x"]) if "x" in X else model(**X)).logits
    params = dict(model.named_parameters())
    r.update(cls=type(model).__name__, dtype=str(model.dtype), params=digest([params[k] for k in sorted(params)]),
             diff=float((z.float() - load_file(case["want"])["z"].float()).abs().max()))
    if case["generate"]:
        r["generated"] = model.generate(torch.tensor([[3, 7, 1]])).tolist()
        r["max_new_tokens"] = model.generation_config.max_new_tokens
    out[case["name"]] = r
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def reloaded(tmp_path_factory):
    """Every folder of this file written (per model: per-layer, uniform; a bfloat16 one), then reloaded in one
    fresh process: {case: what it saw}, and {case: (shrunk model, folder, inputs)}."""
    from safetensors.torch import save_file
    root = tmp_path_factory.mktemp("pretrained")
    source = root / "source"
    source.mkdir()
    for name, text in SOURCE_FILES.items():
        (source / name).write_text(text)
    (source / "generation_config.json").write_text(json.dumps(GENERATION))
    (source / "config.json").write_text('{"not": "copied"}')
    cases, made = [], {}
    for kind in AUTO:
        spec = MODELS[kind]
        X, y = spec["data"]()
        for mode in ("per-layer", "uniform", "bf16"):
            if mode == "bf16" and kind not in ("llama", "bert"):
                continue
            model = spec["make"]()
            if mode == "uniform":
                plan, units, n = _uniform_plan(kind)
            else:
                (plan, n), units = _per_layer_plan(kind), ["heads", *spec["ffn"]]
            result = shrinknet.prune(model, X, y, _scores(plan), units=units, stop=Stop(n_units=n),
                                     uniform=mode == "uniform", progress=False)
            small = shrinknet.shrink(model, result)
            if mode == "bf16":
                small = small.to(torch.bfloat16)
            name = f"{kind}-{mode}"
            folder = shrinknet.save_pretrained(small, root / name, source=source)
            _save_inputs(X, root / f"{name}-inputs.safetensors")
            save_file({"z": logits(small, X).contiguous()}, str(root / f"{name}-want.safetensors"))
            cases.append({"name": name, "folder": str(folder), "auto": AUTO[kind], "plain": mode == "uniform",
                          "inputs": str(root / f"{name}-inputs.safetensors"),
                          "want": str(root / f"{name}-want.safetensors"), "generate": kind in CAUSAL})
            made[name] = (small, folder, X, result)
    (root / "cases.json").write_text(json.dumps(cases))
    (root / "child.py").write_text(CHILD)
    run = subprocess.run([sys.executable, str(root / "child.py"), str(root / "cases.json")], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1]), made


# ---- the folders, reloaded in a fresh process -----------------------------------------------------------
@pytest.mark.parametrize("kind", list(AUTO))
@pytest.mark.parametrize("mode", ["per-layer", "uniform"])
def test_a_saved_folder_reloads_in_a_fresh_process_with_the_shrunk_models_outputs(reloaded, kind, mode):
    seen, made = reloaded
    name = f"{kind}-{mode}"
    small, folder, X, _ = made[name]
    r = seen[name]
    params = dict(small.named_parameters())
    assert r["params"] == digest([params[k] for k in sorted(params)])
    assert r["cls"] == type(small).__name__
    assert r["dtype"] == "torch.float32"
    assert r["diff"] <= 1e-5 * max(1.0, float(logits(small, X).abs().max()))
    if kind in CAUSAL:                     # greedy decoding as the shrunk model decodes, with the source's settings
        want = small.generate(PROMPT, generation_config=transformers.GenerationConfig(**GENERATION)).tolist()
        assert r["generated"] == want and len(want[0]) == 3 + 5
        assert r["max_new_tokens"] == 5


@pytest.mark.parametrize("kind", list(AUTO))
def test_a_per_layer_folder_refuses_a_plain_load_naming_shrinknet_from_pretrained(reloaded, kind):
    seen, made = reloaded
    assert "shrinknet.from_pretrained" in seen[f"{kind}-per-layer"]["plain_error"]
    config = json.loads((made[f"{kind}-per-layer"][1] / "config.json").read_text())
    assert set(config["shrinknet"]["shapes"])                  # the resized layers, recorded
    assert config["architectures"] == [type(made[f"{kind}-per-layer"][0]).__name__]


@pytest.mark.parametrize("kind", list(AUTO))
def test_a_uniform_folder_has_the_new_sizes_in_its_config(reloaded, kind):
    seen, made = reloaded
    small, folder, _, result = made[f"{kind}-uniform"]
    config = json.loads((folder / "config.json").read_text())
    assert "shapes" not in config["shrinknet"]
    ffn = {"bert": "intermediate_size", "gpt2": "n_inner", "llama": "intermediate_size", "vit": "intermediate_size"}
    assert config[ffn[kind]] == 24 - 3
    keep = result.keep_by_name()
    assert {len(v) for k, v in keep.items() if k in MODELS[kind]["ffn"]} == {24 - 3}
    if kind == "llama":                    # one KV group (with its 2 query heads) of 2 in every layer
        assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (2, 1, 4)
    elif kind == "vit":
        assert (config["num_attention_heads"], config["head_dim"]) == (3, 4)
    else:
        assert config.get("n_head", config.get("num_attention_heads")) == 4


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_a_bfloat16_model_comes_back_in_bfloat16(reloaded, kind):
    seen, made = reloaded
    small, folder, X, _ = made[f"{kind}-bf16"]
    r = seen[f"{kind}-bf16"]
    assert r["dtype"] == "torch.bfloat16"
    params = dict(small.named_parameters())
    assert r["params"] == digest([params[k] for k in sorted(params)])        # every weight, bit for bit
    # (the outputs: to bfloat16's rounding; transformers' own load computes RoPE's frequencies in float32)
    assert r["diff"] <= 5e-2 * float(logits(small, X).float().abs().max())
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"


def test_the_source_folders_tokenizer_and_generation_config_are_copied_and_nothing_else(reloaded):
    _, made = reloaded
    folder = made["gpt2-per-layer"][1]
    for name, text in SOURCE_FILES.items():
        assert (folder / name).read_text() == text
    assert json.loads((folder / "generation_config.json").read_text()) == GENERATION
    assert json.loads((folder / "config.json").read_text()).get("not") is None
    assert sorted(p.name for p in folder.iterdir()) == sorted(["config.json", "generation_config.json",
                                                               "model.safetensors", *SOURCE_FILES])


def test_tied_weights_are_stored_once_and_tied_again(reloaded):
    from safetensors import safe_open
    _, made = reloaded
    folder = made["gpt2-per-layer"][1]
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "transformer.wte.weight" in keys and "lm_head.weight" not in keys
    back = shrinknet.from_pretrained(folder)
    assert back.lm_head.weight is back.transformer.wte.weight
    assert back.shrinknet_resized                          # what save_model records of it


def test_from_pretrained_of_a_uniform_folder_and_a_dtype(reloaded):
    _, made = reloaded
    small, folder, X, _ = made["vit-uniform"]
    back = shrinknet.from_pretrained(folder, dtype="float64")
    assert type(back) is type(small) and back.dtype == torch.float64
    assert torch.allclose(logits(back, X.double()).float(), logits(small, X), rtol=1e-5, atol=1e-5)


# ---- refusals -----------------------------------------------------------------------------------------------
def _copy(folder, to):
    to.mkdir()
    for f in folder.iterdir():
        (to / f.name).write_bytes(f.read_bytes())
    return to


def test_a_config_naming_code_is_refused_by_name(reloaded, tmp_path):
    _, made = reloaded
    folder = _copy(made["llama-per-layer"][1], tmp_path / "coded")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ShrinkNetError, match="auto_map.*never runs code"):
        shrinknet.from_pretrained(folder)
    config.pop("auto_map")
    config["architectures"] = ["EvilForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ShrinkNetError, match="architectures=.*EvilForCausalLM.*transformers package"):
        shrinknet.from_pretrained(folder)


def test_pickled_weights_are_never_read(reloaded, tmp_path):
    _, made = reloaded
    folder = _copy(made["bert-per-layer"][1], tmp_path / "pickled")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(ShrinkNetError, match="no model.safetensors.*never reads pickled"):
        shrinknet.from_pretrained(folder)


def test_a_folder_of_someone_else_is_not_overwritten_unless_asked(reloaded, tmp_path):
    _, made = reloaded
    small, ours, _, _ = made["bert-per-layer"]
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    (theirs / "model-00002-of-00002.safetensors").write_text("stale")
    with pytest.raises(ShrinkNetError, match="not empty, and not written by shrinknet.save_pretrained.*overwrite=True"):
        shrinknet.save_pretrained(small, theirs)
    assert sorted(p.name for p in theirs.iterdir()) == ["model-00002-of-00002.safetensors", "notes.txt"]
    shrinknet.save_pretrained(small, theirs, overwrite=True)     # the model files replaced, the rest kept
    assert sorted(p.name for p in theirs.iterdir()) == ["config.json", "model.safetensors", "notes.txt"]
    again = _copy(ours, tmp_path / "again")                       # a folder save_pretrained wrote: written again
    shrinknet.save_pretrained(small, again)
    assert (again / "tokenizer.json").exists() and not list(again.glob(".*"))
    with pytest.raises(ShrinkNetError, match="expected a folder, got the existing file"):
        shrinknet.save_pretrained(small, theirs / "notes.txt")
    with pytest.raises(ShrinkNetError, match="source: expected the folder"):
        shrinknet.save_pretrained(small, tmp_path / "new", source=tmp_path / "nowhere")
    assert not (tmp_path / "new").exists()


def test_save_pretrained_refuses_a_model_that_is_not_of_transformers():
    with pytest.raises(ShrinkNetError, match="expected a Hugging Face transformers model.*save_model"):
        shrinknet.save_pretrained(torch.nn.Linear(2, 2), "unused")

    class Mine(transformers.BertForSequenceClassification):
        pass
    with pytest.raises(ShrinkNetError, match="expected a model class of the transformers package"):
        shrinknet.save_pretrained(Mine(MODELS["bert"]["make"]().config), "unused")


# ---- uniform pruning --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_uniform_refuses_heads_whose_size_follows_from_the_width(kind):
    spec = MODELS[kind]
    X, y = spec["data"]()
    with pytest.raises(ShrinkNetError, match=f"uniform=True: the heads of '{spec['heads'][0]}'.*FFN neurons only"):
        shrinknet.prune(spec["make"](), X, y, "l2-out", units=["heads"], stop=Stop(n_units=2), uniform=True)


LAYER0, LAYER1 = [0.3, 0.1, 0.9, 0.5], [0.2, 0.8, 0.05, 0.6]
# rounds led by the lowest unit of all, then the other layer's lowest: (1, 2) + (0, 1), (1, 0) + (0, 0), ...
ROUNDS = [(1, 2), (0, 1), (1, 0), (0, 0), (0, 3), (1, 3), (1, 1), (0, 2)]


def _fixed(calls):
    def crit(ctx):
        calls.append(1)
        return [torch.where(g == 0, torch.nan, torch.tensor(s, dtype=g.dtype)) for g, s in
                zip(ctx.model.gates, (LAYER0, LAYER1))]
    return crit


@pytest.mark.parametrize("schedule, scorings", [("iterative", 2), ("single", 1)])
def test_uniform_removes_in_rounds_of_one_unit_per_layer(schedule, scorings):
    X, T = random_data()
    calls = []
    r = shrinknet.prune(random_net([4, 4]), X, T, _fixed(calls), schedule, stop=Stop(n_units=5), uniform=True)
    assert r.removed == ROUNDS[:4]                  # 5 would split a round: the last whole one is kept
    assert len(calls) == scorings                   # iterative: scored again after each round, not each removal
    assert [int((g != 0).sum()) for g in r.gates] == [2, 2]
    free = shrinknet.prune(random_net([4, 4]), X, T, _fixed([]), schedule, stop=Stop(n_units=5))
    assert free.removed == [(1, 2), (0, 1), (1, 0), (0, 0), (0, 3)]
    every = shrinknet.prune(random_net([4, 4]), X, T, _fixed([]), schedule, uniform=True)
    assert every.removed == ROUNDS and every.stop_reason == "every hidden neuron removed"


def test_uniform_groups_of_other_sizes_are_rounds_of_their_own():
    X, T = random_data()
    scores = ([0.3, 0.1, 0.9, 0.5], [0.2, 0.05, 0.6])
    crit = (lambda ctx: [torch.where(g == 0, torch.nan, torch.tensor(s, dtype=g.dtype))
                         for g, s in zip(ctx.model.gates, scores)])
    r = shrinknet.prune(random_net([4, 3]), X, T, crit, stop=Stop(n_units=3), uniform=True)
    assert r.removed == [(1, 1), (0, 1), (1, 0)]


def test_a_uniform_round_that_breaks_the_error_limit_is_not_made_at_all():
    X, T = random_data()
    free = shrinknet.prune(random_net([4, 4]), X, T, _fixed([]), uniform=True)
    rel = [e / free.initial_error - 1 for e in free.errors]
    assert max(rel[2:4]) > max(rel[:2]) > 0        # this net: the second round costs more than the first
    limit = (max(rel[:2]) + max(rel[2:4])) / 2
    r = shrinknet.prune(random_net([4, 4]), X, T, _fixed([]), stop=Stop(max_error_increase=limit), uniform=True)
    assert r.removed == ROUNDS[:2] and "error would rise" in r.stop_reason
    assert [int((g != 0).sum()) for g in r.gates] == [3, 3]
    assert r.errors == free.errors[:2]


def test_a_uniform_run_resumes_from_its_checkpoint_by_whole_rounds(tmp_path):
    X, T = random_data()
    whole = shrinknet.prune(random_net([4, 4]), X, T, _fixed([]), stop=Stop(n_units=4), uniform=True)
    ck = tmp_path / "ck"
    shrinknet.prune(random_net([4, 4]), X, T, _fixed([]), stop=Stop(n_units=2), uniform=True, checkpoint=ck)
    r = shrinknet.prune(random_net([4, 4]), X, T, _fixed([]), stop=Stop(n_units=4), uniform=True, checkpoint=ck)
    assert r.resumed_steps == 2 and r.removed == whole.removed == ROUNDS[:4] and r.errors == whole.errors
    lines = (ck / "steps.jsonl").read_text().splitlines()
    steps = [line for line in lines if '"unit"' in line]
    (ck / "steps.jsonl").write_text("\n".join(steps[:3]) + "\n")       # killed inside the second round
    with pytest.raises(ShrinkNetError, match="last round of uniform removals is incomplete"):
        shrinknet.prune(random_net([4, 4]), X, T, _fixed([]), stop=Stop(n_units=4), uniform=True, checkpoint=ck)
    with pytest.raises(ShrinkNetError, match="uniform"):             # not a uniform run's folder
        shrinknet.prune(random_net([4, 4]), X, T, _fixed([]), stop=Stop(n_units=4), checkpoint=ck)


def test_uniform_is_a_bool_and_needs_equal_starting_counts():
    X, T = random_data()
    with pytest.raises(ShrinkNetError, match="uniform: expected True or False, got 'yes'"):
        shrinknet.prune(random_net([4, 4]), X, T, "l2-out", uniform="yes")
    net = random_net([4, 4])
    with torch.no_grad():
        net.gates[0][1] = 0.0
    with pytest.raises(ShrinkNetError, match="start with 3 and 4 units active; expected equal counts"):
        shrinknet.prune(net, X, T, "l2-out", uniform=True)


def test_the_command_line_prunes_uniformly(tmp_path):
    from shrinknet.cli import main
    model = tmp_path / "m.safetensors"
    assert main(["--quiet", "train", "--data", "diamond", "--hidden", "6", "6", "--epochs", "2", "--out", str(model)]) == 0
    for cmd in ("prune", "shrink"):
        out = tmp_path / cmd
        assert main(["--quiet", cmd, str(model), "--data", "diamond", "--criterion", "taylor1", "--n-neurons", "5",
                     "--uniform", "--out", str(out)]) == 0
        r = shrinknet.PruneResult.load_json(out / "result.json")
        assert r.n_removed == 4 and sorted(layer for layer, _ in r.removed) == [0, 0, 1, 1]


def test_uniform_sizes_transformers_refuses_in_a_config_give_a_per_layer_folder(tmp_path):
    """LlamaConfig wants hidden_size to be a multiple of the head count, even with its own head_dim: 3 heads
    of 4 in a width of 16 cannot be said by the config, so the folder records them per layer."""
    cfg = transformers.LlamaConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=4, intermediate_size=24, max_position_embeddings=16,
                                   use_cache=False)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    X, y = MODELS["llama"]["data"]()
    heads = MODELS["llama"]["heads"]
    r = shrinknet.prune(model, X, y, _scores({heads[0]: {2: 0.0}, heads[1]: {0: 0.5}}), units=["heads"],
                        stop=Stop(n_units=2), uniform=True, progress=False)
    small = shrinknet.shrink(model, r)
    assert [small.get_submodule(h).q_proj.out_features for h in heads] == [12, 12]
    folder = shrinknet.save_pretrained(small, tmp_path / "small")
    config = json.loads((folder / "config.json").read_text())
    assert config["shrinknet"]["shapes"][f"{heads[0]}.q_proj"] == {"in_features": 16, "out_features": 12}
    assert config["num_attention_heads"] == 4 and "shrinknet.from_pretrained" in config["intermediate_size"]
    back = shrinknet.from_pretrained(folder)
    assert torch.allclose(logits(back, X), logits(small, X), rtol=1e-5, atol=1e-5)
