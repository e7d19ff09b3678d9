#!/usr/bin/env python3
"""A real GTK viewer shows a .gsi file: Eye of GNOME (eog) under Xvfb, checked on a screenshot.

Starts Xvfb (through xvfb-run) and a D-Bus session, opens the file in eog, and takes screenshots
of the root window (ImageMagick's `import`) until the picture appears or 60 s pass. The check:
eog shows a picture this small at 100 %, so the screenshot must contain `gsimg decode`'s
native-size rendering of the file exactly, row for row, somewhere on the screen (eog's "could
not load" view, an empty window or a scaled raster would not). The last screenshot is kept.

Usage: eog_test.py FILE.gsi SCREENSHOT.png   (environment: GSIMG, GDK_PIXBUF_MODULE_FILE and
XDG_DATA_HOME with the loader and the MIME entry)
"""

import os
import subprocess
import sys
import time

SCREEN = (1024, 768)


def rgb_bytes(png):
    """(width, height, RGB bytes) of a picture, through ImageMagick."""
    out = subprocess.run(
        ["convert", png, "-depth", "8", "-format", "%w %h\n", "-write", "info:-", "rgb:-"],
        check=True,
        capture_output=True,
    ).stdout
    head, _, data = out.partition(b"\n")
    w, h = map(int, head.split())
    return w, h, data


def find(screen, picture):
    """The (x, y) where `picture` appears exactly in `screen`, or None."""
    sw, sh, s = screen
    pw, ph, p = picture
    row = pw * 3
    first = p[:row]
    at = s.find(first)
    while at >= 0:
        y, x3 = divmod(at, sw * 3)
        if x3 % 3 == 0 and x3 + row <= sw * 3 and y + ph <= sh:
            if all(
                s[(y + r) * sw * 3 + x3 : (y + r) * sw * 3 + x3 + row] == p[r * row : (r + 1) * row]
                for r in range(ph)
            ):
                return x3 // 3, y
        at = s.find(first, at + 1)
    return None


def inner(gsi, shot):
    ref = shot + ".expected.png"
    subprocess.run([os.environ["GSIMG"], "-q", "--force", "decode", gsi, ref, "--device", "cpu"], check=True)
    picture = rgb_bytes(ref)
    log = open(shot + ".eog.log", "w")
    eog = subprocess.Popen(["eog", "--new-instance", gsi], stdout=log, stderr=subprocess.STDOUT)
    found = None
    try:
        deadline = time.time() + 60
        while time.time() < deadline and found is None:
            time.sleep(1)
            if eog.poll() is not None:
                break
            if subprocess.run(["import", "-window", "root", shot], capture_output=True).returncode:
                continue
            found = find(rgb_bytes(shot), picture)
    finally:
        eog.terminate()
        try:
            eog.wait(10)
        except subprocess.TimeoutExpired:
            eog.kill()
    if found is None:
        print("FAIL eog did not show the picture (screenshot: %s, eog log: %s.eog.log)" % (shot, shot))
        sys.exit(1)
    print("ok   eog shows the %dx%d picture pixel for pixel at %s (screenshot: %s)" % (picture[0], picture[1], found, shot))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--inner":
        inner(sys.argv[2], sys.argv[3])
    else:
        gsi, shot = sys.argv[1], sys.argv[2]
        cmd = [
            "xvfb-run", "-a", "-s", "-screen 0 %dx%dx24" % SCREEN,
            "dbus-run-session", "--",
            sys.executable, os.path.abspath(__file__), "--inner", gsi, shot,
        ]
        sys.exit(subprocess.run(cmd).returncode)
