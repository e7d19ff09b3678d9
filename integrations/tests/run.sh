#!/usr/bin/env bash
# Desktop integration tests: the gdk-pixbuf loader (through python3-gi and
# gdk-pixbuf-thumbnailer), the shared-mime-info entry, a real GTK viewer (eog under Xvfb), the
# Qt image format plugin (QImageReader through python3-pyqt5) and the glycin loader. Nothing is
# installed system-wide but Debian packages: the C library goes to a private prefix, the loader
# into a private loaders.cache (GDK_PIXBUF_MODULE_FILE), the MIME entry into a private
# XDG_DATA_HOME, the Qt plugin into a private QT_PLUGIN_PATH. Artifacts (the screenshot,
# thumbnails) stay in target/desktop-test/.
#
# Usage: integrations/tests/run.sh [--no-apt]   (--no-apt: the packages are already there)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
T=$ROOT/target/desktop-test
start=$(date +%s)
step() { printf '\n== %s (%ds)\n' "$1" $(($(date +%s) - start)); }

# Debian packages: the loader's build (gdk-pixbuf headers), the tests' clients (python3-gi,
# GdkPixbuf's typelib, gdk-pixbuf-thumbnailer, gio), the viewer and the screenshot (eog, Xvfb,
# ImageMagick's import), D-Bus for eog, libseccomp and fontconfig for glycin, Qt 5 and PyQt5
# for the Qt plugin.
PACKAGES=(libgdk-pixbuf-2.0-dev gir1.2-gdkpixbuf-2.0 python3-gi libgdk-pixbuf2.0-bin
  shared-mime-info libglib2.0-bin eog xvfb xauth imagemagick dbus libseccomp-dev
  libfontconfig-dev make gcc g++ pkg-config qtbase5-dev qtbase5-dev-tools python3-pyqt5)
if [[ ${1:-} != --no-apt ]]; then
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    step "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

# Debian's python3, which python3-gi belongs to (not another python3 earlier on PATH).
PY=/usr/bin/python3
rm -rf "$T"
mkdir -p "$T/work" "$T/home" "$T/xdg-data"
W=$T/work

step "the CLI and the C library (cargo cinstall into a private prefix)"
cargo build --release --quiet -p gsimg-cli
GSIMG=$ROOT/target/release/gsimg
PREFIX=$T/prefix
if cargo cinstall --version >/dev/null 2>&1; then
  cargo cinstall --release -p gsimg-capi --prefix="$PREFIX" --libdir="$PREFIX/lib"
  LIBDIR=$PREFIX/lib
else
  # Without cargo-c (.ci/run installs it), link cargo build's library through a gsimg.pc of
  # the same shape, so the loader's build and tests still run.
  echo "warning: cargo-c is not installed: testing against cargo build's libgsimg_capi" >&2
  cargo build --release --quiet -p gsimg-capi
  LIBDIR=$ROOT/target/release
  mkdir -p "$PREFIX/lib/pkgconfig"
  printf 'Name: gsimg\nDescription: gsimg C API\nVersion: 0\nCflags: -I%s\nLibs: -L%s -lgsimg_capi\n' \
    "$ROOT/capi/include" "$LIBDIR" >"$PREFIX/lib/pkgconfig/gsimg.pc"
fi
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}

step "the gdk-pixbuf module, registered in a private loaders.cache"
make -s -C integrations/gdk-pixbuf BUILDDIR="$T/module" RPATH="$LIBDIR"
QUERY=$(pkg-config --variable=gdk_pixbuf_query_loaders gdk-pixbuf-2.0)
MODDIR=$(pkg-config --variable=gdk_pixbuf_moduledir gdk-pixbuf-2.0)
shopt -s nullglob
"$QUERY" "$MODDIR"/*.so "$T/module/libpixbufloader-gsi.so" >"$T/loaders.cache"
shopt -u nullglob
grep -q '"image/x-gsi"' "$T/loaders.cache" || { echo "FAIL: the module is not in loaders.cache" >&2; exit 1; }
export GDK_PIXBUF_MODULE_FILE=$T/loaders.cache

# gdk-pixbuf picks a loader by the MIME type GIO sniffs (shared-mime-info), not by the loader's
# own signature pattern: the MIME entry comes first.
step "shared-mime-info entry, in a private XDG_DATA_HOME"
mkdir -p "$T/xdg-data/mime/packages"
cp integrations/desktop/gsimg-mime.xml "$T/xdg-data/mime/packages/gsimg.xml"
export XDG_DATA_HOME=$T/xdg-data
update-mime-database "$T/xdg-data/mime"

step "test pictures (RGB, RGBA, gray)"
convert examples/images/example.png \( +clone -channel R -fx 'i/w' -separate \) \
  -alpha off -compose CopyOpacity -composite PNG32:"$W/alpha.png"
convert examples/images/example.png -colorspace Gray -define png:color-type=0 "$W/gray.png"
for n in rgb:examples/images/example.png alpha:$W/alpha.png gray:$W/gray.png; do
  "$GSIMG" -q encode --method analytic --effort fast "${n#*:}" "$W/${n%%:*}.gsi"
done

step "shared-mime-info: the type by name and by signature"
cp "$W/rgb.gsi" "$W/no-extension"
for f in "$W/rgb.gsi" "$W/no-extension"; do
  type=$(gio info -a standard::content-type "$f" | sed -n 's/.*standard::content-type: //p')
  [[ $type == image/x-gsi ]] || { echo "FAIL: $f is '$type', not image/x-gsi" >&2; exit 1; }
  echo "ok   gio info: $(basename "$f") is $type"
done

step "gdk-pixbuf: python3-gi and gdk-pixbuf-thumbnailer"
$PY integrations/tests/pixbuf_test.py "$GSIMG" "$W"

step "eog under Xvfb shows a .gsi file"
HOME=$T/home XDG_CONFIG_HOME=$T/home/config XDG_CACHE_HOME=$T/home/cache \
  GSIMG="$GSIMG" $PY integrations/tests/eog_test.py "$W/rgb.gsi" "$T/eog-screenshot.png"

step "Qt image format plugin: QImageReader through python3-pyqt5"
make -s -C integrations/qt BUILDDIR="$T/qt" RPATH="$LIBDIR"
mkdir -p "$T/qt-plugins/imageformats"
cp "$T/qt/libqgsi.so" "$T/qt-plugins/imageformats/"
QT_PLUGIN_PATH=$T/qt-plugins QT_QPA_PLATFORM=offscreen $PY integrations/tests/qt_test.py "$GSIMG" "$W"

step "glycin loader"
GSIMG="$GSIMG" GSIMG_TEST_DIR="$W" integrations/tests/glycin.sh

step "done"
