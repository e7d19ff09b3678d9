"""The `gsimg-train` command line: one subcommand per job."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line description); all but `train` and `show` take their own options
TOOLS = {
    "export": ("export", "write a checkpoint's EMA weights as an ONNX model with gsimg's contract"),
    "eval-sr": ("eval_sr", "Set5 / Set14 (or validation) PSNR of an upscale checkpoint"),
    "eval-compact": ("eval_compact", "Kodak PSNR and rate estimate of a compact checkpoint"),
    "presence-stats": ("presence_stats", "a compact checkpoint's gates and colours on pictures"),
    "oracle-upscale": ("oracle_upscale", "per-picture optimum of an upscale model's field (a bound)"),
    "fixtures": ("fixtures", "write the renderer fixtures the Rust tests compare against"),
    "bench-render": ("bench_render", "time the training renderer (CUDA GPU)"),
}


def _train(argv) -> int:
    from . import config as CFG
    from . import train as T

    ap = argparse.ArgumentParser(prog="gsimg-train train",
                                 description="Train a model from its configuration to the end; run again to resume.")
    ap.add_argument("config", help="a configuration file, e.g. models/train/configs/compact.toml")
    ap.add_argument("--out", required=True, help="run folder (checkpoint.pt, best.pt, log.jsonl, config.toml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one setting, e.g. --set data.path=/data/pack (TOML values; repeatable)")
    ap.add_argument("--force", action="store_true",
                    help="resume even if the configuration or the training pictures differ from the checkpoint's")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--stop-after", type=int, default=0, metavar="N",
                    help="stop with a checkpoint after N steps of this call (0: run to the end)")
    ap.add_argument("--quiet", action="store_true", help="log to log.jsonl only")
    a = ap.parse_args(argv)
    try:
        cfg = CFG.load(a.config, a.set)
        return T.run(cfg, a.out, force=a.force, device=a.device, stop_after=a.stop_after, quiet=a.quiet)
    except (CFG.ConfigError, T.ResumeError, FileNotFoundError, ValueError) as e:
        print(f"gsimg-train train: {e}", file=sys.stderr)
        return 2


def _show(argv) -> int:
    from . import checkpoint as C
    from . import config as CFG

    ap = argparse.ArgumentParser(prog="gsimg-train show",
                                 description="Print a configuration resolved (every setting), or a checkpoint's.")
    ap.add_argument("path", help="a .toml configuration or a .pt checkpoint")
    a = ap.parse_args(argv)
    try:
        if a.path.endswith(".toml"):
            print(CFG.to_toml(CFG.load(a.path)), end="")
            return 0
        ck = C.load(a.path)
    except (CFG.ConfigError, FileNotFoundError, ValueError) as e:
        print(f"gsimg-train show: {e}", file=sys.stderr)
        return 2
    print(f"# {a.path}: {ck['kind']} at step {ck['step']}" + (" (complete)" if ck.get("complete") else ""))
    if ck.get("format") == C.FORMAT:
        print(CFG.to_toml(ck["config"]), end="")
    else:  # a released checkpoint of the older layout: what it stores
        for k in ("config", "loss_args", "base_lr", "batch", "patch", "total_steps", "mse_weight",
                  "target_presence", "lambda"):
            if k in ck:
                print(f"# {k} = {ck[k]}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    cmds = {"train": "train a model from its configuration (resumes an interrupted run)",
            "show": "print a configuration resolved, or the one a checkpoint was trained with",
            **{k: v[1] for k, v in TOOLS.items()}}
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: gsimg-train COMMAND [ARGS]  (gsimg-train COMMAND --help for its options)\n\ncommands:")
        for k, v in cmds.items():
            print(f"  {k:<16}{v}")
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "train":
        return _train(rest)
    if cmd == "show":
        return _show(rest)
    if cmd not in TOOLS:
        print(f"gsimg-train: unknown command `{cmd}` (one of: {', '.join(cmds)})", file=sys.stderr)
        return 2
    mod = importlib.import_module(f".{TOOLS[cmd][0]}", __package__)
    r = mod.main(rest)
    return int(r or 0)
