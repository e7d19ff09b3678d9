"""The training loop: one configuration (`configs/*.toml`) trained to its last step.

    gsimg-train train configs/compact.toml --out runs/compact

writes into the output folder
  checkpoint.pt  the last checkpoint (every `run.save_every` steps, at the end, and when the
                 process gets SIGTERM or SIGINT), written atomically;
  best.pt        the EMA weights of the best validation so far (same layout);
  log.jsonl      one JSON line per log interval, validation and start / stop;
  config.toml    the resolved configuration (every setting, defaults included).
Running the same command again resumes from checkpoint.pt: same weights, optimizer moments,
rate multiplier, random generators and so the same patches, so an interrupted run continues as
if it had not stopped (bit for bit on the CPU). A configuration that differs from the
checkpoint's, or other training pictures, is refused unless forced. Time limits belong to the
caller (e.g. `timeout -s TERM`, which `train-chunked.sh` wraps): the loop saves and exits on
the signal.
"""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import checkpoint as C
from . import config as CFG
from . import data as D
from . import models as M

SIGNAL_EXIT = 128  # exit status after a signal: 128 + its number, as shells report it


class ResumeError(RuntimeError):
    pass


def _score(kind: str, v: dict, target: float) -> float:
    if kind == "upscale":
        return v.get("val_x4", 0.0)
    # compare states at one rate: −1.5 dB per doubling of the Gaussians kept beyond the target
    # (about the slope of PSNR against rate without refinement)
    return v["val_psnr"] - 1.5 * math.log2(max(v["presence"], 1e-6) / target)


