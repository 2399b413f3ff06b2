"""Transformers: attention heads and FFN neurons as units, on tiny Hugging Face models built from
configs (BERT, GPT-2 with Conv1D, ViT, LLaMA with grouped KV heads) and on torch's own
nn.TransformerEncoder. Gates against hand-made hooks, default units, the exact oracle, every
criterion, physical removal, the Fisher criterion by hand, and saving.

Nothing is downloaded: every model is made from a config with seeded random weights, large enough
that every head and neuron changes the output.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

transformers = pytest.importorskip("transformers")

import shrinknet  # noqa: E402
from shrinknet import GatedModel, ShrinkNetError, Stop, shrink  # noqa: E402
from shrinknet.attention import MultiheadAttention  # noqa: E402

transformers.logging.set_verbosity_error()

E, D, FFN, VOCAB, CLASSES = 16, 4, 24, 40, 3          # width, head_dim, FFN width, vocabulary, classes
TOL = dict(rtol=1e-5, atol=1e-5)


pytestmark = pytest.mark.usefixtures("one_thread")


# ---- tiny models and their data ----------------------------------------------------------------
def _randomize(model, seed):
    """Seeded weights of std 0.3 (norm layers: 1 + 0.1 noise) in place of the 0.02 of HF's init, so
    that every head and neuron moves the output; eval mode (no dropout)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
            norm = name.rsplit(".", 2)[-2].lower() if "." in name else ""
            is_norm = ("norm" in norm or norm.startswith("ln")) and name.endswith("weight")
            p.copy_(1.0 + 0.1 * r if is_norm else 0.3 * r)
    return model.eval()


def _ids(n, length, seed, low=1, high=VOCAB):
    return torch.randint(low, high, (n, length), generator=torch.Generator().manual_seed(seed))


def bert(seed=0, heads=4, layers=2):
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=E, num_hidden_layers=layers, num_attention_heads=heads,
                                  intermediate_size=FFN, max_position_embeddings=16, num_labels=CLASSES,
                                  attn_implementation="eager")
    torch.manual_seed(seed)
    return _randomize(transformers.BertForSequenceClassification(cfg), seed)


def bert_data(n=12, length=8, seed=1):
    """A dict batch with padding (the last positions of some samples masked out), integer labels."""
    ids = _ids(n, length, seed)
    mask = torch.ones(n, length, dtype=torch.long)
    for i in range(0, n, 3):
        mask[i, length - 1 - i % 4:] = 0
    ids = ids.masked_fill(mask == 0, 0)
    y = torch.randint(0, CLASSES, (n,), generator=torch.Generator().manual_seed(seed + 1))
    return {"input_ids": ids, "attention_mask": mask}, y


def gpt2(seed=0):
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=E, n_layer=2, n_head=4, n_positions=16, n_inner=FFN,
                                  attn_implementation="eager", use_cache=False, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(seed)
    return _randomize(transformers.GPT2LMHeadModel(cfg), seed)


def lm_data(n=10, length=7, seed=2):
    """Token ids and next-token labels (N, positions), the last position and a few others -100."""
    ids = _ids(n, length, seed)
    y = torch.roll(ids, -1, 1)
    y[:, -1] = -100
    y[::3, 2] = -100
    return ids, y


def vit(seed=0):
    cfg = transformers.ViTConfig(image_size=8, patch_size=4, num_channels=1, hidden_size=E, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=FFN, num_labels=CLASSES,
                                 attn_implementation="eager")
    torch.manual_seed(seed)
    return _randomize(transformers.ViTForImageClassification(cfg), seed)


def vit_data(n=12, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, CLASSES, (n,), generator=g)


def llama(seed=0):
    """4 query heads sharing 2 key/value heads (GQA): a unit is one KV head with its 2 query heads."""
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=E, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=FFN, max_position_embeddings=16,
                                   attn_implementation="eager", use_cache=False)
    torch.manual_seed(seed)
    return _randomize(transformers.LlamaForCausalLM(cfg), seed)


def encoder(seed=0, length=6):
    """nn.TransformerEncoder (batch_first) as child "0" of an nn.Sequential with a classifier head."""
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(E, 4, FFN, dropout=0.0, batch_first=True)
    net = nn.Sequential(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), nn.Flatten(),
                        nn.Linear(length * E, CLASSES))
    return _randomize(net, seed)


def encoder_data(n=12, length=6, seed=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, length, E, generator=g), torch.randint(0, CLASSES, (n,), generator=g)


def logits(model, X):
    """What the model's output stands for, called as the package calls it (a GatedModel takes the
    batch whole)."""
    with torch.no_grad():
        if isinstance(model, GatedModel):
            return model(X)
        out = model(**X) if isinstance(X, dict) else model(*X) if isinstance(X, tuple) else model(X)
    return out if isinstance(out, torch.Tensor) else out.logits if hasattr(out, "logits") else out[0]


# Per model: how to make it, its data, its attention modules (with the output projection each
# head's context block feeds), its FFN units (producers, then the consumer), and G query heads per unit.
MODELS = {
    "bert": dict(
        make=bert, data=bert_data, G=1,
        heads=["bert.encoder.layer.0.attention", "bert.encoder.layer.1.attention"],
        out_proj="{}.output.dense",
        ffn=["bert.encoder.layer.0.intermediate.dense", "bert.encoder.layer.1.intermediate.dense"],
        ffn_rows=lambda n: [n], ffn_consumer=lambda n: n.replace("intermediate.dense", "output.dense")),
    "gpt2": dict(
        make=gpt2, data=lm_data, G=1,
        heads=["transformer.h.0.attn", "transformer.h.1.attn"], out_proj="{}.c_proj",
        ffn=["transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"],
        ffn_rows=lambda n: [n], ffn_consumer=lambda n: n.replace("c_fc", "c_proj")),
    "vit": dict(
        make=vit, data=vit_data, G=1,
        heads=["vit.layers.0.attention", "vit.layers.1.attention"], out_proj="{}.o_proj",
        ffn=["vit.layers.0.mlp.fc1", "vit.layers.1.mlp.fc1"],
        ffn_rows=lambda n: [n], ffn_consumer=lambda n: n.replace("fc1", "fc2")),
    "llama": dict(
        make=llama, data=lambda: lm_data(n=10, length=6), G=2,
        heads=["model.layers.0.self_attn", "model.layers.1.self_attn"], out_proj="{}.o_proj",
        ffn=["model.layers.0.mlp", "model.layers.1.mlp"],
        ffn_rows=lambda n: [f"{n}.gate_proj", f"{n}.up_proj"], ffn_consumer=lambda n: f"{n}.down_proj"),
    "encoder": dict(
        make=encoder, data=encoder_data, G=1,
        heads=["0.layers.0.self_attn", "0.layers.1.self_attn"], out_proj="{}.out_proj",
        ffn=["0.layers.0.linear1", "0.layers.1.linear1"],
        ffn_rows=lambda n: [n], ffn_consumer=lambda n: n.replace("linear1", "linear2")),
}
KV_UNITS = {"bert": 4, "gpt2": 4, "vit": 4, "llama": 2, "encoder": 4}


