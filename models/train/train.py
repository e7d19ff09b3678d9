"""Resumable training of gsimg's encoders (models.py) on the GPU machine, in time-boxed chunks.

    PYTHONUNBUFFERED=1 python models/train/train.py --model upscale --data data/pack \
        --resume models/ckpt/upscale.pt --out $OUT/upscale --minutes 9

Each call trains for --minutes of wall time (data loading, steps and validation included; final
evaluation, checkpointing excluded), then writes under --out:
  <model>.pt      weights (fp32), EMA weights (fp32), step, RNG states, config, compact's λ;
  <model>_opt.pt  Adam moments (bf16, to keep the files small; resuming works without it too);
  <model>.log     one JSON line per log interval / validation.
The learning-rate schedule (warm-up, cosine to zero) is over --total-steps, fixed at the first
call, so later calls continue one schedule. Validation uses data/val only.

Data: every image under --data (png/webp/jpg/jpeg/bmp, also inside .tar/.tar.gz archives, or
uint8 arrays in .npz/.npy files), split into train/val by a path component named "val"
(anything else is training data). The images live on the GPU as uint8; patches are cut, flipped,
transposed and rescaled there.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models as M  # noqa: E402

IMG_EXT = (".png", ".webp", ".jpg", ".jpeg", ".bmp")


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------
def _decode(b: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(b))
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_images(root: str):
    """Returns ({'train': [HxWx3 uint8], 'val': [...]}, names)."""
    out = {"train": [], "val": []}
    names = {"train": [], "val": []}

    def add(path: str, arr):
        split = "val" if "val" in Path(path).parts or "/val/" in path or path.startswith("val/") else "train"
        out[split].append(arr)
        names[split].append(path)

    for p in sorted(Path(root).rglob("*")):
        if p.is_dir():
            continue
        s = str(p.relative_to(root))
        low = s.lower()
        if low.endswith(IMG_EXT):
            add(s, _decode(p.read_bytes()))
        elif low.endswith((".tar", ".tar.gz", ".tgz", ".tar.zst")):
            with tarfile.open(p) as tf:
                for m in sorted(tf.getmembers(), key=lambda m: m.name):
                    if m.isfile() and m.name.lower().endswith(IMG_EXT):
                        add(m.name, _decode(tf.extractfile(m).read()))
        elif low.endswith(".npz"):
            z = np.load(p, allow_pickle=False)
            for k in sorted(z.files):
                a = z[k]
                if a.dtype == np.uint8 and a.ndim == 3 and a.shape[-1] == 3:
                    add(f"{s}/{k}", a)
        elif low.endswith(".npy"):
            a = np.load(p, allow_pickle=False)
            if a.dtype == np.uint8 and a.ndim == 3 and a.shape[-1] == 3:
                add(s, a)
    return out, names


class Patches:
    """Random training patches from GPU-resident uint8 images."""

    def __init__(self, images, device, gen: torch.Generator):
        self.imgs = [torch.from_numpy(a).to(device).permute(2, 0, 1).contiguous() for a in images]
        self.sizes = [(t.shape[1], t.shape[2]) for t in self.imgs]
        self.w = torch.tensor([h * w for h, w in self.sizes], dtype=torch.float64)  # by area
        self.minside = torch.tensor([min(h, w) for h, w in self.sizes])
        self.gen = gen
        self.device = device

    def crops(self, n: int, size: int, zoom_max: float = 1.0, zoom_cap: int = 0) -> torch.Tensor:
        """n crops of size × size in [0, 1] (float32). With zoom_max > 1 a crop of up to
        zoom_max·size is cut and antialias-downscaled to size (multi-scale data), per batch.
        zoom_cap > 0 caps the cut crop's side (never below size), so that a strong zoom of a
        large crop does not leave only the few largest images to draw from."""
        z = 1.0 if zoom_max <= 1.0 else float(torch.empty(1).uniform_(1.0, zoom_max, generator=self.gen))
        src = max(size, int(round(size * z)))
        if zoom_cap > 0:
            src = max(size, min(src, zoom_cap))
        # only images whose short side holds the crop (never upsample a training target)
        ok = self.minside >= src
        if not bool(ok.any()):
            src = int(self.minside.max())
            ok = self.minside >= src
        idx = torch.multinomial(self.w * ok, n, replacement=True, generator=self.gen).tolist()
        out = []
        for i in idx:
            h, w = self.sizes[i]
            s = min(src, h, w)
            y = int(torch.randint(0, h - s + 1, (1,), generator=self.gen))
            x = int(torch.randint(0, w - s + 1, (1,), generator=self.gen))
            c = self.imgs[i][:, y:y + s, x:x + s]
            if s != src:
                c = F.interpolate(c[None].float(), size=(src, src), mode="bicubic", align_corners=False)[0]
            out.append(c.float())
        b = torch.stack(out) / 255.0
        if src != size:
            b = F.interpolate(b, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        # flips and transposition (the 8 symmetries of the square), per batch
        t = int(torch.randint(0, 8, (1,), generator=self.gen))
        return dihedral(b, t).clamp(0, 1).contiguous()


def dihedral(x: torch.Tensor, t: int) -> torch.Tensor:
    """Symmetry t (0–7) of the square on [..., H, W]: bit 0 flips W, bit 1 flips H, bit 2
    transposes, in that order (as gsimg's `Symmetry`)."""
    if t & 1:
        x = x.flip(-1)
    if t & 2:
        x = x.flip(-2)
    if t & 4:
        x = x.transpose(-1, -2)
    return x


def dihedral_inverse(t: int) -> int:
    """The symmetry undoing t: after a transposition the two flips trade axes."""
    return 4 | (t & 1) << 1 | (t & 2) >> 1 if t & 4 else t


def downscale(hr: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Antialiased bicubic downscale, rounded to 8 bits (the LR images of training and eval)."""
    lr = F.interpolate(hr, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
    return torch.round(lr.clamp(0, 1) * 255.0) / 255.0


def psnr(a, b, peak=1.0):
    mse = F.mse_loss(a, b).item()
    return 10 * math.log10(peak * peak / max(mse, 1e-12))


def center_crop(a: np.ndarray, s: int) -> np.ndarray:
    h, w = a.shape[:2]
    s = min(s, h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return a[y:y + s, x:x + s]


# ------------------------------------------------------------------------------------------------
# validation (data/val only)
# ------------------------------------------------------------------------------------------------
@torch.no_grad()
def validate_upscale(model, val, device, scales=(2, 3, 4), crop=192):
    res = {}
    hrs = [torch.from_numpy(center_crop(a, crop)).permute(2, 0, 1)[None].float().div(255).to(device) for a in val]
    for s in scales:
        ps, pb = [], []
        for hr in hrs:
            h, w = hr.shape[2] // s * s, hr.shape[3] // s * s
            hr_ = hr[:, :, :h, :w]
            lr = downscale(hr_, h // s, w // s)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=AUTOCAST and device.type == "cuda"):
                raw = model.raw(lr)
            sr = model.render(model.field(lr, raw), w, h).clamp(0, 1)
            bic = F.interpolate(lr, size=(h, w), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
            ps.append(psnr(sr, hr_))
            pb.append(psnr(bic, hr_))
        res[f"val_x{s}"] = round(float(np.mean(ps)), 3)
        res[f"bicubic_x{s}"] = round(float(np.mean(pb)), 3)
    return res


@torch.no_grad()
def validate_compact(model, val, device, crop=256, unroll=0, rates=()):
    """Feed-forward PSNR, presence, raw bpp and empty cells on centre crops; with `unroll`, also
    the PSNR after that many unrolled refinement steps (`val_psnr_refined`)."""
    ps, pres, empty, pr = [], [], [], []
    for a in val:
        c = center_crop(a, crop)
        h, w = c.shape[0] // 8 * 8, c.shape[1] // 8 * 8
        img = torch.from_numpy(c[:h, :w]).permute(2, 0, 1)[None].float().div(255).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=AUTOCAST and device.type == "cuda"):
            raw = model.raw(img)
        q = model.quantize(model.field(img, raw))
        rec = model.render(q, w, h, w, h).clamp(0, 1)
        ps.append(psnr(torch.round(rec * 255) / 255, img))
        pres.append(q[:, :, 8].mean().item())
        empty.append((q[:, :, 8] < 0.5).all(1).float().mean().item())
        if unroll:  # (first order: its steps take their own gradients inside)
            ref = model.refine_unrolled(q, img, unroll, rates).clamp(0, 1)
            pr.append(psnr(torch.round(ref * 255) / 255, img))
    bits = model.cfg.bits_per_gaussian()
    p = float(np.mean(pres))
    return {"val_psnr": round(float(np.mean(ps)), 3), "presence": round(p, 4),
            "raw_bpp": round(p * model.cfg.per_cell * bits / model.cfg.cell ** 2, 4),
            "empty_cells": round(float(np.mean(empty)), 4),
            **({"val_psnr_refined": round(float(np.mean(pr)), 3)} if pr else {})}


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------
# defaults of the loss switches (see main: a resumed call takes its checkpoint's values)
LOSS_DEFAULTS = {"target_presence": 0.25, "dual_step": 2e-4, "logit_margin": 0.0, "logit_penalty": 1e-2,
                 "logit_deadzone": 0.0, "deadzone_penalty": 1e-2,
                 "grad_weight_floor": 0.0, "clipped_colour_ste": False, "colour_range_penalty": 0.0, "fp32": False,
                 "unroll": 0, "unroll_weight": 1.0, "unroll_rates": "0.2,0.04,0.04,0.02",
                 "toggle_weight": 0.0, "exact_gates": False}
AUTOCAST = True  # bf16 autocast of the encoder on CUDA (--fp32 turns it off)


def lr_at(step, base, warmup, total):
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * 0.5 * (1 + math.cos(math.pi * t))


def save(path_dir: Path, name: str, model, ema, opt, state: dict):
    path_dir.mkdir(parents=True, exist_ok=True)
    # EMA weights exactly (fp32: the released model); the raw training weights as a bf16 difference
    # from them, which keeps the file at 6 bytes per parameter (it travels to the GPU machine).
    e = ema.state_dict()
    delta = {k: (v.float() - e[k].float()).to(torch.bfloat16) if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    ck = {"kind": model.kind, "config": M.config_dict(model), "ema": e, "model_delta": delta, **state}
    torch.save(ck, path_dir / f"{name}.pt")
    osd = opt.state_dict()  # its per-parameter dicts are the live ones: copy, don't modify
    osd = {"param_groups": osd["param_groups"],
           "state": {i: {k: (v.to(torch.bfloat16) if k in ("exp_avg", "exp_avg_sq") else v) for k, v in st.items()}
                     for i, st in osd["state"].items()}}
    torch.save(osd, path_dir / f"{name}_opt.pt")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["upscale", "compact"], required=True)
    ap.add_argument("--data", default="data/pack")
    ap.add_argument("--resume", default="")
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=9.0)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: time only)")
    ap.add_argument("--total-steps", type=int, default=0, help="schedule length (kept by later calls unless given again)")
    ap.add_argument("--lr", type=float, default=0)
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--patch", type=int, default=0, help="input patch side")
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--val-every", type=int, default=2000)
    ap.add_argument("--log-every", type=int, default=200)
    ap.add_argument("--target-presence", type=float, default=None,
                    help="compact: mean presence aimed at (first call sets it, default 0.25; a resumed call keeps the checkpoint's)")
    ap.add_argument("--config", default="{}", help="JSON model config (first call only)")
    ap.add_argument("--init-from", default="",
                    help="compact, first call only: warm start from this checkpoint's EMA weights (see CompactNet.init_from)")
    ap.add_argument("--mse-weight", type=float, default=None,
                    help="loss = L1 + w·MSE (both models; the checkpoint keeps it, a flag overrides it; PSNR is an MSE metric)")
    # The loss switches below default to None: a first call then takes LOSS_DEFAULTS, a resumed
    # call the values stored in its checkpoint (an explicit value overrides, with a warning).
    ap.add_argument("--dual-step", type=float, default=None,
                    help="compact: λ += step·(fraction present − target) each step (default 2e-4)")
    ap.add_argument("--logit-margin", type=float, default=None,
                    help="compact: penalize presence logits beyond ±margin (0, the default: off), so the gates stay trainable")
    ap.add_argument("--logit-penalty", type=float, default=None,
                    help="compact: weight of mean(relu(|logit| − margin)²) (default 1e-2)")
    ap.add_argument("--logit-deadzone", type=float, default=None,
                    help="compact: penalize presence logits within ±deadzone of 0 (0, the default: off), so "
                         "that the gates settle clearly on one side of the decision instead of at it")
    ap.add_argument("--deadzone-penalty", type=float, default=None,
                    help="compact: weight of mean(relu(deadzone − |logit|)²) (default 1e-2)")
    ap.add_argument("--toggle-weight", type=float, default=None,
                    help="compact: weight of a BCE on the presence logits whose target is what switching "
                         "each gate alone does to the loss, exactly, against λ's saving (default 0: off; "
                         "models/README.md §7)")
    ap.add_argument("--exact-gates", action=argparse.BooleanOptionalAction, default=None,
                    help="compact: the presence gates' gradient is what switching each gate alone does "
                         "to the loss, exactly (gsrender.toggle_costs), in place of the straight-through "
                         "derivative at the gate's state (models/README.md §7)")
    ap.add_argument("--unroll", type=int, default=None,
                    help="compact: also train on the picture after this many unrolled refinement "
                         "steps (CompactNet.refine_unrolled; default 0: off)")
    ap.add_argument("--unroll-weight", type=float, default=None,
                    help="compact: weight of the refined picture's loss (default 1)")
    ap.add_argument("--unroll-rates", default=None,
                    help="compact: largest step per unrolled step for position px, log2 sigma, "
                         "radians, colour (default 0.2,0.04,0.04,0.02: gsimg's Adam step sizes; "
                         "4x those made the picture worse, models/README.md section 7)")
    ap.add_argument("--grad-weight-floor", type=float, default=None,
                    help="floor on the weight sum in the gradient of the normalization (gsrender.GRAD_MIN_WEIGHT_SUM; default 0)")
    ap.add_argument("--fp32", action=argparse.BooleanOptionalAction, default=None,
                    help="no bf16 autocast in the encoder")
    ap.add_argument("--clipped-colour-ste", action=argparse.BooleanOptionalAction, default=None,
                    help="compact: no gradient through the colour quantizer's clamp (see CompactNet.quantize)")
    ap.add_argument("--colour-range-penalty", type=float, default=None,
                    help="compact: weight of CompactNet.colour_excess (colours outside the file's ranges; default 0)")
    ap.add_argument("--group-norms", action="store_true",
                    help="log the largest pre-clip gradient norm of each top-level module per interval")
    ap.add_argument("--scale-min", type=float, default=1.0,
                    help="upscale: smallest training scale (batches draw U(scale-min, 4) or U(4, 8))")
    ap.add_argument("--large-scale-frac", type=float, default=0.2,
                    help="upscale: fraction of batches at scales 4 to 8")
    ap.add_argument("--zoom-max", type=float, default=2.0,
                    help="upscale: HR crops are cut at up to this many times their size and downscaled "
                         "(per batch; give it again on every call)")
    ap.add_argument("--zoom-cap", type=int, default=0,
                    help="upscale: the largest side of a cut crop before that downscale (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--anneal", action="store_true",
                    help="last call: cosine from the current learning rate to 0 over this call's time")
    ap.add_argument("--save-every-min", type=float, default=3.0, help="intermediate checkpoints")
    args = ap.parse_args()
    t_start = time.time()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ck = torch.load(args.resume, map_location="cpu", weights_only=False) if args.resume and Path(args.resume).exists() else None
    # the loss switches: explicit, else the checkpoint's, else the defaults
    # (older checkpoints kept only the target, at the top level)
    stored = {k: ck[k] for k in ("target_presence",) if k in (ck or {})} | (ck or {}).get("loss_args", {})
    for k, default in LOSS_DEFAULTS.items():
        given = getattr(args, k)
        if given is None:
            setattr(args, k, stored.get(k, default))
        elif k in stored and stored[k] != given:
            print(f"warning: --{k.replace('_', '-')} is {given} in this call, {stored[k]} in the checkpoint")
    unroll_rates = [float(v) for v in str(args.unroll_rates).split(",")]
    if len(unroll_rates) != 4:
        sys.exit("--unroll-rates: four numbers (position, log2 sigma, rotation, colour)")
    global AUTOCAST
    AUTOCAST = device.type == "cuda" and not args.fp32
    if args.grad_weight_floor > 0:
        M.gr.set_grad_weight_floor(args.grad_weight_floor)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    kind = args.model
    cfg = ck["config"] if ck else json.loads(args.config)
    if not ck and args.init_from:  # warm start: the source's architecture, with --config's changes
        cfg = {**torch.load(args.init_from, map_location="cpu", weights_only=False)["config"], **cfg}
    model = M.build(kind, cfg).to(device)
    ema = M.build(kind, cfg).to(device)
    if kind == "compact":
        model.clipped_colour_ste = args.clipped_colour_ste
    defaults = {"upscale": dict(lr=4e-4, batch=32, patch=48, total=200_000),
                "compact": dict(lr=3e-4, batch=16, patch=128, total=120_000)}[kind]
    base_lr = args.lr or (ck or {}).get("base_lr") or defaults["lr"]
    batch = args.batch or (ck or {}).get("batch") or defaults["batch"]
    patch = args.patch or (ck or {}).get("patch") or defaults["patch"]
    total = args.total_steps or (ck or {}).get("total_steps") or defaults["total"]
    opt = torch.optim.Adam(model.parameters(), lr=base_lr, betas=(0.9, 0.99))
    step, lam, rewarm_from = 0, 0.0, None
    gen = torch.Generator()
    if ck:
        ema.load_state_dict(ck["ema"])
        if "model" in ck:
            model.load_state_dict(ck["model"])
        elif "model_delta" in ck:
            model.load_state_dict({k: (ck["ema"][k].float() + d.float()) if d.is_floating_point() else d
                                   for k, d in ck["model_delta"].items()})
        else:  # an EMA-only copy (pack_chunk.sh EMA_ONLY): training goes on from the EMA weights
            print("resume: no raw weights in the checkpoint; training resumes from its EMA weights")
            model.load_state_dict(ck["ema"])
        step = ck["step"]
        lam = ck.get("lambda", 0.0)
        gen.set_state(ck["rng_gen"])
        torch.set_rng_state(ck["rng_torch"])
        op = Path(args.resume).with_name(Path(args.resume).stem + "_opt.pt")
        if op.exists():
            osd = torch.load(op, map_location="cpu", weights_only=False)
            for s in osd["state"].values():
                for k in ("exp_avg", "exp_avg_sq"):
                    if k in s:
                        s[k] = s[k].float()
            opt.load_state_dict(osd)
        else:  # fresh Adam moments: ramp the learning rate up again over --warmup/2 steps
            rewarm_from = step
        print(f"resumed {args.resume} at step {step} (optimizer state: {op.exists()})")
    else:
        gen.manual_seed(args.seed)
        torch.manual_seed(args.seed)
        if args.init_from:
            src = torch.load(args.init_from, map_location="cpu", weights_only=False)
            model.init_from({k: v.float() for k, v in src["ema"].items()}, src["config"])
            lam = float(src.get("lambda", 0.0))  # its rate multiplier is a good first guess
            print(f"warm start from {args.init_from} (step {src['step']}, config {src['config']})")
        ema.load_state_dict(model.state_dict())
    mse_w = args.mse_weight if args.mse_weight is not None else (ck or {}).get("mse_weight", 0.0)
    # a resumed call keeps the rate target it was trained for (a call 12 resumed without it fell
    # back to 0.25 and drifted to twice its rate, models/README.md §5)
    target = args.target_presence
    loss_args = {k: getattr(args, k) for k in LOSS_DEFAULTS}  # saved in every checkpoint
    for p in ema.parameters():
        p.requires_grad_(False)
    model.train()
    ema.eval()
    nparams = sum(p.numel() for p in model.parameters())

    imgs, names = load_images(args.data)
    if not imgs["train"]:
        sys.exit(f"no training images under {args.data}")
    if not imgs["val"]:  # no val split shipped: hold out every 10th image
        imgs["val"] = imgs["train"][::10]
        del imgs["train"][::10]
    data = Patches(imgs["train"], device, gen)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    logf = open(out_dir / f"{kind}.log", "a")

    def log(d):
        d = {"kind": kind, "step": step, "t": round(time.time() - t_start, 1), **d}
        print(json.dumps(d))
        logf.write(json.dumps(d) + "\n")
        logf.flush()

    log({"event": "start", "params": nparams, "train_images": len(imgs["train"]), "val_images": len(imgs["val"]),
         "train_mpix": round(sum(a.shape[0] * a.shape[1] for a in imgs["train"]) / 1e6, 2),
         "batch": batch, "patch": patch, "base_lr": base_lr, "total_steps": total, "mse_weight": mse_w, "target_presence": target, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
         "config": M.config_dict(model)})

    def save_state(where=out_dir):
        save(where, kind, model, ema, opt, {"step": step, "lambda": lam, "best_val": best, "rng_gen": gen.get_state(),
                                            "rng_torch": torch.get_rng_state(), "base_lr": base_lr,
                                            "batch": batch, "patch": patch, "total_steps": total,
                                            "mse_weight": mse_w, "target_presence": target,
                                            "loss_args": loss_args})

    def validate():
        if kind == "upscale":
            return validate_upscale(ema, imgs["val"], device)
        return validate_compact(ema, imgs["val"], device, unroll=args.unroll, rates=unroll_rates)

    t_saved = time.time()
    anneal_from = None
    ema_params = list(ema.parameters())
    model_params = list(model.parameters())
    budget = args.minutes * 60
    t_loop = time.time()
    acc, n_acc, t_last, steps_this_call = 0.0, 0, time.time(), 0
    skipped = 0
    gmax = 0.0  # largest gradient norm (before clipping) of the log interval
    gmax_group = {}  # the same per top-level module (--group-norms)
    best = float((ck or {}).get("best_val", -1.0))  # carried across calls in the checkpoint
    while True:
        if time.time() - t_start > budget or (args.max_steps and steps_this_call >= args.max_steps):
            break
        lr = lr_at(step, base_lr, args.warmup, total)
        if args.anneal:
            if anneal_from is None:
                anneal_from = (lr, time.time(), budget - (time.time() - t_start))
            lr0, ta, tspan = anneal_from
            lr = lr0 * 0.5 * (1 + math.cos(math.pi * min(1.0, (time.time() - ta) / max(1.0, tspan))))
        if rewarm_from is not None:
            lr *= min(1.0, (step - rewarm_from + 1) / max(1, args.warmup // 2))
        if time.time() - t_saved > args.save_every_min * 60:
            save_state()
            t_saved = time.time()
        for g in opt.param_groups:
            g["lr"] = lr
        extra = {}
        if kind == "upscale":
            # scale: U(scale_min, 4) mostly, U(4, 8) for a fraction of the batches (default: U(1, 4),
            # and U(4, 8) one batch in five)
            s = float(torch.empty(1).uniform_(4.0, 8.0, generator=gen)) if torch.rand(1, generator=gen) < args.large_scale_frac \
                else float(torch.empty(1).uniform_(args.scale_min, 4.0, generator=gen))
            p_lr = patch if s <= 4.0 else (2 * patch) // 3  # keeps the HR crop within the images
            hr_side = max(p_lr, int(round(p_lr * s)))
            hr = data.crops(batch, hr_side, zoom_max=args.zoom_max, zoom_cap=args.zoom_cap)
            lr_img = downscale(hr, p_lr, p_lr)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=AUTOCAST and device.type == "cuda"):
                raw = model.raw(lr_img)
            out = model.render(model.field(lr_img, raw), hr_side, hr_side)
            loss = F.l1_loss(out, hr)
            if mse_w:
                loss = loss + mse_w * F.mse_loss(out, hr)
        else:
            img = data.crops(batch, patch, zoom_max=2.0)
            img = torch.round(img * 255) / 255
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=AUTOCAST and device.type == "cuda"):
                raw = model.raw(img)
            field = model.field(img, raw)
            q = model.quantize(field, gate_grad=not args.exact_gates)
            out = model.render(q, patch, patch, patch, patch)
            l1 = F.l1_loss(out, img)
            mse = F.mse_loss(out, img)
            pres = field[:, :, 8].mean()
            gates = field[:, :, 8] >= 0.5
            hard = gates.float().mean().item()
            loss = l1 + mse_w * mse + lam * pres
            if args.unroll > 0:
                # the picture a few refinement steps make of this field: rewards starts that
                # refine well (where v3's large round Gaussians on flat areas did not)
                ref = model.refine_unrolled(q, img, args.unroll, unroll_rates)
                l1_ref = F.l1_loss(ref, img)
                loss = loss + args.unroll_weight * (l1_ref + mse_w * F.mse_loss(ref, img))
                extra_ref = {"l1_refined": l1_ref.item()}
            else:
                extra_ref = {}
            if args.exact_gates or args.toggle_weight > 0:
                # The straight-through gradient judges a gate by a derivative at its state and keeps
                # Gaussians whose removal would lower the loss (the per-cell floor, models/README.md
                # §7). What each gate is worth instead, exactly, in the loss's units:
                worth = model.gate_worth(q, img, mse_w)
                on = q[:, :, 8].detach() > 0.5
                keep = (worth > lam / on.numel()).float()  # against what λ charges for one slot
                if args.exact_gates:
                    # that worth as each presence's gradient (λ's charge comes from the rate term);
                    # the term's value is zero, so the logged loss stays comparable
                    t = (field[:, :, 8] * worth.detach()).sum()
                    loss = loss - (t - t.detach())
                if args.toggle_weight > 0:
                    # or as the target of a BCE beside the straight-through gradient
                    loss = loss + args.toggle_weight * F.binary_cross_entropy_with_logits(raw[0][:, :, 8].float(), keep)
                extra_ref = {**extra_ref, "toggle_off": (on & (keep < 0.5)).float().sum().item() / max(1, int(on.sum())),
                             "toggle_on": (~on & (keep > 0.5)).float().sum().item() / max(1, int((~on).sum()))}
            excess = model.colour_excess(field)
            if args.colour_range_penalty > 0:
                loss = loss + args.colour_range_penalty * excess
            logit = raw[0][:, :, 8].float()  # the presence logits
            if args.logit_margin > 0:
                # a saturated gate (|logit| ≫ 1) gets no gradient through the sigmoid: it can
                # never flip, and the presence pattern freezes (v2: one Gaussian in every cell)
                loss = loss + args.logit_penalty * F.relu(logit.abs() - args.logit_margin).square().mean()
            if args.logit_deadzone > 0:
                # v3's logits gathered at 0 (models/README.md §5), so that which side of the
                # decision they land on depended on rounding: push them out of a band around it
                loss = loss + args.deadzone_penalty * F.relu(args.logit_deadzone - logit.abs()).square().mean()
            # dual ascent on λ towards the target mean presence (hard gates)
            lam = max(0.0, lam + args.dual_step * (hard - target))
            extra = {"l1": l1.item(), "presence": hard, "lambda": lam,
                     "empty_cells": (~gates.any(1)).float().mean().item(),
                     "raw_max": raw[0].detach().abs().max().item(),
                     "colour_excess": excess.item(),
                     "near_zero": (logit.detach().abs() < 0.25).float().mean().item(), **extra_ref}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.group_norms:
            for name, mod in model.named_children():
                gs = [p.grad for p in mod.parameters() if p.grad is not None]
                if gs:
                    n = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gs))))
                    if math.isfinite(n):
                        gmax_group[name] = max(gmax_group.get(name, 0.0), n)
        gnorm = torch.nn.utils.clip_grad_norm_(model_params, 1.0)
        if torch.isfinite(gnorm):
            gmax = max(gmax, float(gnorm))
        # A non-finite gradient (e.g. a pixel that no present Gaussian reaches: its weight sum
        # is clamped to 2^-40 and the gradient through it overflows) would turn every weight
        # into NaN through the clip: skip that step instead (counted in the log).
        if torch.isfinite(gnorm):
            opt.step()
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, model_params, 1.0 - args.ema)
        else:
            skipped += 1
        step += 1
        steps_this_call += 1
        acc += loss.item() if step % 10 == 0 else 0.0
        n_acc += 1 if step % 10 == 0 else 0
        if step % args.log_every == 0:
            now = time.time()
            log({"loss": round(acc / max(1, n_acc), 5), "lr": lr, "it_s": round(args.log_every / (now - t_last), 2),
                 "skipped": skipped, "gnorm_max": round(gmax, 3),
                 **{f"gnorm_{k}": round(v, 3) for k, v in gmax_group.items()},
                 **{k: round(v, 5) for k, v in extra.items()}})
            acc, n_acc, t_last, gmax = 0.0, 0, now, 0.0
            gmax_group = {}
        if step % args.val_every == 0:
            ema.eval()
            v = validate()
            log({"event": "val", **v})
            score = v.get("val_x4", 0.0) if kind == "upscale" else v["val_psnr"]
            if kind == "compact":
                # compare states at one rate: −1.5 dB per doubling of the Gaussians kept beyond
                # the target (about the slope of PSNR against rate without refinement)
                score -= 1.5 * math.log2(max(v["presence"], 1e-6) / target)
            if score > best:  # the best validation so far survives a later collapse
                best = score
                save_state(out_dir / "best")
            t_last = time.time()
    train_s = time.time() - t_loop
    v = validate()
    log({"event": "val", "final": True, **v})
    save_state()
    log({"event": "end", "steps_this_call": steps_this_call, "train_seconds": round(train_s, 1),
         "it_s_mean": round(steps_this_call / max(1e-9, train_s), 2),
         "max_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else 0})


if __name__ == "__main__":
    main()
