//! The committed C header is what cbindgen makes of the current source. Regenerate it with
//! `GSIMG_BLESS=1 cargo test -p gsimg-capi --test header`.

use std::path::Path;

#[test]
fn committed_header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen parses src/lib.rs")
        .write(&mut generated);
    let path = dir.join("include/gsimg/gsimg.h");
    if std::env::var_os("GSIMG_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not what cbindgen makes of src/lib.rs; regenerate it with GSIMG_BLESS=1 \
         cargo test -p gsimg-capi --test header",
        path.display()
    );
}
