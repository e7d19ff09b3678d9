"""Exports a checkpoint's EMA weights to ONNX with gsimg's model contract (src/encode/network.rs).

    gsimg-train export runs/compact/checkpoint.pt compact.onnx

Input `image` float32 [1, 3, H, W] (RGB in [0, 1], sRGB values), output `gaussians` float32
[1, K, 9, H/c, W/c]; opset 17, dynamic H and W; metadata_props as in the README. After writing,
the model is checked with ONNX Runtime (CPU) against PyTorch on random inputs of two sizes
(max abs diff ≤ 1e-4), see check_onnx().
"""

from __future__ import annotations

import argparse
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from . import checkpoint as C
from . import models as M

VERSION = "1"
OPSET = 17


def load_ema(ckpt_path: str):
    return C.load_ema(ckpt_path)


def export(model, path: str, extra_meta: dict | None = None):
    c = model.cfg.cell
    dummy = torch.rand(1, 3, 8 * c * 4, 8 * c * 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), path, input_names=["image"], output_names=["gaussians"],
                          dynamic_axes={"image": {2: "H", 3: "W"}, "gaussians": {3: "Hc", 4: "Wc"}},
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    m = onnx.load(path)
    # the exporter may leave the static output dims symbolic: write [1, K, 9, Hc, Wc]
    dims = m.graph.output[0].type.tensor_type.shape.dim
    for d, v in zip(dims[:3], (1, model.cfg.per_cell, 9)):
        d.ClearField("dim_param")
        d.dim_value = v
    meta = dict(model.metadata())
    meta["gsimg.version"] = VERSION
    meta["gsimg.receptive_field"] = str(M.receptive_field(M.build(model.kind, M.config_dict(model)),
                                                          (64 * model.cfg.cell if model.kind == "compact" else 160)))
    meta.update(extra_meta or {})
    del m.metadata_props[:]
    for k, v in sorted(meta.items()):
        p = m.metadata_props.add()
        p.key, p.value = k, v
    m.producer_name = "gsimg-train export"
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return meta


def check_onnx(model, path: str, sizes=((64, 96), (136, 80)), tol: float = 1e-4) -> float:
    """Max abs difference between ONNX Runtime (CPU) and PyTorch on random inputs of two sizes."""
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    worst = 0.0
    g = torch.Generator().manual_seed(0)
    for h, w in sizes:
        x = torch.rand(1, 3, h, w, generator=g)
        with torch.no_grad():
            ref = model(x).numpy()
        got = sess.run(["gaussians"], {"image": x.numpy()})[0]
        assert got.shape == ref.shape, (got.shape, ref.shape)
        d = float(np.abs(got - ref).max())
        worst = max(worst, d)
        assert d <= tol, f"ONNX Runtime vs PyTorch at {h}x{w}: {d}"
    return worst


def main(argv=None):
    ap = argparse.ArgumentParser(prog="gsimg-train export", description="Export a checkpoint's EMA weights to ONNX.")
    ap.add_argument("ckpt", help="a training checkpoint (checkpoint.pt, best.pt or a released models/ckpt/*.pt)")
    ap.add_argument("onnx", help="the ONNX file to write")
    ap.add_argument("--presence-threshold", type=float, default=None,
                    help="compact: the operating point's presence threshold (gsimg.presence_threshold; "
                         "gsimg's default 0.5), for models whose presence logits gather at the boundary")
    ap.add_argument("--force", action="store_true", help="overwrite an existing ONNX file")
    args = ap.parse_args(argv)
    dst = Path(args.onnx)
    for p in (dst, dst.with_name(dst.name + ".sha256")):
        if p.exists() and not args.force:
            raise SystemExit(f"gsimg-train export: {p} exists (use --force to overwrite it)")
    model, ck = load_ema(args.ckpt)
    extra = {"gsimg.train_steps": str(ck["step"])}
    if args.presence_threshold is not None:
        if model.kind != "compact" or not 0.0 < args.presence_threshold < 1.0:
            raise SystemExit("gsimg-train export: --presence-threshold is for compact models, above 0 and below 1")
        extra["gsimg.presence_threshold"] = repr(args.presence_threshold)
    # written beside the destination and renamed once checked: never a half-written model
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        meta = export(model, str(tmp), extra)
        c = model.cfg.cell
        d = check_onnx(model, str(tmp), sizes=((8 * c * 8, 8 * c * 12), (8 * c * 17, 8 * c * 10)))
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    sha = hashlib.sha256(dst.read_bytes()).hexdigest()
    n = sum(p.numel() for p in model.parameters())
    print(f"{dst}: kind={model.kind} params={n} step={ck['step']} bytes={dst.stat().st_size} "
          f"sha256={sha} ort-vs-torch max|diff|={d:.2e}")
    for k, v in sorted(meta.items()):
        print(f"  {k} = {v}")
    # gsimg checks a model against this file (sha256sum's format) before loading it
    side = dst.with_name(dst.name + ".sha256")
    side.write_text(f"{sha}  {dst.name}\n")
    print(f"wrote {side}")