def _columns(k, block):
    return slice(k * block, (k + 1) * block)


# ---- 1. gates against hand-made hooks on the original model -------------------------------------
@pytest.mark.parametrize("kind", list(MODELS))
def test_gates_of_one_give_the_original_logits(kind):
    spec = MODELS[kind]
    model = spec["make"]()
    X, _ = spec["data"]()
    gm = GatedModel(model, units=[*spec["heads"], *spec["ffn"]], example_input=X)
    want = logits(model, X)
    if kind == "encoder":
        # the gated copy computes attention with shrinknet's MultiheadAttention, not torch's fused kernel
        assert torch.allclose(gm(X), want, **TOL)
    else:
        assert torch.equal(gm(X), want)
    assert torch.equal(logits(model, X), want)                      # the caller's model carries no hooks


@pytest.mark.parametrize("kind", list(MODELS))
def test_gate_zero_on_a_head_equals_zeroing_its_context_columns(kind):
    spec = MODELS[kind]
    model = spec["make"]()
    X, _ = spec["data"]()
    layer, unit = 1, 1
    name = spec["heads"][layer]
    gm = GatedModel(model, units=[name], example_input=X)
    gm.set_gate(0, unit, 0.0)
    ref = copy.deepcopy(model)
    cols = _columns(unit, spec["G"] * D)        # a KV head's query heads' context blocks, side by side
    proj = ref.get_submodule(spec["out_proj"].format(name))
    if kind == "encoder":
        # torch's MultiheadAttention applies out_proj functionally (no hook fires): zeroing the
        # columns that read the head's context is the same thing
        with torch.no_grad():
            proj.weight[:, cols] = 0.0
    else:
        def zero_head(module, args):
            x = args[0].clone()
            x[..., cols] = 0.0
            return (x, *args[1:])
        proj.register_forward_pre_hook(zero_head)
    want = logits(ref, X)
    assert not torch.allclose(want, logits(model, X), atol=1e-3)     # the head matters
    assert torch.allclose(gm(X), want, **TOL)


@pytest.mark.parametrize("kind", list(MODELS))
def test_gate_zero_on_an_ffn_neuron_equals_zeroing_its_row(kind):
    spec = MODELS[kind]
    model = spec["make"]()
    X, _ = spec["data"]()
    name, j = spec["ffn"][0], 5
    gm = GatedModel(model, units=[name], example_input=X)
    gm.set_gate(0, j, 0.0)
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for row in spec["ffn_rows"](name):          # LLaMA: row j of both gate_proj and up_proj
            m = ref.get_submodule(row)
            if type(m).__name__ == "Conv1D":        # GPT-2: weight is (in, out)
                m.weight[:, j] = 0.0
            else:
                m.weight[j] = 0.0
            if m.bias is not None:
                m.bias[j] = 0.0
    want = logits(ref, X)
    assert not torch.allclose(want, logits(model, X), atol=1e-3)
    assert torch.allclose(gm(X), want, **TOL)


# ---- 2. which units a transformer has -------------------------------------------------------------
@pytest.mark.parametrize("kind", [
    "bert", "gpt2", "vit", "llama", "encoder"])
def test_default_units_are_the_ffn_neurons_of_every_block(kind):
    spec = MODELS[kind]
    X, _ = spec["data"]()
    gm = GatedModel(spec["make"](), example_input=X)
    assert gm.unit_names == spec["ffn"]
    assert gm.hidden_sizes == [FFN, FFN]
    assert [u.kind for u in gm.units] == ["gated-ffn" if kind == "llama" else "ffn"] * 2
    assert [u.gate_at for u in gm.units] == [spec["ffn_consumer"](n) for n in spec["ffn"]]


def test_bert_pooler_is_not_a_blocks_ffn_but_can_be_named():
    """The pooler (Linear -> Tanh -> classifier) lies outside the blocks: not in the default, but a unit
    when named."""
    X, _ = bert_data()
    assert "bert.pooler.dense" not in GatedModel(bert(), example_input=X).unit_names
    gm = GatedModel(bert(), units=["bert.pooler.dense"], example_input=X)
    assert gm.unit_names == ["bert.pooler.dense"] and gm.units[0].kind == "ffn"


@pytest.mark.parametrize("kind", list(MODELS))
def test_heads_are_the_attention_modules_heads(kind):
    spec = MODELS[kind]
    X, _ = spec["data"]()
    model = spec["make"]()
    gm = GatedModel(model, units=["heads"], example_input=X)
    assert gm.unit_names == spec["heads"]
    assert gm.hidden_sizes == [KV_UNITS[kind]] * 2                   # LLaMA GQA: one unit per KV head
    assert [u.kind for u in gm.units] == ["heads", "heads"]
    assert [u.block for u in gm.units] == [spec["G"] * D] * 2
    assert [u.gate_at for u in gm.units] == [spec["out_proj"].format(n) for n in spec["heads"]]
    # an attention module's name selects its heads too, and mixes with FFN units, in forward order
    mixed = GatedModel(model, units=[spec["ffn"][1], spec["heads"][1], spec["heads"][0], spec["ffn"][0]],
                       example_input=X)
    assert mixed.unit_names == [spec["heads"][0], spec["ffn"][0], spec["heads"][1], spec["ffn"][1]]
    if kind == "encoder":
        attn = mixed.model.get_submodule(spec["heads"][0])
        assert isinstance(attn, MultiheadAttention) and attn.num_heads == 4
        assert isinstance(model.get_submodule(spec["heads"][0]), nn.MultiheadAttention)   # the caller's stays


