"""A compiled kernel for the fast oracle's inner loop, with the PyTorch path as the fallback.

For the candidates of a hidden layer with at most one hidden layer after it, the oracle needs,
per candidate, the loss summed over samples after a rank-1 move of the next layer's
pre-activations. PyTorch does that in several passes over (n, c, R) and (n, c, S) tensors
(copy, addcmul, activation, a skinny matrix product, output activation, loss); ``_fused.c`` does
it in one pass per sample that keeps a vector of candidates' running sums in registers and
writes nothing but the C totals. Same arithmetic, float rounding aside (its float32 exp / log
are Cephes' polynomials, about 1 ulp; sums are kept in double).

Two smaller helpers serve the pruning loop, which runs them after every removal: :func:`measure`
(E and the argmax count of the outputs in one pass, where torch takes a loss and two argmax
calls) and :func:`linear` (the output layer's product for up to MAX_OUTPUTS outputs, where torch's
BLAS call is not made for so thin a matrix). On small nets those per-step costs, not the
candidates, are most of a serial prune's time.

The C file is compiled when the package is installed (``setup.py``), in three builds from the same
source: ``_fused_avx512`` (``-march=x86-64-v4``), ``_fused_avx2`` (``-mavx2 -mfma``) and
``_fused_portable`` (no ``-m`` flag; the only one off x86-64). At load the best build the CPU runs
is taken (:func:`_variants`); a library is loaded only from this package's own directory, so what runs is what was
installed with this file. Nothing is compiled at run time. Where no build loads (the install found
no C compiler, or the library does not match this file), one warning says so and everything runs
on PyTorch; ``SHRINKNET_FUSED=0`` chooses PyTorch without a warning (the tests run both). See
:func:`backend`.

The calls with many arguments take one C struct (:class:`CandArgs`, :class:`StepArgs`, mirrors of
``struct cand_args`` / ``struct step_args``); every number the two sides share (block length,
output limit, lanes, activation and loss-mode codes, return codes) is read from the library's
``shrinknet_constants()`` table at load, and a library whose ABI version, struct sizes or field
offsets are not the ones this file was written for is refused rather than called with the wrong
layout. Until a library is loaded those constants' values are None (their keys are this file's).

The samples are split in fixed runs (:func:`run_length`) that ``torch.get_num_threads()`` OpenMP
threads take as each becomes free; each run's sums are kept apart and added in run order, so a
call's numbers do not depend on the thread count. Built with ``-fopenmp``, the library uses the
libgomp that torch has already loaded (the same soname), so its threads are torch's own, already
awake after torch's last operation: waking the idle threads of a pool of our own costs more than a
small call.
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import os
import platform
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

from .._threads import cpu_flags

#: the version of the C interface this file speaks (SHRINKNET_ABI in _fused.c)
ABI = 1
#: the builds setup.py makes, as files ``_fused_<variant><extension suffix>`` next to this one
VARIANTS = ("avx512", "avx2", "portable")

# the names in the library's constant table of the codes and lanes below
_HIDDEN_NAMES = {"sigmoid": "HIDDEN_SIGMOID", "tanh": "HIDDEN_TANH", "relu": "HIDDEN_RELU"}
_MODE_NAMES = {("sse", "identity"): "MODE_SSE_IDENTITY", ("sse", "sigmoid"): "MODE_SSE_SIGMOID",
               ("sse", "softmax"): "MODE_SSE_SOFTMAX", ("cross-entropy", "sigmoid"): "MODE_CE_SIGMOID",
               ("cross-entropy", "softmax"): "MODE_CE_LOGITS", ("cross-entropy", "identity"): "MODE_CE_LOGITS"}
_LANE_NAMES = {torch.float32: "LANES_F32", torch.float64: "LANES_F64"}

#: the hidden layer's activation -> the kernel's code (the values are the library's HIDDEN_*)
HIDDEN = dict.fromkeys(_HIDDEN_NAMES)
#: (loss, output activation) -> the kernel's loss mode (the values are the library's MODE_*)
MODES = dict.fromkeys(_MODE_NAMES)
#: dtype -> candidates per vector (the library's LANES_F32, LANES_F64)
LANES = dict.fromkeys(_LANE_NAMES)
NUMPY = {torch.float32: np.float32, torch.float64: np.float64}   # the kernel's dtypes, both ways
TORCH = {v: k for k, v in NUMPY.items()}
#: the kernel keeps up to this many outputs' running sums per candidate; wider outputs use PyTorch (MAXS)
MAX_OUTPUTS: int | None = None
#: samples the kernel sums in its working precision before adding to doubles (BLOCK)
BLOCK: int | None = None
#: the most runs of samples a kernel call is split into (Python's choice: the C side takes any number)
RUNS = 32

_P, _I64, _I32, _F64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_double


class CandArgs(ctypes.Structure):
    """``struct cand_args`` of _fused.c: the arguments of cand_f32 / cand_f64 (what each field holds
    is written there). Array fields are addresses (int) or None for NULL."""
    _fields_ = [("base", _P), ("cols", _P), ("src", _P), ("idx", _P), ("f", _P), ("w", _P), ("gate", _P),
                ("Wt", _P), ("b", _P), ("Tt", _P), ("out", _P), ("zs", _P),
                ("ldb", _I64), ("K", _I64), ("n", _I64), ("c", _I64), ("R", _I64), ("S", _I64), ("chunk", _I64),
                ("hidden", _I32), ("mode", _I32), ("init", _I32), ("threads", _I32)]


class StepArgs(ctypes.Structure):
    """``struct step_args`` of _fused.c: the arguments of step_f32 / step_f64, and in unit / value
    their results."""
    _fields_ = [("z", _P), ("outb", _P), ("gb", _P), ("Wo", _P), ("bo", _P), ("preb", _P), ("outa", _P),
                ("ga", _P), ("Wb", _P), ("rows", _P), ("gain", _P), ("zs", _P), ("Tt", _P),
                ("Kb", _I64), ("Ka", _I64), ("nrows", _I64), ("n", _I64), ("S", _I64), ("chunk", _I64),
                ("E0", _F64), ("init", _I32), ("hidden", _I32), ("mode", _I32), ("threads", _I32),
                ("unit", _I64 * 2), ("value", _F64 * 2)]


class _Constant(ctypes.Structure):
    """``struct shrinknet_constant``: one entry of the library's table of shared numbers."""
    _fields_ = [("name", ctypes.c_char_p), ("value", _I64)]


