#!/usr/bin/env bash
# Installs what GTK/GNOME programs need to open .gsi files:
#   - the C library (libgsimg, gsimg.pc, gsimg/gsimg.h) with cargo-c's `cargo cinstall`;
#   - the gdk-pixbuf loader, into the module directory gdk-pixbuf names, then registered with
#     gdk-pixbuf-query-loaders --update-cache (eog, GTK 3/4 image widgets, the thumbnailer);
#   - the shared-mime-info entry (image/x-gsi: *.gsi and the file signature), then
#     update-mime-database;
#   - a thumbnailer entry (file managers' thumbnails through gdk-pixbuf-thumbnailer);
#   - with --glycin, the glycin loader and its conf.d file (Loupe and newer gdk-pixbuf builds);
#   - with --qt, the Qt 5 image format plugin, into Qt's imageformats/ plugin directory
#     (Gwenview and other Qt programs).
#
# Usage: scripts/install-loaders.sh [--prefix DIR] [--glycin] [--qt] [--uninstall]
#   --prefix DIR   where the library, the MIME entry, the thumbnailer and the glycin loader go
#                  (default /usr/local). The gdk-pixbuf module always goes where
#                  `pkg-config --variable=gdk_pixbuf_moduledir gdk-pixbuf-2.0` says, since
#                  gdk-pixbuf looks nowhere else.
#   --glycin       also build and install the glycin loader
#   --qt           also build and install the Qt plugin (needs qtbase5-dev, qtbase5-dev-tools)
#   --uninstall    remove what an install put there, and refresh the caches
#
# Needs: cargo and cargo-c (`cargo install cargo-c --version 0.10.24 --locked`; Debian 12's
# cargo-c is too old for edition 2024), a C compiler, make, pkg-config, gdk-pixbuf's development
# files (Debian: libgdk-pixbuf-2.0-dev), shared-mime-info; for --glycin also libseccomp and
# fontconfig development files (libseccomp-dev, libfontconfig-dev). Run as root for a
# system-wide install.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=/usr/local
GLYCIN=0
QT=0
UNINSTALL=0
while (($#)); do
  case $1 in
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --prefix=*) PREFIX=${1#--prefix=}; shift ;;
    --glycin) GLYCIN=1; shift ;;
    --qt) QT=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "install-loaders.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ $PREFIX == /* ]] || { echo "install-loaders.sh: --prefix must be an absolute path" >&2; exit 2; }

LIBDIR=$PREFIX/lib
DATADIR=$PREFIX/share
command -v pkg-config >/dev/null || { echo "install-loaders.sh: pkg-config is missing" >&2; exit 1; }
pkg-config --exists gdk-pixbuf-2.0 || {
  echo "install-loaders.sh: gdk-pixbuf's development files are missing (Debian: apt install libgdk-pixbuf-2.0-dev)" >&2
  exit 1
}
MODULEDIR=$(pkg-config --variable=gdk_pixbuf_moduledir gdk-pixbuf-2.0)
QUERY=$(pkg-config --variable=gdk_pixbuf_query_loaders gdk-pixbuf-2.0)
[[ -x $QUERY ]] || QUERY=$(command -v gdk-pixbuf-query-loaders || true)
GLYCIN_BIN=$PREFIX/libexec/glycin-loaders/2+/glycin-gsimg
GLYCIN_CONF=$DATADIR/glycin-loaders/2+/conf.d/gsimg.conf
QT_PLUGIN=
if pkg-config --exists Qt5Core; then
  QT_PLUGIN=$(make -s -C integrations/qt print-plugindir)
fi

refresh_caches() {
  if [[ -n $QUERY ]]; then "$QUERY" --update-cache; else
    echo "warning: gdk-pixbuf-query-loaders not found; run it with --update-cache" >&2
  fi
  if command -v update-mime-database >/dev/null; then update-mime-database "$DATADIR/mime"; else
    echo "warning: update-mime-database not found (shared-mime-info)" >&2
  fi
}

if ((UNINSTALL)); then
  rm -fv "$MODULEDIR/libpixbufloader-gsi.so" "$DATADIR/mime/packages/gsimg.xml" \
    "$DATADIR/thumbnailers/gsimg.thumbnailer" "$GLYCIN_BIN" "$GLYCIN_CONF" \
    "$LIBDIR"/libgsimg.* "$LIBDIR/pkgconfig/gsimg.pc" \
    ${QT_PLUGIN:+"$QT_PLUGIN/imageformats/libqgsi.so"}
  rm -rfv "$PREFIX/include/gsimg"
  refresh_caches
  exit 0
fi

cargo cinstall --version >/dev/null 2>&1 || {
  echo "install-loaders.sh: cargo-c is missing (cargo install cargo-c --version 0.10.24 --locked)" >&2
  exit 1
}

echo "== the C library into $PREFIX"
cargo cinstall --release -p gsimg-capi --prefix="$PREFIX" --libdir="$LIBDIR"
command -v ldconfig >/dev/null && ldconfig "$LIBDIR" 2>/dev/null || true

echo "== the gdk-pixbuf loader into $MODULEDIR"
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
make -s -C integrations/gdk-pixbuf BUILDDIR="$PWD/target/gdk-pixbuf" RPATH="$LIBDIR"
make -s -C integrations/gdk-pixbuf BUILDDIR="$PWD/target/gdk-pixbuf" RPATH="$LIBDIR" \
  MODULEDIR="$MODULEDIR" install

echo "== the MIME type and the thumbnailer into $DATADIR"
install -D -m 644 integrations/desktop/gsimg-mime.xml "$DATADIR/mime/packages/gsimg.xml"
install -D -m 644 integrations/desktop/gsimg.thumbnailer "$DATADIR/thumbnailers/gsimg.thumbnailer"

if ((GLYCIN)); then
  echo "== the glycin loader into $GLYCIN_BIN"
  cargo build --release --manifest-path integrations/glycin/Cargo.toml --bin glycin-gsimg
  install -D -m 755 integrations/glycin/target/release/glycin-gsimg "$GLYCIN_BIN"
  mkdir -p "$(dirname "$GLYCIN_CONF")"
  sed "s|@BINDIR@|$(dirname "$GLYCIN_BIN")|" integrations/glycin/gsimg.conf.in >"$GLYCIN_CONF"
  chmod 644 "$GLYCIN_CONF"
fi

if ((QT)); then
  echo "== the Qt plugin"
  make -s -C integrations/qt BUILDDIR="$PWD/target/qt" RPATH="$LIBDIR"
  make -s -C integrations/qt BUILDDIR="$PWD/target/qt" RPATH="$LIBDIR" install
fi

echo "== refreshing gdk-pixbuf's loader cache and the MIME database"
refresh_caches
echo "installed: GTK programs now open .gsi files (restart running ones)"
