"""ONNX export contract checks: ONNX Runtime (CPU) vs PyTorch on random inputs of two sizes
(max abs diff ≤ 1e-4), shapes, names and metadata.

    python -m pytest models/train/tests/test_onnx.py -q

Checks the committed models/{upscale,compact}.onnx against their checkpoints in models/ckpt/ when
both exist, and always checks the export path itself on freshly initialised models.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gsimg_train import export as E
from gsimg_train import models as M

REPO = Path(__file__).resolve().parents[3]
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
    assert E.check_onnx(model, str(onnx_path), sizes=((8 * c, 8 * c * 2), (8 * c * 2, 8 * c))) <= 1e-4


def rust_contract(path: str):
    """What gsimg's loader (src/encode/network.rs, ModelInfo::from_metadata and the output check)
    demands of a model, checked here on ONNX Runtime: metadata keys, values and ranges, and the
    output shape, finiteness and presence range for inputs of whole cells."""
    import onnx
    import onnxruntime as ort

    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    kind = meta["gsimg.kind"]
    assert kind in ("upscale", "compact")
    cell, k, mult, rf = (int(meta[f"gsimg.{n}"]) for n in ("cell", "per_cell", "multiple", "receptive_field"))
    assert 1 <= cell <= 256 and 1 <= k <= 4096 and 1 <= mult <= 4096 and mult % cell == 0 and 0 <= rf <= 4096
    assert meta["gsimg.version"].strip()
    if kind == "compact":
        bits = [int(v) for v in meta["gsimg.color_bits"].split(",")]
        assert len(bits) == 3 and bits[1] == bits[2] and max(bits) <= 16
        lo = [float(v) for v in meta["gsimg.color_min"].split(",")]
        hi = [float(v) for v in meta["gsimg.color_max"].split(",")]
        assert len(lo) == len(hi) == 3 and all(a <= b for a, b in zip(lo, hi))
        for n in ("pos_bits", "scale_bits", "rot_bits"):
            assert 0 <= int(meta[f"gsimg.{n}"]) <= 16
        assert float(meta["gsimg.scale_min"]) <= float(meta["gsimg.scale_max"])
    if "gsimg.presence_threshold" in meta:
        assert 0.0 < float(meta["gsimg.presence_threshold"]) < 1.0
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"] and [o.name for o in sess.get_outputs()] == ["gaussians"]
    for h, w in ((mult * 3, mult * 5), (mult * 4, mult * 2)):
        x = np.random.default_rng(h).random((1, 3, h, w), dtype=np.float32)
        (g,) = sess.run(["gaussians"], {"image": x})
        assert g.dtype == np.float32 and g.shape == (1, k, 9, h // cell, w // cell)
        assert np.isfinite(g).all()
        assert g[:, :, 8].min() >= 0.0 and g[:, :, 8].max() <= 1.0
    return meta


def test_export_command_writes_what_gsimg_loads(tmp_path):
    """A tiny checkpoint trained by the command line, exported by the command line: the model
    meets the Rust side's contract, its checksum file matches, and an existing file is kept."""
    from test_train_resume import COMPACT, gsimg_train, pictures

    pictures(tmp_path / "data")
    cfg = tmp_path / "c.toml"
    cfg.write_text(COMPACT.format(data=tmp_path / "data", steps=5))
    gsimg_train("train", cfg, "--out", tmp_path / "run", "--quiet")
    dst = tmp_path / "tiny.onnx"
    r = subprocess.run([sys.executable, "-m", "gsimg_train", "export", str(tmp_path / "run" / "checkpoint.pt"), str(dst)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    meta = rust_contract(str(dst))
    assert meta["gsimg.train_steps"] == "5" and meta["gsimg.cell"] == "8" and meta["gsimg.per_cell"] == "4"
    import hashlib

    sha = hashlib.sha256(dst.read_bytes()).hexdigest()
    assert (tmp_path / "tiny.onnx.sha256").read_text() == f"{sha}  tiny.onnx\n"
    before = dst.read_bytes()
    r = subprocess.run([sys.executable, "-m", "gsimg_train", "export", str(tmp_path / "run" / "checkpoint.pt"), str(dst)],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "exists" in r.stderr and "Traceback" not in r.stderr
    assert dst.read_bytes() == before


@pytest.mark.parametrize("kind", ["upscale", "compact"])
def test_released_models_meet_the_rust_contract(kind):
    path = REPO / "models" / f"{kind}.onnx"
    if not path.exists():
        pytest.skip(f"{path} not present")
    rust_contract(str(path))