_lib = None          # the loaded library; None: not tried yet; False: tried, none loads
_why = ""            # why none loads (for the warning)
_warned = False      # the warning is given once per process
_variant = None      # the build that was loaded (one of VARIANTS)
_threaded = False    # whether it splits its work over OpenMP threads
_C: dict[str, int] = {}   # the library's constant table


#: the CPU flags each x86-64 build needs (x86-64-v4: AVX-512 F, BW, CD, DQ, VL, on top of AVX2 and FMA)
NEEDS = {"avx512": ("avx2", "fma", "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"),
         "avx2": ("avx2", "fma")}


def _capability() -> str:
    """torch's view of the CPU's vector level (it also checks that the OS saves those registers)."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        return ""


def _variants() -> list[str]:
    """The builds to try, best first: each x86-64 build only where the CPU (and torch) can run it."""
    if platform.machine().lower() not in ("x86_64", "amd64", "x64"):
        return ["portable"]
    flags, level = cpu_flags(), _capability()
    ok = {"avx512": level == "AVX512" and all(f in flags for f in NEEDS["avx512"]),
          "avx2": level in ("AVX2", "AVX512") or all(f in flags for f in NEEDS["avx2"])}
    return [v for v in ("avx512", "avx2") if ok[v]] + ["portable"]


def _find(variant: str) -> Path | None:
    """The installed library of one build, in this package's own directory (never anywhere else)."""
    here = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / f"_fused_{variant}{suffix}"
        if path.is_file():
            return path
    return None


