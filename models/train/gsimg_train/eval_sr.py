"""Set5 / Set14 super-resolution evaluation of the upscale model (evaluation only: never used to
choose checkpoints or hyper-parameters).

    gsimg-train eval-sr models/ckpt/upscale.pt --bench BENCH_DIR

Protocol: HR cropped to a multiple of the scale; LR by antialiased bicubic downscaling
(torch.nn.functional.interpolate(mode='bicubic', antialias=True), the Keys kernel a = -0.5 like
MATLAB's imresize) rounded to 8 bits; output rounded to 8 bits; PSNR on Y (BT.601, 16-235:
Y = 16 + 65.481 R + 128.553 G + 24.966 B for R, G, B in [0, 1]) with `scale` pixels shaved on each
side; mean over the images of a set. Bicubic upscaling of the same LR (same interpolate call) is
measured alongside. Uses the EMA weights; renders with the training renderer (b).

`--ensemble`: geometric self-ensemble (as EDSR+ and its successors report it separately): the
LR picture in each of the 8 symmetries of the square (flips, transposition) is upscaled, each
render mapped back, and the 8 averaged before rounding. Eight times the work.
`--val DIR`: the same protocol on the centre crops (`--crop`, default 192 px; 0: the whole
pictures) of a validation folder (e.g. `data/val`) in place of Set5 / Set14, to choose by.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import checkpoint as C
from . import data as T


def y_channel(x: torch.Tensor) -> torch.Tensor:
    """[1, 3, H, W] in [0, 1] → Y in [16, 235] (float64)."""
    x = x.double()
    return 16.0 + 65.481 * x[:, 0] + 128.553 * x[:, 1] + 24.966 * x[:, 2]


def y_psnr(sr, hr, shave):
    a = y_channel(sr)[..., shave:-shave, shave:-shave]
    b = y_channel(hr)[..., shave:-shave, shave:-shave]
    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(255.0 ** 2 / mse)


def q8(x):
    return torch.round(x.clamp(0, 1) * 255) / 255


@torch.no_grad()
def upscale(model, lr, w, h):
    dev = lr.device
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        raw = model.raw(lr)
    return model.render(model.field(lr, raw), w, h)


@torch.no_grad()
def upscale_ensemble(model, lr, w, h):
    acc = None
    for t in range(8):
        lt = T.dihedral(lr, t)
        ow, oh = (h, w) if t & 4 else (w, h)
        y = T.dihedral(upscale(model, lt, ow, oh).float(), T.dihedral_inverse(t))
        acc = y if acc is None else acc + y
    return acc / 8


def evaluate(model, bench: Path, device, sets=("set5", "set14"), scales=(2, 3, 4), ensemble=False, crop=0):
    res = {}
    up = upscale_ensemble if ensemble else upscale
    for name in sets:
        files = sorted(p for p in (bench / name).iterdir() if p.suffix.lower() in (".png", ".webp", ".jpg"))
        for s in scales:
            pm, pb = [], []
            for f in files:
                a = np.asarray(Image.open(f).convert("RGB"), dtype=np.uint8)
                if crop:
                    a = T.center_crop(a, crop)
                h, w = a.shape[0] // s * s, a.shape[1] // s * s
                hr = torch.from_numpy(a[:h, :w]).permute(2, 0, 1)[None].float().div(255).to(device)
                lr = q8(F.interpolate(hr, size=(h // s, w // s), mode="bicubic", antialias=True, align_corners=False))
                sr = q8(up(model, lr, w, h))
                bic = q8(F.interpolate(lr, size=(h, w), mode="bicubic", antialias=True, align_corners=False))
                pm.append(y_psnr(sr, hr, s))
                pb.append(y_psnr(bic, hr, s))
            res[f"{name}_x{s}"] = round(float(np.mean(pm)), 3)
            res[f"{name}_x{s}_bicubic"] = round(float(np.mean(pb)), 3)
            print(f"{name} x{s}: model {np.mean(pm):.3f} dB, bicubic {np.mean(pb):.3f} dB", flush=True)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(prog="gsimg-train eval-sr", description="Set5 / Set14 (or a validation folder) PSNR of an upscale checkpoint")
    ap.add_argument("ckpt")
    ap.add_argument("--bench", default="", help="folder with set5/ and set14/ (evaluation only, never training data)")
    ap.add_argument("--scales", default="2,3,4")
    ap.add_argument("--json", default="")
    ap.add_argument("--ensemble", action="store_true", help="geometric self-ensemble (8 symmetries)")
    ap.add_argument("--val", default="", help="a validation folder in place of Set5 / Set14")
    ap.add_argument("--crop", type=int, default=192, help="--val: centre crops of this side (0: whole pictures)")
    args = ap.parse_args(argv)
    if not args.bench and not args.val:
        ap.error("give --bench (a folder with set5/ and set14/) or --val (a validation folder)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, ck = C.load_ema(args.ckpt)
    model = model.to(device).eval()
    scales = tuple(int(s) for s in args.scales.split(","))
    if args.val:
        v = Path(args.val)
        res = evaluate(model, v.parent, device, sets=(v.name,), scales=scales, ensemble=args.ensemble, crop=args.crop)
    else:
        res = evaluate(model, Path(args.bench), device, scales=scales, ensemble=args.ensemble)
    res["ensemble"] = args.ensemble
    res["step"] = ck["step"]
    print(json.dumps(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
