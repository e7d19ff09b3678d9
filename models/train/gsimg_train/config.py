"""Training configurations: one TOML file per model (`configs/*.toml`) holds every setting of a run.

A configuration is read, merged over the defaults below, checked (unknown keys and wrong types
are errors) and stored whole in every checkpoint. Resuming compares the stored configuration
with the one given; they must agree (except the keys in `RUNTIME_KEYS`, which say where and how
often, not what is trained) unless the caller forces it.

Phases (`[[phase]]`) change settings from a given step on, so a recipe that changed course part
way (a loss switch turned on, fresh optimizer moments, a final anneal) is one file:

    [[phase]]
    from_step = 92859
    loss = { exact_gates = true }
"""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path

ARCH_DEFAULTS = {
    "upscale": {"ch": 80, "blocks": 16, "sub_offset": 0.5, "log2_sigma_min": -6.0, "log2_sigma_max": -1.0},
    "compact": {"cell": 8, "per_cell": 4, "stem": 32, "ch": 96, "blocks": 8, "res_scale": 1.0, "pos_bits": 5,
                "scale_bits": 5, "scale_min": -2.0, "scale_max": 2.25, "rot_bits": 5, "color_bits": [8, 6, 6],
                "color_min": [0.0, -0.5, -0.5], "color_max": [1.0, 0.5, 0.5], "mid": 96},
}

DEFAULTS = {
    "model": "",
    "seed": 0,
    "init_from": "",  # a checkpoint whose EMA weights start the run (fine-tuning, warm starts)
    "data": {"path": "data/pack"},
    "arch": {},
    "optim": {
        "lr": 3e-4,
        "betas": [0.9, 0.99],
        "batch": 16,
        "patch": 128,  # input patch side
        "warmup": 1000,  # linear warm-up steps
        "schedule_steps": 120000,  # the cosine schedule's length
        "steps": 120000,  # where the run ends (may stop before the schedule does)
        "ema": 0.999,
        "grad_clip": 1.0,
        "bf16": True,  # bf16 autocast of the encoder on CUDA (the renderer stays float32)
    },
    "loss": {
        "mse_weight": 0.0,  # L1 + w·MSE
        # compact: rate control by dual ascent on λ towards the mean presence `target_presence`
        "target_presence": 0.25,
        "dual_step": 2e-4,
        "logit_margin": 0.0,
        "logit_penalty": 1e-2,
        "logit_deadzone": 0.0,
        "deadzone_penalty": 1e-2,
        "grad_weight_floor": 0.0,
        "clipped_colour_ste": False,
        "colour_range_penalty": 0.0,
        "unroll": 0,
        "unroll_weight": 1.0,
        "unroll_rates": [0.2, 0.04, 0.04, 0.02],
        "toggle_weight": 0.0,
        "exact_gates": False,
    },
    "augment": {
        "zoom_max": 2.0,  # crops cut at up to this many times their side and downscaled (per batch)
        "zoom_cap": 0,  # largest side of such a cut crop (0: none)
        "scale_min": 1.0,  # upscale: batches draw the output scale from U(scale_min, 4) ...
        "large_scale_frac": 0.2,  # ... or, for this fraction of them, from U(4, 8)
    },
    "run": {
        "log_every": 200,
        "val_every": 2000,
        "save_every": 1000,  # steps between checkpoints (also written at the end and on SIGTERM/SIGINT)
        "group_norms": False,
    },
    "phase": [],
}

# keys a phase may change, by section
PHASE_SECTIONS = ("optim", "loss", "augment")
PHASE_OWN = {"from_step", "reset_optimizer", "rewarm", "anneal", "optim", "loss", "augment"}
# where and how often: may differ between a checkpoint and the configuration that resumes it
RUNTIME_KEYS = {("data", "path"), ("run", "log_every"), ("run", "val_every"), ("run", "save_every"),
                ("run", "group_norms")}


class ConfigError(ValueError):
    pass


