//! What the Kodak benchmarks share: the folder of pictures they read.

/// The folder `GSIMG_KODAK` names (default: the evaluation pictures beside the checkout).
pub fn kodak_dir() -> String {
    std::env::var("GSIMG_KODAK")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/bench/kodak").into())
}

/// The PNG files of [`kodak_dir`], sorted by name.
#[allow(dead_code)] // not every benchmark reads the list
pub fn kodak_files() -> Vec<std::path::PathBuf> {
    let dir = kodak_dir();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e} (set GSIMG_KODAK)"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    files.sort();
    files
}