# ---- 3. the exact oracle against its definition -------------------------------------------------
@pytest.mark.parametrize("kind", list(MODELS))
def test_oracle_equals_one_full_pass_per_unit(kind):
    """BERT: dict inputs with padding and (N,) labels; GPT-2 / LLaMA: (N, positions) labels with -100;
    ViT: images; the encoder: float sequences. As built, then with units removed and a gain of 0.5."""
    spec = MODELS[kind]
    X, y = spec["data"]()
    ctx = shrinknet.PruningContext.start(spec["make"](), X, y, units=["heads", *spec["ffn"]])
    assert ctx.loss == "cross-entropy"
    assert ctx.model.unit_names == [spec["heads"][0], spec["ffn"][0], spec["heads"][1], spec["ffn"][1]]
    E0 = float(ctx.error())
    for state in ("as built", "with units removed"):
        if state == "with units removed":
            ctx.set_gate(0, 0, 0.0)
            ctx.set_gate(1, 3, 0.0)
            ctx.set_gate(1, 4, 0.5)
        for l, k in enumerate(ctx.model.hidden_sizes):
            units = [u for u in range(k) if float(ctx.model.gates[l][u]) != 0]
            fast = shrinknet.oracle.errors_without(ctx, l, units)
            slow = shrinknet.oracle.literal_errors(ctx, l, units)
            assert fast.shape == slow.shape == (len(units),)
            assert torch.allclose(fast, slow, rtol=1e-5, atol=0), (state, l, (fast - slow).abs().max())
            assert float((slow - E0).abs().max()) > 1e-3 * E0              # units that matter
    # passes of 5 samples: the copies of a dict / token batch are cut and repeated consistently
    ctx.model.batch_rows = 5
    small = shrinknet.PruningContext(ctx.model, ctx.X, ctx.T, ctx.loss)
    for l, k in enumerate(ctx.model.hidden_sizes):
        units = [u for u in range(k) if float(ctx.model.gates[l][u]) != 0]
        assert torch.allclose(shrinknet.oracle.errors_without(small, l, units),
                              shrinknet.oracle.literal_errors(ctx, l, units), rtol=1e-5, atol=0)


def test_oracle_ignores_labels_of_minus_100():
    """-100 positions contribute nothing: their logits may be anything."""
    spec = MODELS["gpt2"]
    X, y = spec["data"]()
    model = spec["make"]()
    ctx = shrinknet.PruningContext.start(model, X, y, units=["heads"])
    z = logits(model, X)
    live = y != -100
    assert float(ctx.error()) == pytest.approx(float(F.cross_entropy(z[live], y[live], reduction="sum")), rel=1e-5)
    assert torch.all(ctx.T[~live] == 0) and torch.all(ctx.T[live].sum(-1) == 1)


# ---- 4. every criterion on heads and FFN neurons --------------------------------------------------
@pytest.mark.parametrize("name", shrinknet.available_criteria())
@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_every_criterion_scores_heads_and_ffn_neurons(kind, name):
    """BERT: dict inputs with padding; GPT-2: (N, positions) labels with -100. All take well under 5 s."""
    X, y = bert_data(n=8, length=6) if kind == "bert" else lm_data(n=6, length=6)
    units = ["heads", *MODELS[kind]["ffn"]]
    scores = shrinknet.score(MODELS[kind]["make"](), X, y, name, units=units)
    assert [s.shape for s in scores] == [(4,), (FFN,), (4,), (FFN,)]
    assert all(bool(torch.isfinite(torch.as_tensor(s)).all()) for s in scores)


def test_brute_force_scores_are_the_change_in_error_of_each_removal():
    X, y = bert_data(n=8, length=6)
    model = bert()
    scores = shrinknet.score(model, X, y, "brute-force", units=["heads"])
    ctx = shrinknet.PruningContext.start(model, X, y, units=["heads"])
    E0 = shrinknet.oracle.literal_error(ctx)
    for l in range(2):
        want = shrinknet.oracle.literal_errors(ctx, l, range(4)) - E0
        assert torch.allclose(torch.as_tensor(scores[l]), want, rtol=1e-4, atol=1e-5)


def _manual_fisher(model, X, y, consumers, blocks, gates):
    """0.5 g^2 sum_n (dL_n/dg)^2 with the gates put in by hand: pre-hooks on the consumers that
    multiply each unit's block of input columns by its gate, and one backward pass per sample."""
    ref = copy.deepcopy(model)
    G = [g.clone().requires_grad_() for g in gates]
    for name, block, g in zip(consumers, blocks, G):
        ref.get_submodule(name).register_forward_pre_hook(
            lambda m, a, g=g, b=block: (a[0] * g.repeat_interleave(b), *a[1:]))
    F2 = [torch.zeros_like(g, dtype=torch.float64) for g in gates]
    for n in range(y.shape[0]):
        Xn = {k: v[n:n + 1] for k, v in X.items()}
        loss = F.cross_entropy(ref(**Xn).logits, y[n:n + 1], reduction="sum")
        for f, d in zip(F2, torch.autograd.grad(loss, G)):
            f += d.double() ** 2
    return [0.5 * g.double() ** 2 * f for g, f in zip(gates, F2)]