def _check_types(user, default, where: str):
    for k, v in user.items():
        if k not in default:
            raise ConfigError(f"{where}: unknown key `{k}` (known: {', '.join(sorted(default))})")
        d = default[k]
        if isinstance(d, dict):
            if not isinstance(v, dict):
                raise ConfigError(f"{where}.{k}: expected a table")
            _check_types(v, d, f"{where}.{k}")
        elif isinstance(d, bool):
            if not isinstance(v, bool):
                raise ConfigError(f"{where}.{k}: expected true or false, got {v!r}")
        elif isinstance(d, (int, float)):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{where}.{k}: expected a number, got {v!r}")
            if isinstance(d, int) and not isinstance(d, bool) and isinstance(v, float) and not v.is_integer():
                raise ConfigError(f"{where}.{k}: expected a whole number, got {v!r}")
        elif isinstance(d, str):
            if not isinstance(v, str):
                raise ConfigError(f"{where}.{k}: expected a string, got {v!r}")
        elif isinstance(d, list):
            if not isinstance(v, list):
                raise ConfigError(f"{where}.{k}: expected a list, got {v!r}")


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _normalise(d: dict, default: dict) -> dict:
    """Ints where the default is a float become floats (so 3 and 3.0 compare equal)."""
    out = {}
    for k, v in d.items():
        dv = default.get(k)
        if isinstance(v, dict) and isinstance(dv, dict):
            out[k] = _normalise(v, dv)
        elif isinstance(dv, float) and isinstance(v, int) and not isinstance(v, bool):
            out[k] = float(v)
        else:
            out[k] = v
    return out


def resolve(user: dict) -> dict:
    """A user's configuration (a parsed TOML file) merged over the defaults and checked."""
    if not isinstance(user.get("model"), str) or user["model"] not in ARCH_DEFAULTS:
        raise ConfigError("`model` must be \"upscale\" or \"compact\"")
    kind = user["model"]
    default = copy.deepcopy(DEFAULTS)
    default["arch"] = copy.deepcopy(ARCH_DEFAULTS[kind])
    if kind == "upscale":  # the upscaler's own optimisation defaults
        default["optim"].update(lr=4e-4, batch=32, patch=48, schedule_steps=200000, steps=200000)
    phases = user.get("phase", [])
    if not isinstance(phases, list):
        raise ConfigError("`phase` must be an array of tables ([[phase]])")
    _check_types({k: v for k, v in user.items() if k != "phase"}, {k: v for k, v in default.items() if k != "phase"},
                 "config")
    cfg = _normalise(_merge(default, {k: v for k, v in user.items() if k != "phase"}), default)
    out_phases = []
    last = 0
    for i, p in enumerate(phases):
        where = f"phase[{i}]"
        if not isinstance(p, dict):
            raise ConfigError(f"{where}: expected a table")
        unknown = set(p) - PHASE_OWN
        if unknown:
            raise ConfigError(f"{where}: unknown key `{sorted(unknown)[0]}` (known: {', '.join(sorted(PHASE_OWN))})")
        fs = p.get("from_step")
        if not isinstance(fs, int) or isinstance(fs, bool) or fs <= last:
            raise ConfigError(f"{where}.from_step: a whole number above the previous phase's ({last})")
        last = fs
        q = {"from_step": fs, "reset_optimizer": bool(p.get("reset_optimizer", False)),
             "rewarm": int(p.get("rewarm", 0)), "anneal": bool(p.get("anneal", False))}
        for key in ("reset_optimizer", "anneal"):
            if key in p and not isinstance(p[key], bool):
                raise ConfigError(f"{where}.{key}: expected true or false")
        if not isinstance(q["rewarm"], int) or q["rewarm"] < 0:
            raise ConfigError(f"{where}.rewarm: a whole number of steps >= 0")
        for sec in PHASE_SECTIONS:
            if sec in p:
                if not isinstance(p[sec], dict):
                    raise ConfigError(f"{where}.{sec}: expected a table")
                _check_types(p[sec], default[sec], f"{where}.{sec}")
                q[sec] = _normalise(p[sec], default[sec])
        out_phases.append(q)
    cfg["phase"] = out_phases
    o = cfg["optim"]
    if o["steps"] <= 0 or o["schedule_steps"] <= 0 or o["batch"] <= 0 or o["patch"] <= 0:
        raise ConfigError("optim: steps, schedule_steps, batch and patch must be positive")
    if any(p["from_step"] >= o["steps"] for p in out_phases):
        raise ConfigError(f"a phase starts at or after optim.steps = {o['steps']}")
    if len(cfg["loss"]["unroll_rates"]) != 4:
        raise ConfigError("loss.unroll_rates: four numbers (position, log2 sigma, rotation, colour)")
    if kind == "compact" and o["patch"] % cfg["arch"]["cell"]:
        raise ConfigError(f"optim.patch must be a multiple of arch.cell = {cfg['arch']['cell']}")
    if cfg["run"]["save_every"] <= 0 or cfg["run"]["log_every"] <= 0 or cfg["run"]["val_every"] <= 0:
        raise ConfigError("run: log_every, val_every and save_every must be positive")
    return cfg


