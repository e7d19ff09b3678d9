"""What the loader tests share: the gsimg binary and work folder from the command line, checks
that print a line each, the reference render by `gsimg decode`, and the final verdict."""

import os
import subprocess
import sys

GSIMG, WORK = sys.argv[1], sys.argv[2]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def path(name):
    return os.path.join(WORK, name)


def decode(gsi, tag, *size_args):
    """The PNG `gsimg decode` writes for `gsi` with the given size arguments (CPU renderer)."""
    out = path("%s-%s-%s.png" % (tag, os.path.basename(gsi), "_".join(size_args) or "native"))
    subprocess.run(
        [GSIMG, "-q", "--force", "decode", gsi, out, "--device", "cpu", *size_args], check=True
    )
    return out


def same_pixels(got, ref, what):
    """`got` and `ref` are (shape, bytes without row padding)."""
    check(got[0] == ref[0], "%s: %s equals gsimg decode's %s" % (what, got[0], ref[0]))
    if got[0] == ref[0]:
        diff = sum(1 for a, b in zip(got[1], ref[1]) if a != b)
        check(diff == 0, "%s: pixels equal gsimg decode byte for byte (%d differ)" % (what, diff))


def finish(what):
    if failures:
        print("%d check(s) failed" % len(failures))
        sys.exit(1)
    print("all %s checks passed" % what)
