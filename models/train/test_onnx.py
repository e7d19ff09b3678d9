"""ONNX export contract checks: ONNX Runtime (CPU) vs PyTorch on random inputs of two sizes
(max abs diff ≤ 1e-4), shapes, names and metadata.

    .venv/bin/python -m pytest models/train/test_onnx.py -q

Checks the committed models/{upscale,compact}.onnx against their checkpoints in models/ckpt/ when
both exist, and always checks the export path itself on freshly initialised models.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export as E  # noqa: E402
import models as M  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
COMMON = {"gsimg.kind", "gsimg.cell", "gsimg.per_cell", "gsimg.multiple", "gsimg.receptive_field", "gsimg.version"}
COMPACT = {"gsimg.pos_bits", "gsimg.scale_bits", "gsimg.scale_min", "gsimg.scale_max", "gsimg.rot_bits",
           "gsimg.color_bits", "gsimg.color_min", "gsimg.color_max"}


def check_contract(path: str, kind: str):
    import onnx

    m = onnx.load(path)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    meta = {p.key: p.value for p in m.metadata_props}
    assert COMMON <= meta.keys()
    assert meta["gsimg.kind"] == kind
    if kind == "compact":
        assert COMPACT <= meta.keys()
        assert len(meta["gsimg.color_bits"].split(",")) == 3
    assert [i.name for i in m.graph.input] == ["image"]
    assert [o.name for o in m.graph.output] == ["gaussians"]
    return meta


@pytest.mark.parametrize("kind,cfg", [("upscale", None), ("compact", None),
                                      ("compact", {"cell": 16, "per_cell": 24, "ch": 128, "pos_bits": 6,
                                                   "scale_max": 4.25})])
def test_fresh_export(kind, cfg, tmp_path):
    torch.manual_seed(0)
    model = M.build(kind, cfg).eval()
    with torch.no_grad():  # make the head non-trivial
        for p in model.out.parameters():
            p.normal_(0, 0.05)
    path = str(tmp_path / f"{kind}.onnx")
    E.export(model, path)
    meta = check_contract(path, kind)
    c = int(meta["gsimg.cell"])
    assert E.check_onnx(model, path, sizes=((8 * c * 3, 8 * c * 5), (8 * c * 6, 8 * c * 2))) <= 1e-4
    out = model(torch.rand(1, 3, 8 * c * 3, 8 * c * 5))
    assert out.shape == (1, int(meta["gsimg.per_cell"]), 9, 8 * 3, 8 * 5)
    p = out[:, :, 8]
    assert float(p.min()) >= 0 and float(p.max()) <= 1


@pytest.mark.parametrize("kind", ["upscale", "compact"])
def test_released_model(kind):
    onnx_path = REPO / "models" / f"{kind}.onnx"
    ckpt = REPO / "models" / "ckpt" / f"{kind}.pt"
    if not onnx_path.exists():
        pytest.skip(f"{onnx_path} not built")
    check_contract(str(onnx_path), kind)
    if not ckpt.exists():
        pytest.skip(f"{ckpt} not present")
    model, _ = E.load_ema(str(ckpt))
    c = model.cfg.cell
    assert E.check_onnx(model, str(onnx_path), sizes=((8 * c * 8, 8 * c * 12), (8 * c * 17, 8 * c * 10))) <= 1e-4
