#!/usr/bin/env bash
# The glycin loader: built, registered through its conf.d file in a private XDG_DATA_HOME, and
# tested through its own entry point (tests/loader.rs) and through the glycin client
# (tests/client.rs). Called by run.sh, which sets GSIMG, GSIMG_TEST_DIR's pictures and
# XDG_DATA_HOME; standalone: GSIMG=… GSIMG_TEST_DIR=… XDG_DATA_HOME=… glycin.sh
set -euo pipefail
cd "$(dirname "$0")/../glycin"
: "${GSIMG:?}" "${GSIMG_TEST_DIR:?}" "${XDG_DATA_HOME:?}"
cargo build --release --quiet --bin glycin-gsimg
conf=$XDG_DATA_HOME/glycin-loaders/2+/conf.d
mkdir -p "$conf"
sed "s|@BINDIR@|$PWD/target/release|" gsimg.conf.in >"$conf/gsimg.conf"
cargo test --release --quiet -- --nocapture 2>&1