def _check(lib) -> tuple[dict[str, int] | None, str]:
    """(the library's constant table, "") where it speaks this file's interface, else (None, why)."""
    try:
        abi, table = lib.shrinknet_abi, lib.shrinknet_constants
    except AttributeError:
        return None, "it exports no ABI version (an older build?)"
    abi.restype, abi.argtypes = _I64, []
    if abi() != ABI:
        return None, f"its ABI version is {abi()}, this shrinknet speaks {ABI}"
    table.restype, table.argtypes = ctypes.POINTER(_Constant), [ctypes.POINTER(_I64)]
    count = _I64()
    rows = table(ctypes.byref(count))
    consts = {rows[k].name.decode(): rows[k].value for k in range(count.value)}
    for name, struct in (("cand_args", CandArgs), ("step_args", StepArgs)):
        size = consts.get(f"sizeof({name})")
        if size != ctypes.sizeof(struct):
            return None, f"its struct {name} has {size} bytes, this shrinknet's {ctypes.sizeof(struct)}"
        for field, _ in struct._fields_:
            if consts.get(f"{name}.{field}") != getattr(struct, field).offset:
                return None, f"its struct {name} has field {field} at another offset than this shrinknet's"
    need = ["THREADED", "MAXS", "BLOCK", "RC_OK", "RC_NO_MEMORY", "RC_BAD_ARGUMENTS", "RC_NOT_FINITE",
            *_HIDDEN_NAMES.values(), *_MODE_NAMES.values(), *_LANE_NAMES.values(), "HIDDEN_NONE"]
    missing = [k for k in need if k not in consts]
    if missing:
        return None, f"its constant table lacks {', '.join(missing)}"
    return consts, ""


def _declare(lib) -> None:
    """The exported functions' argument and result types."""
    C = ctypes.c_int
    for f in (lib.cand_f32, lib.cand_f64):
        f.argtypes, f.restype = [ctypes.POINTER(CandArgs)], C
    for f in (lib.step_f32, lib.step_f64):
        f.argtypes, f.restype = [ctypes.POINTER(StepArgs)], C
    for f in (lib.linear_f32, lib.linear_f64):
        f.argtypes, f.restype = [_P] * 4 + [_I64] * 4 + [C], C
    for f in (lib.measure_f32, lib.measure_f64):
        f.argtypes, f.restype = [_P, _P, _I64, _I64, C, _P], C
    lib.threaded.argtypes, lib.threaded.restype = [], C


def _load():
    """Load the best build this CPU runs and take the shared numbers from it; False (and the reason
    in _why) where none loads."""
    global _why, _variant, _threaded, _C, MAX_OUTPUTS, BLOCK
    reasons, missing = [], []
    for variant in _variants():
        path = _find(variant)
        if path is None:
            missing.append(f"_fused_{variant}")
            continue
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as e:
            reasons.append(f"{path.name} does not load ({e})")
            continue
        consts, why = _check(lib)
        if consts is None:
            reasons.append(f"{path.name} is refused: {why}")
            continue
        _declare(lib)
        _C, _variant, _threaded = consts, variant, bool(consts["THREADED"])
        MAX_OUTPUTS, BLOCK = consts["MAXS"], consts["BLOCK"]
        HIDDEN.update({k: consts[v] for k, v in _HIDDEN_NAMES.items()})
        MODES.update({k: consts[v] for k, v in _MODE_NAMES.items()})
        LANES.update({k: consts[v] for k, v in _LANE_NAMES.items()})
        return lib
    if missing:
        reasons.append(f"no {' or '.join(missing)} library in {Path(__file__).parent}: was shrinknet installed "
                       "without a working C compiler?")
    _why = "; ".join(reasons)
    return False


