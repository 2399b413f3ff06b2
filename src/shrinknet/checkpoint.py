"""A prune's steps on disk as they happen, so that a run killed part-way resumes where it stopped.

    r = shrinknet.prune(model, X, T, "brute-force", checkpoint="run1")   # killed at step 300 of 400
    r = shrinknet.prune(model, X, T, "brute-force", checkpoint="run1")   # replays 300, computes 100
    r.resumed_steps                                                       # 300

The folder holds two files:

* ``fingerprint.json``: what the run's choices depend on (digests of the model's weights and gates,
  of the data and the test set (a loader's batches are read once for it); the criterion, schedule,
  loss, compensation, units, dtype, device; the starting errors; the versions of shrinknet and
  torch). Written once, atomically. A custom criterion is known by its name only: after changing
  one, start a new folder. A later run whose fingerprint differs is refused,
  naming what changed, rather than mixing two runs' steps.
* ``steps.jsonl``: one JSON line per removal (unit, error, accuracy, prediction, test figures),
  appended and fsync'ed as each step ends, then one line saying why the run stopped. A line cut off
  by a kill is dropped on resume.

Resuming replays the recorded removals (a forward pass each, with compensation as recorded) and
computes only the rest, so the result equals an uninterrupted run's: the same removals, the same
errors. Two things are outside that promise: a criterion that keeps state from step to step
(``brute-force-topk`` starts its refresh cycle afresh) and, for brute force on nets of two or more
hidden layers, near-ties the oracle's kept sums would break differently (they are recomputed after a
resume; they agree with an uninterrupted run's to float rounding).

The stopping options are not in the fingerprint: every schedule's path is the same whatever the
stop, so a run may resume with a later stop (prune 50 %, then rerun to 70 %), and with an earlier
one it stops where the new options say.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import torch

from . import inputs as batch
from ._io import write_text
from ._validation import ShrinkNetError
from ._version import version

FORMAT = "shrinknet-checkpoint"
VERSION = 1


def digest(tensors) -> str:
    """SHA-256 of the tensors' dtypes, shapes and bytes, in order (12 hex digits)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


def data_digest(X, T=None) -> str:
    """Digest of the data, with the keys of dict inputs: tensors in memory in their order; a loader's
    samples in any order (one pass reading them, no forward pass; a shuffling loader gives the same
    digest every pass)."""
    keys = ",".join(X) if isinstance(X, dict) else ""
    if isinstance(X, batch.Stream):
        total, n = 0, 0
        for Xb, Tb in X:
            leaves = [*batch.leaves(Xb), Tb]
            for i in range(batch.rows(Xb)):     # a sum of the samples' digests: their order does not count
                total += int(digest([t[i] for t in leaves]), 16)
            n += batch.rows(Xb)
        return f"loader of {n} samples {total % (1 << 48):012x}"
    return keys + digest([*batch.leaves(X), *([] if T is None else [T])])


def versions() -> dict:
    """The code a run's choices come from: a checkpoint of another version is not replayed."""
    return {"shrinknet": version(), "torch": torch.__version__}


class Checkpoint:
    """The checkpoint folder of one prune (see the module's text)."""

    def __init__(self, folder, required=("unit", "error")):
        if isinstance(folder, (bytes, bool)) or not isinstance(folder, (str, os.PathLike)):
            raise ShrinkNetError(f"checkpoint: expected a folder path (str or Path), got {type(folder).__name__}")
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ShrinkNetError(f"checkpoint: expected a folder, got the existing file {self.folder}")
        self.fingerprint_path = self.folder / "fingerprint.json"
        self.steps_path = self.folder / "steps.jsonl"
        self.required = tuple(required)       # the keys of a step line (an "end" line needs only its own)
        self._file = None

    def open(self, fingerprint: dict) -> list[dict]:
        """Check ``fingerprint`` against the recorded one (or record it) and return the recorded
        lines: one dict per removal, and possibly a last ``{"end": reason, "stop": ...}``."""
        fingerprint = {"format": FORMAT, "version": VERSION, **versions(), **fingerprint}
        if self.fingerprint_path.exists():
            try:
                old = json.loads(self.fingerprint_path.read_text())
            except (OSError, ValueError) as e:
                raise ShrinkNetError(f"checkpoint {self.folder}: fingerprint.json is not readable ({e}); expected "
                                     f"the folder of an earlier prune, or a new one{_afresh(self.folder)}") from None
            _compare(old, fingerprint, self.folder)
            records = self._read()
        else:
            if self.steps_path.exists() and self.steps_path.stat().st_size:   # steps of an unknown run
                raise ShrinkNetError(f"checkpoint {self.folder}: steps.jsonl has no fingerprint.json beside it; "
                                     f"expected the folder of an earlier prune, or a new one{_afresh(self.folder)}")
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                # the fingerprint first: a kill before the steps file exists leaves a run with no steps
                write_text(self.fingerprint_path, json.dumps(fingerprint, indent=1), durable=True)
                self.steps_path.touch()
            except OSError as e:
                raise ShrinkNetError(f"checkpoint {self.folder}: cannot write there ({e.strerror or e}); expected "
                                     f"a writable folder") from None
            records = []
        self._file = open(self.steps_path, "a")
        return records

    def _read(self) -> list[dict]:
        """The complete lines of steps.jsonl; a last line cut off by a kill is removed from the file."""
        raw = self.steps_path.read_bytes() if self.steps_path.exists() else b""
        good = raw[: raw.rfind(b"\n") + 1]
        if len(good) != len(raw):
            with open(self.steps_path, "r+b") as f:      # drop the torn tail before appending after it
                f.truncate(len(good))
                os.fsync(f.fileno())
        out = []
        for k, line in enumerate(good.decode(errors="replace").splitlines()):
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            if not (isinstance(rec, dict) and (all(k in rec for k in self.required) or "end" in rec)):
                raise ShrinkNetError(f"checkpoint {self.folder}: line {k + 1} of steps.jsonl is not a step; expected "
                                     f"the steps an earlier prune wrote{_afresh(self.folder)}")
            out.append(rec)
        return out

    def append(self, record: dict) -> None:
        """One line, on disk (flushed and fsync'ed) before the call returns."""
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the steps file (what was appended is already on disk)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _afresh(folder) -> str:
    """The way out that every refusal of a checkpoint names."""
    return f" (remove {folder} to start afresh)"


def _compare(old: dict, new: dict, folder: Path) -> None:
    """Refuse a run whose fingerprint differs from the recorded one, naming the first difference."""
    for key in new:
        a, b = old.get(key), new[key]
        # the starting error is measured again; another machine may round its last digits differently
        if isinstance(a, float) and isinstance(b, float) and (math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-300)
                                                              or (math.isnan(a) and math.isnan(b))):
            continue
        if a != b:
            raise ShrinkNetError(f"checkpoint {folder}: recorded for another run ({key} was {a!r}, now {b!r}); "
                                 f"expected the same model, data, criterion and options to resume{_afresh(folder)}")
