//! What the Kodak benchmarks share: the folder of pictures they read.

/// The folder `GSIMG_KODAK` names; without it the benchmark stops with a one-line message.
#[allow(dead_code)] // not every benchmark reads the Kodak folder
pub fn kodak_dir() -> String {
    required_env("GSIMG_KODAK", "the folder of the Kodak PNGs")
}

/// The value of the environment variable `name`, or a one-line message naming what it must hold
/// and exit status 2: the evaluation pictures are not part of the repository.
pub fn required_env(name: &str, what: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!("set {name} to {what}");
        std::process::exit(2)
    })
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