def library():
    """The compiled kernel, or None where no build loads or ``SHRINKNET_FUSED=0`` switches it off.
    The first time none loads (and it is not switched off) this warns, once per process."""
    global _lib, _warned
    if os.environ.get("SHRINKNET_FUSED", "1") == "0":
        return None
    if _lib is None:
        _lib = _load()
    if not _lib and not _warned:
        _warned = True
        warnings.warn(f"shrinknet: the compiled oracle kernel is unavailable ({_why}). The PyTorch path is used "
                      "instead: same results up to float rounding, only slower. (SHRINKNET_FUSED=0 chooses it "
                      "without this warning.)", RuntimeWarning, stacklevel=2)
    return _lib or None


def backend() -> str:
    """"compiled" where the oracle runs on the compiled kernel, "torch" where it runs on PyTorch
    (no build loads, or ``SHRINKNET_FUSED=0``)."""
    return "torch" if library() is None else "compiled"


def _reset() -> None:
    """Forget the loaded library and the warning, so that the next call loads afresh (for tests: the
    environment or the loader may have been changed). The constants keep their last values."""
    global _lib, _why, _warned, _variant, _threaded
    _lib, _why, _warned, _variant, _threaded = None, "", False, None, False


def supports(T: torch.Tensor, loss: str, output: str, hidden: str | None = None) -> bool:
    """Whether the kernel can score candidates whose move reaches outputs T through at most one
    hidden layer of activation `hidden` (None: the candidates feed the output layer)."""
    return (T.device.type == "cpu" and T.dtype in LANES and library() is not None   # (then MAX_OUTPUTS is set)
            and 1 <= T.shape[1] <= MAX_OUTPUTS and (loss, output) in MODES and (hidden is None or hidden in HIDDEN))


def padded(c: int, dtype) -> int:
    """c rounded up to whole vectors of candidates."""
    return c + (-c % LANES[dtype])


def new_store(n: int, c: int, S: int, dtype) -> torch.Tensor:
    """Room for every (sample, candidate)'s S outputs, for candidate_losses(store=...)."""
    return torch.empty(n * padded(c, dtype) * S, dtype=dtype)


def _array(t, dtype=None) -> np.ndarray:
    """A C-contiguous NumPy array of CPU tensor or array t (no copy where it already is one)."""
    a = t.detach().numpy() if isinstance(t, torch.Tensor) else t
    return np.ascontiguousarray(a, dtype=dtype)


def _ptr(a: np.ndarray | None):
    return None if a is None else a.__array_interface__["data"][0]


def _big(t, real):
    """(t's data as C-contiguous memory of dtype `real`, its address) without a copy where it already
    is that: a contiguous tensor's own data_ptr (cheaper than NumPy's address, and a call passes four
    such arrays at every step of a prune). The first item keeps the memory alive."""
    if isinstance(t, torch.Tensor) and t.is_contiguous() and t.dtype == TORCH[real]:
        return t, t.data_ptr()
    a = _array(t, real)
    return a, _ptr(a)


def candidate_losses(base, moves, w, T, loss: str, output: str, hidden=None, store=None, init: bool = True,
                     cols=None):
    """Every candidate j's loss summed over the samples, and whether its move is nonzero anywhere.

    The next layer's pre-activations move to x_ij = base_i + dh_ij w_j; then z_ij = x_ij
    (hidden None, R = S), or, with hidden = (gate (R,), Wt (R, S), b (S,), activation),
    z_ij = b + act(x_ij) * gate @ Wt. With a `store` (from :func:`new_store`) the z_ij are kept:
    init=True computes and stores them; init=False adds this call's units to the stored z_ij
    instead of starting from b (gate then holds those units' change of gain).

    moves: dh (n, c), or (src (n, K), idx (c,), f (c,)) for dh[:, j] = src[:, idx[j]] * f[j],
    which the kernel gathers itself. base (n, R), or base (n, K) and cols (R,) for its columns cols
    (gathered by the kernel too); w (R, c), T (n, S); CPU tensors or NumPy arrays
    (the small ones are handled in NumPy: a call is made at every step of a prune, and a torch
    operation on a small tensor costs more than the NumPy one).
    Returns ((c,) losses in T's dtype, (c,) bool: the move is nonzero for some sample; with ReLU,
    some unit's activation moves).
    """
    E, moved = candidate_losses_np(base, moves, w, T, loss, output, hidden, store, init, cols)
    return torch.from_numpy(E), torch.from_numpy(moved)


