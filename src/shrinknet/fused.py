"""A compiled kernel for the fast oracle's inner loop, with the PyTorch path as the fallback.

For the candidates of a hidden layer with at most one hidden layer after it, the oracle needs,
per candidate, the loss summed over samples after a rank-1 move of the next layer's
pre-activations. PyTorch does that in several passes over (n, c, R) and (n, c, S) tensors
(copy, addcmul, activation, a skinny matrix product, output activation, loss); ``_fused.c`` does
it in one pass per sample that keeps a vector of candidates' running sums in registers and
writes nothing but the C totals. Same arithmetic, float rounding aside (its float32 exp / log
are Cephes' polynomials, about 1 ulp; sums are kept in double).

The C file is compiled on first use with the system's C compiler (``cc -O3 -march=native``, a
second or two) into ``~/.cache/shrinknet/`` (or ``$SHRINKNET_CACHE``), keyed by the source, the
flags and the CPU. Without a compiler, or with ``SHRINKNET_FUSED=0``, the oracle runs its PyTorch
path; the tests run both. The samples are split over ``torch.get_num_threads()`` OpenMP threads:
built with ``-fopenmp``, the library shares the libgomp that torch has already loaded, so its
threads are torch's own (already awake after torch's last operation; a thread pool of our own was
slower, since waking idle threads costs more than a small call).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("_fused.c")
FLAGS = ["-O3", "-march=native", "-shared", "-fPIC"]
HIDDEN = {"sigmoid": 0, "tanh": 1, "relu": 2}
#: (loss, output activation) -> the kernel's loss mode
MODES = {("sse", "identity"): 0, ("sse", "sigmoid"): 1, ("sse", "softmax"): 2,
         ("cross-entropy", "sigmoid"): 3, ("cross-entropy", "softmax"): 4, ("cross-entropy", "identity"): 4}
#: the kernel keeps up to this many outputs' running sums per candidate; wider outputs use PyTorch
MAX_OUTPUTS = 16
LANES = {torch.float32: 8, torch.float64: 4}

_lib = None          # the loaded library, False once building it has failed


def _cpu() -> str:
    try:
        return next((l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")), "")
    except OSError:
        return platform.processor()


def _build() -> Path | None:
    """Compile the kernel (with OpenMP where the compiler has it) into the cache folder."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None or not SOURCE.is_file():
        return None
    folder = Path(os.environ.get("SHRINKNET_CACHE", Path.home() / ".cache" / "shrinknet"))
    for flags in (FLAGS + ["-fopenmp"], FLAGS):
        key = hashlib.sha256(SOURCE.read_bytes() + " ".join(flags).encode() + _cpu().encode()
                             + platform.machine().encode()).hexdigest()[:16]
        lib = folder / f"fused-{key}.so"
        if lib.is_file():
            return lib
        tmp = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".so")
            os.close(fd)
            subprocess.run([cc, *flags, str(SOURCE), "-o", tmp, "-lm"], check=True, capture_output=True, timeout=120)
            os.replace(tmp, lib)                   # atomic: parallel builders never see half a file
            return lib
        except (OSError, subprocess.SubprocessError):
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
    return None


def library():
    """The compiled kernel, or None where it cannot be built or is switched off."""
    global _lib
    if os.environ.get("SHRINKNET_FUSED", "1") == "0":
        return None
    if _lib is None:
        path = _build()
        try:
            _lib = ctypes.CDLL(str(path)) if path else False
        except OSError:
            _lib = False
        if _lib:
            P, I = ctypes.c_void_p, ctypes.c_int64
            for f in (_lib.cand_f32, _lib.cand_f64):
                f.argtypes = [P, P, I] + [P] * 9 + [I] * 4 + [ctypes.c_int] * 4
                f.restype = ctypes.c_int
            _lib.threaded.restype = ctypes.c_int
    return _lib or None


