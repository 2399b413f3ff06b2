"""A compiled kernel for the fast oracle's heaviest step, with the PyTorch path as the fallback.

For candidates of hidden layer l the oracle computes, chunk by chunk, the next layer's
pre-activations moved by a rank-1 term, the activation, the gate and the layer after. PyTorch
does that in four passes over an (n, c, R) tensor (copy, addcmul, activation, then a skinny
matrix product); ``_fused.c`` does it in one pass that never writes that tensor. Same arithmetic,
float rounding aside (``-ffast-math``: vectorised exp / tanh from glibc's libmvec).

The C file is compiled on first use with the system's C compiler (``cc -O3 -march=native``, about a
second) into ``~/.cache/shrinknet/`` (or ``$SHRINKNET_CACHE``), keyed by the source, the flags and
the CPU. Without a compiler, or with ``SHRINKNET_FUSED=0``, the oracle runs its PyTorch path; the
tests run both. The work is split over ``torch.get_num_threads()`` threads (ctypes releases the GIL).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("_fused.c")
FLAGS = ["-O3", "-march=native", "-ffast-math", "-shared", "-fPIC"]
KINDS = {"sigmoid": 0, "tanh": 1, "relu": 2}

_lib = None          # the loaded library, False once building it has failed
_pool: ThreadPoolExecutor | None = None


def _cpu() -> str:
    try:
        return next((l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")), "")
    except OSError:
        return platform.processor()


def _build() -> Path | None:
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None or not SOURCE.is_file():
        return None
    src = SOURCE.read_bytes()
    key = hashlib.sha256(src + " ".join(FLAGS).encode() + _cpu().encode() + platform.machine().encode()).hexdigest()[:16]
    folder = Path(os.environ.get("SHRINKNET_CACHE", Path.home() / ".cache" / "shrinknet"))
    lib = folder / f"fused-{key}.so"
    if lib.is_file():
        return lib
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".so")
        os.close(fd)
        subprocess.run([cc, *FLAGS, str(SOURCE), "-o", tmp, "-lm"], check=True, capture_output=True, timeout=120)
        os.replace(tmp, lib)                       # atomic: parallel builders never see half a file
    except (OSError, subprocess.SubprocessError):
        return None
    return lib


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
            for f in (_lib.rank1_f32, _lib.rank1_f64):
                f.argtypes = [P] * 7 + [I] * 4 + [ctypes.c_int]
                f.restype = ctypes.c_int
            for f in (_lib.act_f32, _lib.act_f64):
                f.argtypes = [P] * 5 + [I] * 3 + [ctypes.c_int]
                f.restype = ctypes.c_int
    return _lib or None


def supports(activation: str, t: torch.Tensor) -> bool:
    """Whether the kernel can run this step (CPU tensors, float32/64, a supported activation)."""
    return (activation in KINDS and t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64)
            and library() is not None)


#: next layers up to this wide are fused whole; wider ones go to BLAS after the fused activation
FUSE_MAX_WIDTH = 16


def rank1_layer(base, dh, w, gate, Wt, b, activation: str) -> torch.Tensor:
    """(n, c, S): b + act(base[:, None, :] + dh[:, :, None] * w.T[None]) * gate @ Wt.

    base (n, R), dh (n, c), w (R, c), gate (R,), Wt (R, S), b (S,)."""
    lib = library()
    n, R = base.shape
    c, S = dh.shape[1], Wt.shape[1]
    base, dh, gate = base.contiguous(), dh.contiguous(), gate.contiguous()
    if S > FUSE_MAX_WIDTH:                       # fuse the elementwise part only; the product is BLAS's
        h = torch.empty(n, c, R, dtype=base.dtype)
        wT = w.T.contiguous()                                                   # (c, R)
        fn = lib.act_f32 if base.dtype == torch.float32 else lib.act_f64
        _split(n, lambda i0, m: fn(base[i0].data_ptr(), dh[i0].data_ptr(), wT.data_ptr(), gate.data_ptr(),
                                   h[i0].data_ptr(), m, c, R, KINDS[activation]))
        return torch.addmm(b, h.view(n * c, R), Wt).view(n, c, S)
    w, Wt, b = w.contiguous(), Wt.contiguous(), b.contiguous()
    out = torch.empty(n, c, S, dtype=base.dtype)
    fn = lib.rank1_f32 if base.dtype == torch.float32 else lib.rank1_f64
    _split(n, lambda i0, m: fn(base[i0].data_ptr(), dh[i0].data_ptr(), w.data_ptr(), gate.data_ptr(), Wt.data_ptr(),
                               b.data_ptr(), out[i0].data_ptr(), m, c, R, S, KINDS[activation]))
    return out


def _split(n: int, call) -> None:
    """call(first row, rows) on torch.get_num_threads() threads, each a block of the n sample rows."""
    global _pool
    threads = max(1, min(torch.get_num_threads(), n))
    step = -(-n // threads)
    starts = range(0, n, step)
    if threads == 1:
        codes = [call(0, n)]
    else:
        if _pool is None or _pool._max_workers != threads:
            _pool = ThreadPoolExecutor(threads)
        codes = list(_pool.map(lambda i0: call(i0, min(n, i0 + step) - i0), starts))
    if any(codes):
        raise MemoryError("fused oracle kernel: out of memory")