class _Scratch:
    """The small arrays of a kernel call (padded moves and weights, the hidden layer's gates and weights,
    the sums) and its argument structs, kept from call to call with their addresses: reading a NumPy
    array's address and allocating one both cost more than reusing it, and the serial oracle makes two
    calls with eight such arrays at every step of a prune. Each name's memory only grows; a call gets a
    view of its first `size` items. One per thread (:func:`_scratch`): ctypes lets go of the GIL during
    a call, so two threads' calls may overlap."""

    def __init__(self):
        self.bufs = {}
        self.cand, self.step = CandArgs(), StepArgs()
        self.cand_ref, self.step_ref = ctypes.byref(self.cand), ctypes.byref(self.step)

    def get(self, name: str, size: int, dtype) -> tuple[np.ndarray, int]:
        buf = self.bufs.get((name, dtype))
        if buf is None or buf[0].size < size:
            a = np.empty(max(size, 64), dtype)
            buf = self.bufs[(name, dtype)] = (a, _ptr(a))
        return buf[0][:size], buf[1]

    def fill(self, name: str, t, dtype) -> int:
        """t's values copied into the scratch array `name`; returns its address."""
        t = t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        a, p = self.get(name, t.size, dtype)
        np.copyto(a.reshape(t.shape), t, casting="unsafe")
        return p


_local = threading.local()


def _scratch() -> _Scratch:
    """This thread's scratch arrays."""
    sc = getattr(_local, "scratch", None)
    if sc is None:
        sc = _local.scratch = _Scratch()
    return sc


def _threads(n: int) -> int:
    """Threads for a kernel call on n samples: torch's own OpenMP threads (one without OpenMP)."""
    return max(1, min(torch.get_num_threads(), n)) if _threaded else 1