def test_fisher_is_half_the_gate_squared_times_the_summed_squared_per_sample_gradients():
    if "fisher" not in shrinknet.available_criteria():
        pytest.skip("the fisher criterion is not registered yet")
    model = bert(heads=2)
    X, y = bert_data(n=5, length=5)
    spec = MODELS["bert"]
    units = [spec["heads"][0], spec["ffn"][0], spec["heads"][1], spec["ffn"][1]]
    consumers = [spec["out_proj"].format(units[0]), spec["ffn_consumer"](units[1]),
                 spec["out_proj"].format(units[2]), spec["ffn_consumer"](units[3])]
    blocks = (E // 2, 1, E // 2, 1)                                   # 2 heads of width 8
    # gates of 1, through score()
    got = shrinknet.score(model, X, y, "fisher", units=units)
    want = _manual_fisher(model, X, y, consumers, blocks, [torch.ones(k) for k in (2, FFN, 2, FFN)])
    for s, w in zip(got, want):
        assert torch.allclose(torch.as_tensor(s, dtype=torch.float64), w, rtol=1e-4, atol=1e-10)
    # gates other than 1 (the g^2 factor) and a removed unit (NaN), in a pruning context
    ctx = shrinknet.PruningContext.start(model, X, y, units=units)
    ctx.set_gate(0, 1, 0.5)
    ctx.set_gate(1, 3, 2.0)
    ctx.set_gate(3, 7, 0.0)
    got = shrinknet.criteria.get_criterion("fisher").scores(ctx)
    gates = [g.detach().clone() for g in ctx.model.gates]
    want = _manual_fisher(model, X, y, consumers, blocks, gates)
    for l, (s, w) in enumerate(zip(got, want)):
        s = torch.as_tensor(s, dtype=torch.float64)
        live = gates[l] != 0
        assert torch.isnan(s[~live]).all()
        assert torch.allclose(s[live], w[live], rtol=1e-4, atol=1e-10), (l, s, w)
    assert float(want[1][3]) > 0 and float(want[0][1]) > 0


def test_first_and_second_order_estimates_match_finite_differences_of_the_error():
    """taylor1 = psi'(0) and taylor2-exact = psi'(0) + psi''(0) / 2 for psi(t) = E with the unit's
    gate at 1 - t, on GPT-2 heads and FFN neurons with (N, positions) labels (float64)."""
    model = gpt2().double()
    X, y = lm_data()
    units = ["heads", *MODELS["gpt2"]["ffn"]]
    t1 = shrinknet.score(model, X, y, "taylor1", units=units)
    t2 = shrinknet.score(model, X, y, "taylor2-exact", units=units)
    ctx = shrinknet.PruningContext.start(model, X, y, units=units)
    E0, h = shrinknet.oracle.literal_error(ctx), 1e-3
    for l in range(4):
        k = ctx.model.hidden_sizes[l]
        lo = shrinknet.oracle.literal_errors(ctx, l, range(k), torch.full((k,), 1 - h, dtype=torch.float64))
        hi = shrinknet.oracle.literal_errors(ctx, l, range(k), torch.full((k,), 1 + h, dtype=torch.float64))
        d1, d2 = (lo - hi) / (2 * h), (lo - 2 * E0 + hi) / h ** 2
        assert torch.allclose(torch.as_tensor(t1[l]), d1, rtol=1e-4, atol=1e-6)
        assert torch.allclose(torch.as_tensor(t2[l]), d1 + d2 / 2, rtol=1e-4, atol=1e-5)


def test_compare_runs_on_heads_and_ffn_neurons():
    X, y = bert_data(n=8, length=6)
    res = shrinknet.compare(bert(), X, y, criteria=["taylor1", "l2-out"], units=["heads", *MODELS["bert"]["ffn"]],
                            steps=2)
    assert [(r["step"], r["criterion"]) for r in res.rows] == [(0, "taylor1"), (0, "l2-out"), (1, "taylor1"),
                                                                (1, "l2-out")]
    assert all(r["n_candidates"] == 56 - r["step"] for r in res.rows)
    assert all(r["regret"] >= -1e-6 for r in res.rows)
    assert set(res.paths) == {"brute-force", "taylor1", "l2-out"} and res.oracle.n_removed == 2


# ---- 5. physical removal ---------------------------------------------------------------------------
def _plan(result_units):
    """Per group name, the units to remove: head 1 of the first attention module, every head of the
    second (which keeps one silent head), five FFN neurons of the first block and two of the second."""
    heads0, ffn0, heads1, ffn1 = result_units
    return {heads0: [1], heads1: "all", ffn0: [0, 3, 5, 7, 20], ffn1: [2, 11]}


def _scripted(plan):
    """A criterion that scores 0 the units of `plan` and 1 the others (lowest first: the plan)."""
    def crit(ctx):
        out = []
        for name, g in zip(ctx.model.unit_names, ctx.model.gates):
            s = torch.ones_like(g)
            drop = plan[name]
            s[list(range(g.numel())) if drop == "all" else drop] = 0.0
            out.append(s)
        return out
    return crit


def _head_counts(kind, small, name):
    """The head counts the shrunk attention module keeps, each read one way (KV heads for LLaMA)."""
    a = small.get_submodule(name)
    if kind == "bert":
        s = a.self
        return [s.num_attention_heads, s.all_head_size // D, s.query.out_features // D, s.key.out_features // D,
                s.value.out_features // D, a.output.dense.in_features // D]
    if kind == "gpt2":
        assert tuple(a.c_attn.weight.shape) == (E, a.c_attn.nf) and tuple(a.c_proj.weight.shape) == (a.c_proj.nx, E)
        return [a.num_heads, a.split_size // D, a.c_attn.nf // (3 * D), a.c_proj.nx // D]
    if kind == "vit":
        return [a.num_attention_heads, a.q_proj.out_features // D, a.k_proj.out_features // D,
                a.v_proj.out_features // D, a.o_proj.in_features // D]
    if kind == "llama":
        assert a.num_key_value_groups == 2
        return [a.k_proj.out_features // D, a.v_proj.out_features // D, a.q_proj.out_features // (2 * D),
                a.o_proj.in_features // (2 * D)]
    assert isinstance(a, MultiheadAttention) and a.head_dim == D
    return [a.num_heads, a.q_proj.out_features // D, a.k_proj.out_features // D, a.out_proj.in_features // D]


def _ffn_sizes(kind, small, name):
    if kind == "gpt2":
        fc, proj = small.get_submodule(name), small.get_submodule(name.replace("c_fc", "c_proj"))
        assert tuple(fc.weight.shape) == (E, fc.nf) and tuple(proj.weight.shape) == (proj.nx, E)
        return [fc.nf, proj.nx, fc.bias.numel()]
    if kind == "llama":
        mlp = small.get_submodule(name)
        return [mlp.gate_proj.out_features, mlp.up_proj.out_features, mlp.down_proj.in_features,
                mlp.down_proj.weight.shape[1]]
    spec = MODELS[kind]
    fc, proj = small.get_submodule(name), small.get_submodule(spec["ffn_consumer"](name))
    return [fc.out_features, fc.weight.shape[0], proj.in_features, proj.weight.shape[1]]


@pytest.mark.parametrize("kind", list(MODELS))
def test_shrink_after_pruning_heads_and_ffn_neurons(kind):
    spec = MODELS[kind]
    model = spec["make"]()
    X, y = spec["data"]()
    names = [spec["heads"][0], spec["ffn"][0], spec["heads"][1], spec["ffn"][1]]
    plan = _plan(names)
    K = KV_UNITS[kind]
    n_drop = 1 + K + 5 + 2
    result = shrinknet.prune(model, X, y, _scripted(plan), units=["heads", *spec["ffn"]], stop=Stop(n_neurons=n_drop))
    keep = result.keep_by_name()
    rest = (lambda name: [u for u in range(FFN) if u not in plan[name]])
    assert keep == {names[0]: [u for u in range(K) if u != 1], names[1]: rest(names[1]), names[2]: [],
                    names[3]: rest(names[3])}
    small = shrink(model, result)
    assert type(small) is type(model)
    assert _head_counts(kind, small, names[0]) == [K - 1] * len(_head_counts(kind, small, names[0]))
    # every head of the second module removed: one silent head stays, so the attention code still runs
    assert set(_head_counts(kind, small, names[2])) == {1}
    assert torch.all(small.get_submodule(spec["out_proj"].format(names[2])).weight == 0)
    assert set(_ffn_sizes(kind, small, names[1])) == {FFN - 5}
    assert set(_ffn_sizes(kind, small, names[3])) == {FFN - 2}
    want = logits(result.model, X)
    assert torch.allclose(logits(small, X), want, **TOL)
    assert not torch.allclose(want, logits(model, X), atol=1e-3)
    # the caller's model is untouched
    assert _ffn_sizes(kind, model, names[1])[0] == FFN
    if kind == "encoder":
        assert isinstance(model.get_submodule(names[0]), nn.MultiheadAttention)


def test_a_gpt2_ffn_emptied_entirely_keeps_one_silent_neuron():
    # Conv1D cannot run at width 0: one neuron stays, its c_proj row zero (the same as removing them all)
    spec = MODELS["gpt2"]
    model = spec["make"]()
    X, _ = spec["data"]()
    name = spec["ffn"][0]
    small = shrink(model, {name: []}, X)
    fc, proj = small.get_submodule(name), small.get_submodule(spec["ffn_consumer"](name))
    assert (fc.nf, proj.nx) == (1, 1) and torch.all(proj.weight == 0)
    gm = GatedModel(model, units=[name], example_input=X)
    gm.set_gates([torch.zeros(FFN)])
    torch.testing.assert_close(logits(small, X), logits(gm, X), **TOL)


def test_shrink_after_a_brute_force_prune_has_the_error_the_prune_measured():
    X, y = bert_data()
    model = bert()
    result = shrinknet.prune(model, X, y, "brute-force", units=["heads", *MODELS["bert"]["ffn"]],
                             stop=Stop(n_neurons=6))
    small = shrink(model, result)
    assert type(small) is type(model)
    ev = shrinknet.evaluate(small, X, y)
    assert ev["error"] == pytest.approx(result.errors[-1], rel=1e-5)
    assert ev["accuracy"] == pytest.approx(result.accuracies[-1])
    assert shrinknet.evaluate(result.model, X, y)["error"] == pytest.approx(result.errors[-1], rel=1e-5)
    # brute force predicts each removal's change in error exactly
    assert result.actual_changes == pytest.approx(result.predicted, rel=1e-4, abs=1e-5)
    kept = result.keep_by_name()
    for name in MODELS["bert"]["heads"]:
        assert small.get_submodule(name).self.num_attention_heads == max(1, len(kept[name]))


# ---- 6. inputs ------------------------------------------------------------------------------------
class TwoArgs(nn.Module):
    """A model taking (input_ids, attention_mask) positionally and returning a tuple."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, ids, mask):
        return (self.inner(input_ids=ids, attention_mask=mask).logits, ids.shape)


def test_integer_token_ids_are_never_cast():
    X, y = bert_data()
    gm = GatedModel(bert(), units=["heads"], example_input=X)
    assert gm.example["input_ids"].dtype == torch.int64 and gm.example["attention_mask"].dtype == torch.int64
    ids32 = {k: v.to(torch.int32) for k, v in X.items()}
    ctx = shrinknet.PruningContext.start(bert(), ids32, y, units=["heads"], dtype=torch.float64)
    assert ctx.X["input_ids"].dtype == torch.int32 and ctx.model.gates[0].dtype == torch.float64
    assert math.isfinite(float(ctx.error()))
    ids, yl = lm_data()
    scores = shrinknet.score(gpt2(), ids, yl, "taylor1", units=["heads"])
    assert [s.shape for s in scores] == [(4,), (4,)]


def test_a_tuple_input_is_passed_positionally():
    X, y = bert_data()
    model = bert()
    as_tuple = shrinknet.score(TwoArgs(model), (X["input_ids"], X["attention_mask"]), y, "brute-force",
                               units=["inner.bert.encoder.layer.0.attention",
                                      "inner.bert.encoder.layer.0.intermediate.dense"])
    as_dict = shrinknet.score(model, X, y, "brute-force",
                              units=["bert.encoder.layer.0.attention", "bert.encoder.layer.0.intermediate.dense"])
    for a, b in zip(as_tuple, as_dict):
        assert torch.allclose(torch.as_tensor(a), torch.as_tensor(b), rtol=1e-5, atol=1e-6)


def test_dict_inputs_with_different_batch_sizes_name_the_key():
    X, y = bert_data()
    X["attention_mask"] = X["attention_mask"][:5]
    with pytest.raises(ShrinkNetError, match=r"X\['attention_mask'\]: expected 12 samples on dim 0"):
        shrinknet.score(bert(), X, y, "taylor1", units=["heads"])


def test_heads_in_a_model_without_attention():
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    with pytest.raises(ShrinkNetError, match="'heads' selects attention heads, but the model has no supported "
                                             "attention module"):
        GatedModel(net, units=["heads"], example_input=torch.zeros(1, 4))


@pytest.mark.parametrize("kind, name, owner", [
    ("bert", "bert.encoder.layer.0.attention.self.query", "attention module 'bert.encoder.layer.0.attention'"),
    ("bert", "bert.encoder.layer.1.attention.output.dense", "attention module 'bert.encoder.layer.1.attention'"),
    ("gpt2", "transformer.h.0.attn.c_attn", "attention module 'transformer.h.0.attn'"),
    ("llama", "model.layers.0.self_attn.k_proj", "attention module 'model.layers.0.self_attn'"),
    ("llama", "model.layers.1.mlp.up_proj", "gated MLP 'model.layers.1.mlp'"),
    ("vit", "vit.layers.0.attention.v_proj", "attention module 'vit.layers.0.attention'"),
    ("encoder", "0.layers.1.self_attn.q_proj", "attention module '0.layers.1.self_attn'"),
])
def test_naming_a_projection_names_its_attention_module(kind, name, owner):
    spec = MODELS[kind]
    X, _ = spec["data"]()
    with pytest.raises(ShrinkNetError, match=rf"module '{name}' is a projection of {owner}"):
        GatedModel(spec["make"](), units=[name], example_input=X)


class MyAttention(nn.Module):
    """Multi-head self-attention with one fused q/k/v Linear: not a supported layout."""

    def __init__(self, width=8, heads=2):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)

    def forward(self, x):
        n, length, w = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        ctx = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(w // self.heads), -1) @ v
        return self.proj(ctx.transpose(1, 2).reshape(n, length, w))


class NetWithFusedQKV(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn, self.fc1, self.fc2 = MyAttention(), nn.Linear(8, 12), nn.Linear(12, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x + self.attn(x)))).mean(1)


class TwoKindsOfAttentionNet(nn.Module):
    """A supported attention (torch's, in an encoder layer) followed by an unsupported one."""

    def __init__(self):
        super().__init__()
        self.enc = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True)
        self.attn, self.fc = MyAttention(), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.attn(self.enc(x))).mean(1)


@pytest.mark.parametrize("net, units, message", [
    (NetWithFusedQKV, ["heads"], r"'heads' selects attention heads, but the model has no supported attention module "
                                 r"\(attention modules of kinds it does not support: attn\)"),
    (NetWithFusedQKV, ["attn"], r"attention module 'attn' \(MyAttention\) is not a supported attention implementation"),
    (TwoKindsOfAttentionNet, ["heads"], r"attention module 'attn' \(MyAttention\) is not a supported attention "
                                r"implementation; name the supported ones instead \(e.g. 'enc.self_attn'\)"),
    (TwoKindsOfAttentionNet, ["attn"],
     r"attention module 'attn' \(MyAttention\) is not a supported attention implementation"),
])
def test_an_unsupported_attention_module_is_named(net, units, message):
    torch.manual_seed(0)
    with pytest.raises(ShrinkNetError, match=message):
        GatedModel(net(), units=units, example_input=torch.randn(2, 5, 8))
    if net is TwoKindsOfAttentionNet:          # the supported one alone is fine
        assert GatedModel(net(), units=["enc.self_attn"], example_input=torch.randn(2, 5, 8)).hidden_sizes == [2]


def test_test_set_inputs_of_another_form_are_refused():
    X, y = bert_data()
    model = bert()
    units = ["bert.encoder.layer.0.attention"]
    for other in [(X["input_ids"], X["attention_mask"]), {"input_ids": X["input_ids"]}, X["input_ids"]]:
        with pytest.raises(ShrinkNetError, match=r"test X: expected inputs of the form the model was traced on "
                                                 r"\(\{'input_ids': \(1, 8\) torch.int64"):
            shrinknet.prune(model, X, y, "l1-out", units=units, stop=1, test=(other, y))
    short = {k: v[:, :5] for k, v in X.items()}
    with pytest.raises(ShrinkNetError, match=r"test X: expected samples shaped as \{'input_ids': \(8,\)"):
        shrinknet.prune(model, X, y, "l1-out", units=units, stop=1, test=(short, y))


# ---- 7. evaluate over labelled positions -------------------------------------------------------------
class Table(nn.Module):
    """Logits looked up per token: token t predicts class t with margin 2."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(3, 3)
        with torch.no_grad():
            self.emb.weight.copy_(2.0 * torch.eye(3))

    def forward(self, ids):
        return self.emb(ids)


def test_evaluate_counts_labelled_positions_only():
    ids = torch.tensor([[0, 1, 2], [2, 2, 0]])
    labels = torch.tensor([[0, 0, -100], [2, -100, 1]])
    ev = shrinknet.evaluate(Table(), ids, labels)
    # labelled: (0,0) right, (0,1) wrong, (1,0) right, (1,2) wrong; the -100 ones count for nothing
    assert ev["accuracy"] == pytest.approx(0.5) and ev["n"] == 2
    lse = math.log(math.exp(2) + 2)
    assert ev["error"] == pytest.approx(2 * (lse - 2) + 2 * lse, rel=1e-6)


def test_evaluate_a_language_model_with_ignored_positions():
    model = gpt2()
    ids, y = lm_data()
    ev = shrinknet.evaluate(model, ids, y)
    z = logits(model, ids)
    live = y != -100
    assert ev["accuracy"] == pytest.approx(float((z.argmax(-1)[live] == y[live]).double().mean()))
    assert ev["error"] == pytest.approx(float(F.cross_entropy(z[live], y[live], reduction="sum")), rel=1e-5)


# ---- saving -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["gpt2", "bert"])
def test_a_shrunk_transformer_saves_and_loads_into_a_fresh_template(kind, tmp_path):
    spec = MODELS[kind]
    model = spec["make"]()
    X, y = spec["data"]()
    names = [spec["heads"][0], spec["ffn"][0], spec["heads"][1], spec["ffn"][1]]
    result = shrinknet.prune(model, X, y, _scripted(_plan(names)), units=["heads", *spec["ffn"]],
                             stop=Stop(n_neurons=1 + 4 + 5 + 2))
    small = shrink(model, result)
    first = {k: v[:1] for k, v in X.items()} if isinstance(X, dict) else X[:1]
    path = shrinknet.save_model(small, tmp_path / "small.safetensors", example_input=first)
    template = type(model)(model.config)
    back = shrinknet.load_model(path, template=template)
    assert type(back) is type(model)
    assert _head_counts(kind, back, names[0]) == _head_counts(kind, small, names[0])
    assert _head_counts(kind, back, names[2]) == _head_counts(kind, small, names[2])
    assert _ffn_sizes(kind, back, names[1]) == _ffn_sizes(kind, small, names[1])
    assert torch.equal(logits(back.eval(), X), logits(small, X))
    assert _ffn_sizes(kind, template, names[1])[0] == FFN                      # the template is untouched


def test_a_shrunk_gpt2_keeps_its_output_layer_tied_to_the_embedding_through_a_file(tmp_path):
    """The embedding is stored once and tied again, so a step of training moves both as in the model saved
    (files once held it twice and loaded it untied: 2,048 more parameters here, and training diverged)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    model = gpt2()
    ids, y = lm_data()
    small = shrink(model, shrinknet.prune(model, ids, y, "l1-out", units=["heads", "ffn"], stop=Stop(n_neurons=5)))
    path = shrinknet.save_model(small, tmp_path / "small.safetensors", example_input=ids[:1])
    with safe_open(str(path), framework="pt") as f:
        assert "lm_head.weight" not in f.keys() and "transformer.wte.weight" in f.keys()
        meta = dict(f.metadata())
    tensors = load_file(str(path))
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"].clone()     # a file written before: twice
    save_file(tensors, str(tmp_path / "old.safetensors"),
              metadata={k: v for k, v in meta.items() if k not in ("tied", "resized", "config", "sha256")})
    for file in (path, tmp_path / "old.safetensors"):
        back = shrinknet.load_model(file, template=transformers.GPT2LMHeadModel(model.config))
        assert back.lm_head.weight is back.transformer.wte.weight
        assert sum(p.numel() for p in back.parameters()) == sum(p.numel() for p in small.parameters())
        assert torch.equal(logits(back, ids), logits(small, ids))
        trained = [copy.deepcopy(small), back]
        for m in trained:                      # one step of SGD on the same loss (eval mode: no dropout)
            out = m(ids).logits
            F.cross_entropy(out.reshape(-1, VOCAB), y.reshape(-1), ignore_index=-100).backward()
            with torch.no_grad():
                for p in m.parameters():
                    p -= 0.1 * p.grad
        assert torch.allclose(trained[1].lm_head.weight, trained[0].lm_head.weight, rtol=0, atol=1e-6)
        assert not torch.equal(trained[1].lm_head.weight, small.lm_head.weight)


def test_a_template_whose_config_has_other_sizes_is_refused(tmp_path):
    """A 3-label BERT's file into a 2-label template: refused naming num_labels (it once loaded with a
    3-output classifier beside config.num_labels 2); without the config recorded, the classifier's shape."""
    from safetensors.torch import load_file, save_file
    model = bert()
    X, y = bert_data()
    small = shrink(model, shrinknet.prune(model, X, y, "l1-out", units=["heads"], stop=2))
    path = shrinknet.save_model(small, tmp_path / "small.safetensors")
    other = copy.deepcopy(model.config)
    other.num_labels = 2
    with pytest.raises(ShrinkNetError, match="template: its config has num_labels=2, but .* was saved from a model "
                                             "with num_labels=3; expected a template made from the saved model's"):
        shrinknet.load_model(path, template=transformers.BertForSequenceClassification(other))
    meta = {k: v for k, v in shrinknet.saving.read_meta(path).items() if k != "config"}
    save_file(load_file(str(path)), str(tmp_path / "no-config.safetensors"), metadata=meta)
    with pytest.raises(ShrinkNetError, match="template: its layer 'classifier' has out_features=2, but .* with "
                                             "out_features=3 there"):
        shrinknet.load_model(tmp_path / "no-config.safetensors", template=transformers.BertForSequenceClassification(other))
    wider = copy.deepcopy(model.config)
    wider.vocab_size = VOCAB + 10
    with pytest.raises(ShrinkNetError, match=f"template: its config has vocab_size={VOCAB + 10}"):
        shrinknet.load_model(path, template=transformers.BertForSequenceClassification(wider))
    back = shrinknet.load_model(path, template=transformers.BertForSequenceClassification(model.config))
    assert torch.equal(logits(back, X), logits(small, X))


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_a_bfloat16_transformer_is_pruned_in_float32_and_shrunk_in_bfloat16(kind):
    """How most transformers are stored: every decision is that of the model's exact float32 copy; the
    smaller model is in bfloat16, equal to the float32 copy's smaller model rounded back (exactly)."""
    spec = MODELS[kind]
    model = spec["make"]().bfloat16()
    X, y = spec["data"]()
    f32 = copy.deepcopy(model).float()
    units, stop = ["heads", *spec["ffn"]], Stop(n_neurons=4)
    res = shrinknet.prune(model, X, y, "taylor2", units=units, stop=stop)
    ref = shrinknet.prune(f32, X, y, "taylor2", units=units, stop=stop)
    assert res.removed == ref.removed and res.errors == ref.errors
    small, want = shrink(model, res), shrink(f32, ref)
    assert {p.dtype for p in small.parameters()} == {torch.bfloat16}
    assert all(torch.equal(a.float(), b) for a, b in zip(small.state_dict().values(), want.state_dict().values()))


# ---- regressions: copies of a gated transformer must not carry the gate pre-hooks ---------------------
# (GatedModel.bare_copy() once stripped _forward_hooks only, so a clone, a pickle, shrink(gated_model)
# and a prune result's .model were still gated by the original's pre-hooks on heads / FFN consumers)


def test_a_clone_of_a_gated_transformer_computes_what_it_does():
    X, _ = bert_data()
    gm = GatedModel(bert(), units=["bert.encoder.layer.0.attention"], example_input=X)
    gm.set_gate(0, 1, 0.5)
    assert not gm.bare_copy().get_submodule("bert.encoder.layer.0.attention.output.dense")._forward_pre_hooks
    assert torch.allclose(gm.clone()(X), gm(X), **TOL)


def test_a_gated_transformer_pickles():
    import pickle
    X, _ = bert_data()
    gm = GatedModel(bert(), units=["bert.encoder.layer.0.attention"], example_input=X)
    gm.set_gate(0, 1, 0.0)
    back = pickle.loads(pickle.dumps(gm))
    assert torch.allclose(back(X), gm(X), **TOL)


def test_shrink_takes_a_gated_transformer():
    X, _ = bert_data()
    gm = GatedModel(bert(), units=["bert.encoder.layer.0.attention"], example_input=X)
    gm.set_gate(0, 1, 0.0)
    small = shrink(gm)
    assert small.bert.encoder.layer[0].attention.self.num_attention_heads == 3
    assert torch.allclose(logits(small, X), gm(X), **TOL)


def test_a_prune_results_model_can_bring_its_units_back():
    X, y = bert_data()
    model = bert()
    result = shrinknet.prune(model, X, y, "l1-out", units=["heads"], stop=2)
    result.model.reset_gates()
    assert torch.allclose(result.model(X), logits(model, X), **TOL)


# ---- regressions -----------------------------------------------------------------------------------
class ClassifierWithAttention(nn.Module):
    """A wrapper whose class name ends in "Attention", around a BERT with supported heads."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits


def test_heads_in_a_model_whose_class_name_ends_in_attention():
    X, _ = bert_data()
    gm = GatedModel(ClassifierWithAttention(bert()), units=["heads"], example_input=X)
    assert gm.unit_names == ["inner." + n for n in MODELS["bert"]["heads"]]


# ---- compensation on transformer units --------------------------------------------------------------
@pytest.mark.parametrize("mode", ["mean", "lstsq"])
@pytest.mark.parametrize("kind", ["bert", "gpt2", "vit", "encoder"])
def test_compensated_oracle_equals_fold_and_evaluate(kind, mode):
    """The oracle scores a compensated removal through the gates alone (the unit's columns moved by their
    residual); the definition folds the compensation into the consumer and runs the model. Also after
    one compensated removal, and the Taylor estimate's first derivative against finite differences."""
    spec = MODELS[kind]
    X, y = spec["data"]()
    ctx = shrinknet.PruningContext.start(spec["make"](), X, y, units=["heads", *spec["ffn"]], compensation=mode,
                                         dtype=torch.float64)
    for step in range(2):
        for l, k in enumerate(ctx.model.hidden_sizes):
            units = [u for u in range(k) if float(ctx.model.gates[l][u]) != 0]
            fast = shrinknet.oracle.errors_without(ctx, l, units)
            slow = shrinknet.oracle.literal_errors(ctx, l, units)
            # (both add a relative ridge of 1e-9 to the Gram matrices they invert, of different sizes)
            assert torch.allclose(fast, slow, rtol=1e-7, atol=0), (step, l, (fast - slow).abs().max())
        ctx.remove(1, 2 + step)
    # psi(t): E with unit 0 of group 0 moved by t times its residual; psi'(0) from the oracle's derivatives
    d1, _ = shrinknet.oracle.removal_derivatives(ctx, 0, [0])
    # Hugging Face's eager attention takes its softmax in float32 (E good to ~1e-7 relative): a wider step;
    # the encoder is float64 throughout but has ReLU kinks within 1e-3 of the gate: a narrow one
    h = 1e-5 if kind == "encoder" else 1e-3
    g = ctx.model.gates[0].clone()
    with ctx.evaluator.compensated(ctx):
        E = []
        for t in (-h, h):
            row = g.clone()
            row[0] = 1 - t
            E.append(float(shrinknet.oracle.literal_error(ctx, [row, *[None] * (ctx.model.n_hidden_layers - 1)])))
    assert abs(float(d1[0]) - (E[1] - E[0]) / (2 * h)) < 1e-4 * max(1.0, abs(float(d1[0])))


@pytest.mark.parametrize("mode", ["mean", "lstsq"])
def test_mean_and_lstsq_change_the_consumer_as_documented(mode):
    """mean: the consumer's bias gains W_B mean(x_B) and its columns B go to 0; lstsq: the other columns
    and the bias take up the least-squares fit of x_B; either way the model then computes what the
    compensated gate does."""
    X, y = bert_data()
    ctx = shrinknet.PruningContext.start(bert(), X, y, units=[MODELS["bert"]["ffn"][0]], compensation=mode,
                                         dtype=torch.float64)
    cons = ctx.model.model.get_submodule(ctx.model.units[0].gate_at)
    W0, b0 = cons.weight.detach().clone(), cons.bias.detach().clone()
    x = torch.cat([a.reshape(-1, a.shape[-2] * a.shape[-1]) for _, a in ctx.unit_outputs()])
    with ctx.evaluator.compensated(ctx):
        row = torch.ones_like(ctx.model.gates[0])
        row[5] = 0.0
        want = shrinknet.oracle.literal_error(ctx, [row])
    undo = ctx.remove(0, 5)
    assert torch.all(cons.weight[:, 5] == 0)
    if mode == "mean":
        assert torch.allclose(cons.bias, b0 + W0[:, 5] * x[:, 5].mean(), rtol=1e-12, atol=1e-12)
        assert torch.equal(cons.weight[:, :5], W0[:, :5])
    else:
        others = [c for c in range(x.shape[1]) if c != 5]
        A = torch.cat([x[:, others], torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)
        coef = torch.linalg.lstsq(A, x[:, 5:6]).solution[:, 0]
        assert torch.allclose(cons.weight[:, others], W0[:, others] + torch.outer(W0[:, 5], coef[:-1]), atol=1e-6)
        assert torch.allclose(cons.bias, b0 + W0[:, 5] * coef[-1], atol=1e-6)
    assert torch.allclose(ctx.error(), want, rtol=1e-10)
    undo()
    assert torch.equal(cons.weight, W0) and torch.equal(cons.bias, b0) and float(ctx.model.gates[0][5]) == 1.0


def test_compensated_prune_shrinks_to_its_own_model():
    X, y = bert_data()
    result = shrinknet.prune(bert(), X, y, units=["heads", "ffn"], criterion="taylor2", compensation="lstsq",
                             stop=shrinknet.Stop(n_neurons=12))
    with pytest.raises(ShrinkNetError, match="expected the result's own model"):
        shrinknet.shrink(bert(), result)
    small = shrinknet.shrink(result.model, result)
    assert torch.allclose(logits(small, X), result.model(X), **TOL)
    assert abs(shrinknet.evaluate(small, X, y)["error"] - result.errors[-1]) < 1e-4 * result.errors[-1]


def test_compensation_is_refused_where_a_unit_feeds_no_single_linear_layer_or_no_bias():
    X, y = bert_data()
    with pytest.raises(ShrinkNetError, match="works on shrinknet.MLP and on transformer units"):
        shrinknet.prune(bert(), X, y, units=["bert.encoder.layer.0.attention.self.query"] and [nn.Linear],
                        compensation="mean")
    Xl, yl = lm_data()
    with pytest.raises(ShrinkNetError, match="folds into the bias of 'model.layers.0.self_attn.o_proj'"):
        shrinknet.prune(llama(), Xl, yl, units=["heads"], compensation="mean")


# ---- what a new user ran into ------------------------------------------------------------------------
def test_a_gated_model_is_called_as_the_model_is():
    X, _ = bert_data()
    gm = GatedModel(bert(), units=["heads"], example_input=X)
    assert torch.equal(gm(**X), gm(X))
    assert torch.equal(gm(X["input_ids"], X["attention_mask"]), gm((X["input_ids"], X["attention_mask"])))
    with pytest.raises(ShrinkNetError, match="expected positional or keyword inputs, got both"):
        gm(X["input_ids"], attention_mask=X["attention_mask"])


def test_shrink_refuses_a_model_of_other_sizes_than_the_result():
    X, y = bert_data()
    result = shrinknet.prune(bert(), X, y, units=["heads", "ffn"], criterion="taylor1", stop=Stop(n_neurons=3))
    with pytest.raises(ShrinkNetError, match="has 8 units, but the result was pruned on a model where it had 4"):
        shrink(bert(heads=8), result)


def test_labels_that_are_all_ignored_and_ffn_without_a_transformer_are_refused():
    X, _ = lm_data()
    with pytest.raises(ShrinkNetError, match="T: expected at least one labelled position, got only -100"):
        shrinknet.prune(gpt2(), X, torch.full(X.shape, -100))
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    with pytest.raises(ShrinkNetError, match="'ffn' selects a transformer's FFN neurons, but the model has no"):
        shrinknet.prune(net, torch.randn(5, 4), torch.randint(0, 2, (5,)), units=["ffn"])
    Xb, yb = bert_data()
    with pytest.raises(ShrinkNetError, match="test T: expected"):
        shrinknet.prune(bert(), Xb, yb, units=["ffn"], test=(Xb, yb[:3]), stop=Stop(n_neurons=1))


# ---- from a code review -------------------------------------------------------------------------------
def test_a_layout_without_the_samples_on_dim_0_is_refused_by_name():
    class SequenceFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, 2, FFN), 1, enable_nested_tensor=False)
            self.fc = nn.Linear(E, CLASSES)

        def forward(self, x):                            # x (N, L, E); the encoder takes (L, N, E)
            return self.fc(self.enc(x.transpose(0, 1)).mean(0))
    with pytest.raises(ShrinkNetError, match="'enc.layers.0.linear2' sees .* expected the samples on dim 0"):
        GatedModel(SequenceFirst(), example_input=torch.randn(2, 5, E))


@pytest.mark.parametrize("mode", ["mean", "lstsq"])
def test_compensation_keeps_units_that_came_switched_off_off(mode):
    X, y = bert_data()
    gm = GatedModel(bert(), units=["heads", "ffn"], example_input=X)
    gm.set_gate(1, 1, 0.0)
    gm.set_gate(0, 2, 0.0)
    ctx = shrinknet.PruningContext.start(gm, X, y, compensation=mode, dtype=torch.float64)
    E = float(ctx.error())
    with ctx.evaluator.compensated(ctx):
        assert float(shrinknet.oracle.literal_error(ctx)) == pytest.approx(E, rel=1e-12)
    for l, k in enumerate(ctx.model.hidden_sizes):
        units = [u for u in range(k) if float(ctx.model.gates[l][u]) != 0]
        assert torch.allclose(shrinknet.oracle.errors_without(ctx, l, units),
                              shrinknet.oracle.literal_errors(ctx, l, units), rtol=1e-7, atol=0)
    assert float(ctx.error()) == pytest.approx(E, rel=1e-12)