def supports(T: torch.Tensor, loss: str, output: str, hidden: str | None = None) -> bool:
    """Whether the kernel can score candidates whose move reaches outputs T through at most one
    hidden layer of activation `hidden` (None: the candidates feed the output layer)."""
    return (T.device.type == "cpu" and T.dtype in LANES and 1 <= T.shape[1] <= MAX_OUTPUTS
            and (loss, output) in MODES and (hidden is None or hidden in HIDDEN) and library() is not None)


def padded(c: int, dtype) -> int:
    """c rounded up to whole vectors of candidates."""
    return c + (-c % LANES[dtype])


def new_store(n: int, c: int, S: int, dtype) -> torch.Tensor:
    """Room for every (sample, candidate)'s S outputs, for candidate_losses(store=...)."""
    return torch.empty(n * padded(c, dtype) * S, dtype=dtype)


def candidate_losses(base, moves, w, T, loss: str, output: str, hidden=None, store=None, init: bool = True):
    """Every candidate j's loss summed over the samples, and whether its move is nonzero anywhere.

    The next layer's pre-activations move to x_ij = base_i + dh_ij w_j; then z_ij = x_ij
    (hidden None, R = S), or, with hidden = (gate (R,), Wt (R, S), b (S,), activation),
    z_ij = b + act(x_ij) * gate @ Wt. With a `store` (from :func:`new_store`) the z_ij are kept:
    init=True computes and stores them; init=False adds this call's units to the stored z_ij
    instead of starting from b (gate then holds those units' change of gain).

    moves: dh (n, c), or (src (n, K), idx (c,), f (c,)) for dh[:, j] = src[:, idx[j]] * f[j],
    which the kernel gathers itself. base (n, R), w (R, c), T (n, S).
    Returns ((c,) losses in base's dtype, (c,) bool).
    """
    lib, dtype = library(), base.dtype
    if isinstance(moves, torch.Tensor):
        moves = (moves, torch.arange(moves.shape[1], device=moves.device), torch.ones(moves.shape[1], dtype=dtype))
    src, idx, f = moves
    n, c = src.shape[0], idx.numel()
    R, S = base.shape[1], T.shape[1]
    cp = padded(c, dtype)                          # the kernel works on whole vectors of candidates
    src, base, T = src.contiguous(), base.contiguous(), T.contiguous()
    idx = torch.cat([idx.long(), idx[:1].long().expand(cp - c)]) if c else torch.zeros(cp, dtype=torch.long)
    f = torch.nn.functional.pad(f.to(dtype), (0, cp - c))         # padded lanes do not move
    w = torch.nn.functional.pad(w, (0, cp - c)) if cp > c else w.contiguous()
    if hidden is None:
        keep, kind = (None, None, None), -1
    else:
        keep = tuple(t.contiguous() for t in hidden[:3])   # alive until the calls return
        kind = HIDDEN[hidden[3]]
    addr = [None if t is None else t.data_ptr() for t in keep]
    if store is not None and store.numel() != n * cp * S:
        raise ValueError(f"store: expected {n * cp * S} elements, got {store.numel()}")
    fn = lib.cand_f32 if dtype == torch.float32 else lib.cand_f64
    # the kernel splits the samples over torch's own OpenMP threads (one thread without OpenMP)
    threads = max(1, min(torch.get_num_threads(), n)) if lib.threaded() else 1
    out = torch.zeros(threads, 2 * cp, dtype=torch.float64)
    code = fn(base.data_ptr(), src.data_ptr(), src.shape[1], idx.data_ptr(), f.data_ptr(), w.data_ptr(), *addr,
              T.data_ptr(), out.data_ptr(), None if store is None else store.data_ptr(), n, cp, R, S, kind,
              MODES[(loss, output)], int(init), threads)
    if code:
        raise MemoryError("fused oracle kernel: out of memory") if code == 1 else \
            RuntimeError("fused oracle kernel: bad arguments")
    total = out.sum(0)
    return total[:c].to(dtype), total[cp:cp + c] > 0