def run_length(n: int) -> int:
    """Samples per run of a kernel call on n samples: whole BLOCKs, at most RUNS runs. The threads
    take runs as they become free, and each run's sums are kept apart and added in run order, so a
    call's result depends on n alone, not on the thread count."""
    return BLOCK * max(1, -(-n // (BLOCK * RUNS)))


def _raise(code: int, what: str):
    """The exception for a kernel call's return code (other than RC_NOT_FINITE + layer)."""
    if code == _C["RC_NO_MEMORY"]:
        raise MemoryError(f"{what}: out of memory")
    raise RuntimeError(f"{what}: bad arguments (code {code})")


def candidate_losses_np(base, moves, w, T, loss: str, output: str, hidden=None, store=None, init: bool = True,
                        cols=None):
    """:func:`candidate_losses` returning NumPy arrays (what the oracle's per-step bookkeeping uses)."""
    lib, dtype, sc = library(), T.dtype, _scratch()
    real = NUMPY[dtype]
    if isinstance(moves, torch.Tensor):
        moves = (moves, np.arange(moves.shape[1]), np.ones(moves.shape[1], real))
    src, idx, f = moves
    n, c = src.shape[0], len(idx)
    S = T.shape[1]
    R = base.shape[1] if cols is None else len(cols)
    cp = padded(c, dtype)                          # the kernel works on whole vectors of candidates
    (base, pb), (src, ps), (T, pT) = _big(base, real), _big(src, real), _big(T, real)
    if store is not None and store.numel() != n * cp * S:
        raise ValueError(f"store: expected {n * cp * S} elements, got {store.numel()}")
    store, pz = (None, None) if store is None else _big(store, real)
    pad_idx, p_idx = sc.get("idx", cp, np.int64)   # padded lanes read column 0 and do not move
    pad_idx[:c], pad_idx[c:] = idx, 0
    pad_f, p_f = sc.get("f", cp, real)
    pad_f[:c], pad_f[c:] = f, 0
    pad_w, p_w = sc.get("w", R * cp, real)
    pad_w = pad_w.reshape(R, cp)
    pad_w[:, :c], pad_w[:, c:] = w, 0
    a = sc.cand
    a.cols = None if cols is None else sc.fill("cols", cols, np.int64)
    if hidden is None:
        a.gate = a.Wt = a.b = None
        a.hidden = _C["HIDDEN_NONE"]
    else:
        a.gate, a.Wt, a.b = (sc.fill(name, t, real) for name, t in zip(("gate", "Wt", "b"), hidden[:3]))
        a.hidden = HIDDEN[hidden[3]]
    chunk = run_length(n)
    out, p_out = sc.get("out", -(-n // chunk) * 2 * cp, np.float64)
    out.fill(0)
    a.base, a.ldb, a.src, a.K, a.idx, a.f, a.w, a.Tt, a.out, a.zs = (
        pb, base.shape[1], ps, src.shape[1], p_idx, p_f, p_w, pT, p_out, pz)
    a.n, a.c, a.R, a.S, a.chunk = n, cp, R, S, chunk
    a.mode, a.init, a.threads = MODES[(loss, output)], int(init), _threads(n)
    code = (lib.cand_f32 if dtype == torch.float32 else lib.cand_f64)(sc.cand_ref)
    if code:
        _raise(code, "fused oracle kernel")
    return out[:c].astype(real), out[cp:cp + c] > 0


def serial_step(z, out_b, g_b, W_out, b_out, T, loss: str, output: str, E0: float, before=None):
    """One step of the serial oracle in one compiled call: the lowest score among the candidates of the
    last hidden layer b (outputs out_b (n, Kb), gates g_b, output weights W_out (S, Kb), b_out) and,
    with `before` = (pre_b, out_a, g_a, W_b, rows, gain, store, init, activation), of the layer a before
    it, through the kept outputs as :func:`candidate_losses` keeps them (pre_b (n, Kb): b's
    pre-activations; W_b (Kb, Ka); rows, gain: the units of b to compute and their gains, or with
    init=False their changes of gain; store None or from :func:`new_store` for a's active units).
    A candidate's score is its E - E0 in T's dtype, or exactly 0 where removing it changes nothing
    downstream. Returns [(unit, score) or None for layer a, the same for layer b]; raises
    FloatingPointError naming (layer, unit) where a score is not finite. Arrays: CPU tensors or
    NumPy arrays of T's dtype (rows int64)."""
    lib, dtype, sc = library(), T.dtype, _scratch()
    real = NUMPY[dtype]
    n, S = T.shape
    keep = [_big(t, real) for t in (z, out_b, g_b, W_out, b_out, T)]   # the memory lives until the call returns
    a = sc.step
    a.z, a.outb, a.gb, a.Wo, a.bo, a.Tt = (k[1] for k in keep)
    a.Kb = keep[2][0].shape[0]
    if before is None:
        a.preb = a.outa = a.ga = a.Wb = a.rows = a.gain = a.zs = None
        a.Ka, a.nrows, a.init, a.hidden = 0, 0, 1, _C["HIDDEN_NONE"]
    else:
        pre_b, out_a, g_a, W_b, rows, gain, store, init, act = before
        more = [_big(t, real) for t in (pre_b, out_a, g_a, W_b, gain)]
        rows = np.ascontiguousarray(rows, np.int64)
        keep += more + [(rows, None), (store, None)]
        a.preb, a.outa, a.ga, a.Wb, a.gain = (k[1] for k in more)
        a.rows = _ptr(rows)
        a.Ka, a.nrows, a.init, a.hidden = more[2][0].shape[0], rows.shape[0], int(init), HIDDEN[act]
        c_a = int(np.count_nonzero(more[2][0]))
        if store is not None and store.numel() != n * padded(c_a, dtype) * S:
            raise ValueError(f"store: expected {n * padded(c_a, dtype) * S} elements, got {store.numel()}")
        a.zs = None if store is None else _big(store, real)[1]
    a.n, a.S, a.chunk, a.E0 = n, S, run_length(n), float(E0)
    a.mode, a.threads = MODES[(loss, output)], _threads(n)
    code = (lib.step_f32 if dtype == torch.float32 else lib.step_f64)(sc.step_ref)
    units, values = a.unit, a.value
    not_finite = _C["RC_NOT_FINITE"]
    if not_finite <= code < not_finite + 2:
        raise FloatingPointError((code - not_finite, int(units[code - not_finite])))
    if code:
        _raise(code, "fused serial step")
    return [None if units[l] < 0 else (int(units[l]), float(values[l])) for l in (0, 1)]


_measured = None     # the last measure() call: (z, its version, T, its version, loss, output, result)


def measure(z: torch.Tensor, T: torch.Tensor, loss: str, output: str):
    """(E, number of samples whose first largest output is the target's) of outputs z (n, S)
    against T (n, S) in one pass; None where the kernel does not apply (then use losses.total).
    The count is only meaningful for S > 1. The last result is remembered: the pruning loop
    measures the net after a removal and the serial oracle asks for the same E next.
    (The memo holds z itself, so no other tensor can take its place at the same address.)"""
    global _measured
    m = _measured
    if (m is not None and m[0] is z and m[1] == z._version and m[2] is T and m[3] == T._version
            and m[4:6] == (loss, output)):
        return m[6]
    if z.dtype != T.dtype or not supports(T, loss, output):
        return None
    zc, Tc = z.contiguous(), T.contiguous()
    out = (ctypes.c_double * 2)()
    fn = library().measure_f32 if T.dtype == torch.float32 else library().measure_f64
    code = fn(zc.data_ptr(), Tc.data_ptr(), z.shape[0], z.shape[1], MODES[(loss, output)], out)
    if code:
        _raise(code, "fused measure")
    _measured = (z, z._version, T, T._version, loss, output, (out[0], int(out[1])))
    return _measured[6]


def linear(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor | None:
    """b + h @ W.T for an output layer of at most MAX_OUTPUTS units, h (n, R) on the CPU, without
    autograd; None where that does not apply (the caller then runs torch's linear)."""
    lib = library()
    if (lib is None or b is None or h.device.type != "cpu" or h.ndim != 2 or h.dtype not in LANES
            or W.dtype != h.dtype or not 1 <= W.shape[0] <= MAX_OUTPUTS
            or (torch.is_grad_enabled() and (h.requires_grad or W.requires_grad or b.requires_grad))):
        return None
    n, R, S = h.shape[0], h.shape[1], W.shape[0]
    Rp = padded(R, h.dtype)
    fn = lib.linear_f32 if h.dtype == torch.float32 else lib.linear_f64
    real = NUMPY[h.dtype]
    (h, ph), (b, pb) = _big(h, real), _big(b, real)
    Wp, p_W = _scratch().get("Wp", S * Rp, real)  # rows padded to whole vectors
    Wp = Wp.reshape(S, Rp)
    Wp[:, :R], Wp[:, R:] = W.detach().numpy(), 0
    z = torch.empty((n, S), dtype=h.dtype)
    threads = max(1, min(torch.get_num_threads(), n // 512)) if _threaded else 1
    code = fn(ph, p_W, pb, z.data_ptr(), n, R, Rp, S, threads)
    if code:
        _raise(code, "fused linear")
    return z


if os.environ.get("SHRINKNET_FUSED", "1") != "0":
    _lib = _load()   # at import, so the constants above hold the library's values; any warning waits for first use