def run(cfg: dict, out: str | Path, *, force: bool = False, device: str | None = None,
        stop_after: int = 0, quiet: bool = False) -> int:
    """Trains `cfg` into the folder `out` until `optim.steps`, resuming from its checkpoint.
    `stop_after` > 0 stops (with a checkpoint) after that many steps of this call. Returns the
    process exit status: 0 when the run stopped at its end or at `stop_after`, 128 + N after
    signal N."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ck_path = out / "checkpoint.pt"
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    kind = cfg["model"]
    ck = C.load(ck_path) if ck_path.exists() else None
    if ck is not None:
        if ck.get("format") != C.FORMAT:
            raise ResumeError(f"{ck_path}: an older checkpoint layout; start a new run with it as init_from")
        if ck["kind"] != kind:
            raise ResumeError(f"{ck_path} is a {ck['kind']} run, the configuration a {kind} one")
        diff = CFG.differences(ck["config"], cfg)
        if diff and not force:
            raise ResumeError(f"{ck_path} was trained with another configuration ("
                              + "; ".join(diff) + "); use another --out, or --force to continue with this one")
        if ck.get("complete") and ck["step"] >= cfg["optim"]["steps"]:
            if not quiet:
                print(f"{out}: the run is complete at step {ck['step']}; nothing to do")
            return 0

    imgs, names = D.load_images(cfg["data"]["path"])
    if not imgs["train"]:
        raise ResumeError(f"no training pictures under {cfg['data']['path']}")
    if not imgs["val"]:  # no val split shipped: hold out every 10th picture
        imgs["val"], names["val"] = imgs["train"][::10], names["train"][::10]
        del imgs["train"][::10], names["train"][::10]
    digest = D.digest(imgs, names)
    if ck is not None and ck.get("data_digest") != digest and not force:
        raise ResumeError(f"{ck_path} was trained on other pictures than those under {cfg['data']['path']} "
                          "(their digest differs); use --force to continue on these")

    torch.manual_seed(cfg["seed"])
    gen = torch.Generator().manual_seed(cfg["seed"])
    model = M.build(kind, cfg["arch"]).to(dev)
    ema = M.build(kind, cfg["arch"]).to(dev)
    o0 = cfg["optim"]
    opt = torch.optim.Adam(model.parameters(), lr=o0["lr"], betas=tuple(o0["betas"]))
    step, lam, best = 0, 0.0, -math.inf
    if ck is not None:
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["optimizer"])
        step, lam, best = ck["step"], ck["lambda"], ck["best_val"]
        gen.set_state(ck["rng"]["gen"])
        torch.set_rng_state(ck["rng"]["torch"])
        if dev.type == "cuda" and ck["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ck["rng"]["cuda"])
    elif cfg["init_from"]:
        src = C.load(cfg["init_from"])
        if src["kind"] != kind:
            raise ResumeError(f"init_from {cfg['init_from']} is a {src['kind']} model, not {kind}")
        state = {k: v.float() for k, v in src["ema"].items()}
        src_arch = C.arch(src)
        same = M.config_dict(M.build(kind, src_arch)) == M.config_dict(model)
        if same:
            model.load_state_dict(state)
        elif kind == "compact":
            model.init_from(state, src_arch)  # another slot count or σ range
        else:
            raise ResumeError(f"init_from {cfg['init_from']}: architecture {src_arch} differs from {cfg['arch']}")
        lam = float(src.get("lambda", 0.0))  # its rate multiplier is a good first guess
        ema.load_state_dict(model.state_dict())
    else:
        ema.load_state_dict(model.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    model.train()
    ema.eval()
    (out / "config.toml").write_text(CFG.to_toml(cfg))
    logf = open(out / "log.jsonl", "a")
    t_start = time.time()
    st = {"step": step, "lam": lam, "best": best}  # the loop's state, read by log() and state()

    def log(d):
        d = {"kind": kind, "step": st["step"], "t": round(time.time() - t_start, 1), **d}
        line = json.dumps(d)
        if not quiet:
            print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    def state(complete=False):
        return {"format": C.FORMAT, "kind": kind, "config": cfg, "step": st["step"], "complete": complete,
                "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                "lambda": st["lam"], "best_val": st["best"], "data_digest": digest,
                "rng": {"gen": gen.get_state(), "torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state() if dev.type == "cuda" else None}}

    got = []

    def on_signal(signum, _frame):
        got.append(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _loop(cfg, kind, dev, model, ema, opt, gen, imgs, st, out, log, state, got, stop_after,
                     ck is not None)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        logf.close()


def _loop(cfg, kind, dev, model, ema, opt, gen, imgs, st, out, log, state_fn, got, stop_after, resumed):
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    data = D.Patches(imgs["train"], dev, gen)
    nparams = sum(p.numel() for p in model.parameters())
    end = cfg["optim"]["steps"]
    run_cfg = cfg["run"]
    log({"event": "resume" if resumed else "start", "params": nparams, "train_images": len(imgs["train"]),
         "val_images": len(imgs["val"]),
         "train_mpix": round(sum(a.shape[0] * a.shape[1] for a in imgs["train"]) / 1e6, 2),
         "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu", "torch": torch.__version__})

    def save(path=None, complete=False):
        C.save_atomic(state_fn(complete), path or out / "checkpoint.pt")

    def validate(s):
        bf16 = s["optim"]["bf16"]
        if kind == "upscale":
            return D.validate_upscale(ema, imgs["val"], dev, bf16=bf16)
        return D.validate_compact(ema, imgs["val"], dev, unroll=s["loss"]["unroll"], rates=s["loss"]["unroll_rates"],
                                  bf16=bf16)

    model_params = list(model.parameters())
    ema_params = list(ema.parameters())
    acc, n_acc, t_last, skipped, gmax, gmax_group = 0.0, 0, time.time(), 0, 0.0, {}
    done_here = 0
    while st["step"] < end:
        if got:
            save()
            log({"event": "stopped", "signal": got[0], "message": "checkpoint saved; run the same command to resume"})
            return SIGNAL_EXIT + got[0]
        if stop_after and done_here >= stop_after:
            save()
            log({"event": "stopped", "after_steps": done_here})
            return 0
        step = st["step"]
        s = CFG.at_step(cfg, step)
        o, L, A = s["optim"], s["loss"], s["augment"]
        for p in cfg["phase"]:
            if p["from_step"] == step and p["reset_optimizer"]:
                opt.state.clear()  # fresh Adam moments from this step on
        lr = CFG.lr_at(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr
            g["betas"] = tuple(o["betas"])
        M.gr.set_grad_weight_floor(L["grad_weight_floor"])
        autocast = o["bf16"] and dev.type == "cuda"
        extra = {}
        if kind == "upscale":
            sc = float(torch.empty(1).uniform_(4.0, 8.0, generator=gen)) \
                if torch.rand(1, generator=gen) < A["large_scale_frac"] \
                else float(torch.empty(1).uniform_(A["scale_min"], 4.0, generator=gen))
            p_lr = o["patch"] if sc <= 4.0 else (2 * o["patch"]) // 3  # keeps the HR crop within the pictures
            hr_side = max(p_lr, int(round(p_lr * sc)))
            hr = data.crops(o["batch"], hr_side, zoom_max=A["zoom_max"], zoom_cap=A["zoom_cap"])
            lr_img = D.downscale(hr, p_lr, p_lr)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                raw = model.raw(lr_img)
            rendered = model.render(model.field(lr_img, raw), hr_side, hr_side)
            loss = F.l1_loss(rendered, hr)
            if L["mse_weight"]:
                loss = loss + L["mse_weight"] * F.mse_loss(rendered, hr)
        else:
            patch = o["patch"]
            model.clipped_colour_ste = L["clipped_colour_ste"]
            img = data.crops(o["batch"], patch, zoom_max=A["zoom_max"], zoom_cap=A["zoom_cap"])
            img = torch.round(img * 255) / 255
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                raw = model.raw(img)
            field = model.field(img, raw)
            q = model.quantize(field, gate_grad=not L["exact_gates"])
            rendered = model.render(q, patch, patch, patch, patch)
            l1 = F.l1_loss(rendered, img)
            mse_w = L["mse_weight"]
            loss = l1 + mse_w * F.mse_loss(rendered, img) + st["lam"] * field[:, :, 8].mean()
            gates = field[:, :, 8] >= 0.5
            hard = gates.float().mean().item()
            if L["unroll"] > 0:
                # the picture a few refinement steps make of this field: rewards starts that refine well
                ref = model.refine_unrolled(q, img, L["unroll"], L["unroll_rates"])
                l1_ref = F.l1_loss(ref, img)
                loss = loss + L["unroll_weight"] * (l1_ref + mse_w * F.mse_loss(ref, img))
                extra["l1_refined"] = l1_ref.item()
            if L["exact_gates"] or L["toggle_weight"] > 0:
                # what each gate is worth, exactly, in the loss's units (switching it alone)
                worth = model.gate_worth(q, img, mse_w)
                on = q[:, :, 8].detach() > 0.5
                keep = (worth > st["lam"] / on.numel()).float()  # against what λ charges for one slot
                if L["exact_gates"]:
                    # that worth as each presence's gradient (λ's charge comes from the rate term);
                    # the term's value is zero, so the logged loss stays comparable
                    t = (field[:, :, 8] * worth.detach()).sum()
                    loss = loss - (t - t.detach())
                if L["toggle_weight"] > 0:
                    loss = loss + L["toggle_weight"] * F.binary_cross_entropy_with_logits(raw[0][:, :, 8].float(), keep)
                extra["toggle_off"] = (on & (keep < 0.5)).float().sum().item() / max(1, int(on.sum()))
                extra["toggle_on"] = (~on & (keep > 0.5)).float().sum().item() / max(1, int((~on).sum()))
            excess = model.colour_excess(field)
            if L["colour_range_penalty"] > 0:
                loss = loss + L["colour_range_penalty"] * excess
            logit = raw[0][:, :, 8].float()  # the presence logits
            if L["logit_margin"] > 0:  # saturated gates get no gradient: keep them movable
                loss = loss + L["logit_penalty"] * F.relu(logit.abs() - L["logit_margin"]).square().mean()
            if L["logit_deadzone"] > 0:  # keep them off the decision boundary
                loss = loss + L["deadzone_penalty"] * F.relu(L["logit_deadzone"] - logit.abs()).square().mean()
            st["lam"] = max(0.0, st["lam"] + L["dual_step"] * (hard - L["target_presence"]))
            extra.update({"l1": l1.item(), "presence": hard, "lambda": st["lam"],
                          "empty_cells": (~gates.any(1)).float().mean().item(),
                          "raw_max": raw[0].detach().abs().max().item(), "colour_excess": excess.item(),
                          "near_zero": (logit.detach().abs() < 0.25).float().mean().item()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg["run"]["group_norms"]:
            for name, mod in model.named_children():
                gs = [p.grad for p in mod.parameters() if p.grad is not None]
                if gs:
                    n = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(gs))))
                    if math.isfinite(n):
                        gmax_group[name] = max(gmax_group.get(name, 0.0), n)
        gnorm = torch.nn.utils.clip_grad_norm_(model_params, o["grad_clip"])
        # A non-finite gradient would turn every weight into NaN through the clip: skip that step
        if torch.isfinite(gnorm):
            gmax = max(gmax, float(gnorm))
            opt.step()
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, model_params, 1.0 - o["ema"])
        else:
            skipped += 1
        st["step"] = step = step + 1
        done_here += 1
        if step % 10 == 0:
            acc, n_acc = acc + loss.item(), n_acc + 1
        if step % run_cfg["log_every"] == 0:
            now = time.time()
            log({"loss": round(acc / max(1, n_acc), 5), "lr": lr,
                 "it_s": round(run_cfg["log_every"] / max(1e-9, now - t_last), 2), "skipped": skipped,
                 "gnorm_max": round(gmax, 3), **{f"gnorm_{k}": round(v, 3) for k, v in gmax_group.items()},
                 **{k: round(v, 5) for k, v in extra.items()}})
            acc, n_acc, t_last, gmax, gmax_group = 0.0, 0, now, 0.0, {}
        if step % run_cfg["val_every"] == 0 and step < end:
            v = validate(s)
            log({"event": "val", **v})
            score = _score(kind, v, L["target_presence"])
            if score > st["best"]:  # the best validation so far survives a later collapse
                st["best"] = score
                save(out / "best.pt")
            t_last = time.time()
        if step % run_cfg["save_every"] == 0 and step < end:
            save()
    s = CFG.at_step(cfg, end - 1)
    v = validate(s)
    log({"event": "val", "final": True, **v})
    score = _score(kind, v, s["loss"]["target_presence"])
    if score > st["best"]:
        st["best"] = score
        save(out / "best.pt")
    save(complete=True)
    log({"event": "end", "max_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if dev.type == "cuda" else 0})
    return 0
