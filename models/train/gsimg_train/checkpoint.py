"""Checkpoint files: written atomically, read in both layouts.

A training checkpoint (`FORMAT` 2) holds everything a run needs to continue exactly where it
stopped: the resolved configuration it was trained with, the step, the weights and their EMA
(float32), the optimizer's moments (float32), the rate multiplier λ, the best validation score,
every random generator's state and a digest of the training pictures.

The released checkpoints in `models/ckpt/` have the older layout of the time-boxed training
script (EMA weights in float32, the raw weights as a bfloat16 difference, no optimizer moments,
the architecture under `config`): they are read for export, evaluation and as `init_from`
starting points, not resumed.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from . import models as M

FORMAT = 2


def save_atomic(obj, path: Path):
    """Writes `obj` with torch.save to a temporary file beside `path`, flushes it to disk and
    renames it over `path`: a reader (or a resumed run) sees the old file or the new one, never a
    half-written one, whenever the process is stopped."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # the rename itself
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def load(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    try:
        ck = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises several kinds for a damaged or foreign file
        raise ValueError(f"{p}: not a readable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ck, dict) or "kind" not in ck or "ema" not in ck:
        raise ValueError(f"{p}: not a gsimg training checkpoint (no kind / EMA weights)")
    return ck


def arch(ck: dict) -> dict:
    """The architecture settings of a checkpoint of either layout."""
    if ck.get("format") == FORMAT:
        return dict(ck["config"]["arch"])
    return dict(ck["config"])


def ema_model(ck: dict):
    """The checkpoint's EMA weights (what is exported and evaluated) in a model, eval mode."""
    model = M.build(ck["kind"], arch(ck))
    model.load_state_dict(ck["ema"])
    return model.eval()


def load_ema(path: str | Path):
    ck = load(path)
    return ema_model(ck), ck