def parse_value(text: str):
    """A command-line value in TOML syntax (`1e-4`, `true`, `[1, 2]`, `"x"`); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(user: dict, sets: list[str]) -> dict:
    """`section.key=value` overrides (`--set optim.lr=1e-4`) applied to a parsed file."""
    user = copy.deepcopy(user)
    for s in sets:
        if "=" not in s:
            raise ConfigError(f"--set {s}: expected KEY=VALUE, e.g. optim.lr=1e-4")
        key, val = s.split("=", 1)
        parts = key.strip().split(".")
        d = user
        for p in parts[:-1]:
            d = d.setdefault(p, {})
            if not isinstance(d, dict):
                raise ConfigError(f"--set {s}: `{p}` is not a table")
        d[parts[-1]] = parse_value(val.strip())
    return user


def load(path: str | Path, sets: list[str] | None = None) -> dict:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read {p}: {e.strerror}") from e
    try:
        user = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: {e}") from e
    return resolve(apply_overrides(user, sets or []))


def at_step(cfg: dict, step: int) -> dict:
    """The optim/loss/augment settings in force at `step` (the phases applied in order)."""
    out = {sec: copy.deepcopy(cfg[sec]) for sec in PHASE_SECTIONS}
    for p in cfg["phase"]:
        if p["from_step"] > step:
            break
        for sec in PHASE_SECTIONS:
            out[sec].update(p.get(sec, {}))
    return out


def lr_at(cfg: dict, step: int) -> float:
    """Learning rate at `step`: linear warm-up, then cosine to zero over `optim.schedule_steps`
    (with the learning rate and schedule of the phase in force). A phase with `anneal` goes from
    the rate it starts at to zero at `optim.steps` by a half cosine; `rewarm` ramps the rate up
    again over that many steps from the phase's start (after fresh optimizer moments)."""

    def base(s: int, o: dict) -> float:
        if s < o["warmup"]:
            return o["lr"] * (s + 1) / o["warmup"]
        t = min(1.0, (s - o["warmup"]) / max(1, o["schedule_steps"] - o["warmup"]))
        return o["lr"] * 0.5 * (1 + math.cos(math.pi * t))

    o = at_step(cfg, step)["optim"]
    lr = base(step, o)
    end = cfg["optim"]["steps"]
    for p in cfg["phase"]:
        if p["from_step"] > step:
            break
        if p["anneal"]:
            a = p["from_step"]
            lr = base(a, at_step(cfg, a)["optim"]) * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - a) / max(1, end - a))))
        if p["rewarm"]:
            lr *= min(1.0, (step - p["from_step"] + 1) / p["rewarm"])
    return lr


def differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Keys whose values differ between two resolved configurations, `RUNTIME_KEYS` left out."""
    out = []
    for k in sorted(set(a) | set(b)):
        key = f"{prefix}{k}"
        va, vb = a.get(k), b.get(k)
        if tuple(key.split(".")) in RUNTIME_KEYS:
            continue
        if isinstance(va, dict) and isinstance(vb, dict):
            out += differences(va, vb, key + ".")
        elif va != vb:
            out.append(f"{key}: {va!r} in the checkpoint, {vb!r} now")
    return out


def to_toml(cfg: dict) -> str:
    """A resolved configuration written back as TOML (what a checkpoint was trained with)."""

    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        return repr(v)

    lines = [f"{k} = {val(v)}" for k, v in cfg.items() if not isinstance(v, (dict, list))]
    for k, v in cfg.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {val(vv)}" for kk, vv in v.items()]
    for p in cfg.get("phase", []):
        lines += ["", "[[phase]]"] + [f"{kk} = {val(vv)}" for kk, vv in p.items()]
    return "\n".join(lines) + "\n"
