//! Finding the ONNX Runtime shared library at run time, and fetching it once into a per-user
//! cache when the machine has none, so that `gsimg encode` works on a fresh machine.
//!
//! gsimg links nothing of ONNX Runtime at build time (`ort` with `load-dynamic`): the library is
//! opened when the first network encoder is built. The candidates, in order:
//!
//! 1. an explicit path (the CLI's `--ort-lib`, [`LibrarySearch::explicit`]);
//! 2. the `ORT_DYLIB_PATH` environment variable;
//! 3. next to the executable: `<exe dir>/lib/libonnxruntime.so.1.*`, then
//!    `<exe dir>/libonnxruntime.so*` (highest version first);
//! 4. the per-user cache, `<cache>/onnxruntime-<version>/` with `<cache>` = `$GSIMG_CACHE_DIR`,
//!    else `$XDG_CACHE_HOME/gsimg`, else `~/.cache/gsimg`;
//! 5. the system loader's `libonnxruntime.so.1` (Debian 12 ships none; other systems may);
//! 6. a fetch into the cache: `python3 -m pip download --no-deps --only-binary=:all:
//!    onnxruntime==`[`PINNED_VERSION`], the library extracted from the wheel (a zip) with
//!    Python's `zipfile`, moved into the cache atomically, then version-checked. Set
//!    `GSIMG_ORT_FETCH=0` to forbid it, `GSIMG_PYTHON` to use another interpreter.
//!
//! An explicit path or `ORT_DYLIB_PATH` that does not work is an error (never silently replaced
//! by another library). Every candidate is version-checked (≥ 1.[`MIN_MINOR`]) before use; when
//! nothing works the error lists every path tried and how to fix it.
//!
//! This file knows nothing of `ort`: the caller passes the probe (`ort::util::probe`).
// Without the `onnx` feature nothing opens ONNX Runtime: the search's settings stay (they are
// part of the encoder's options) but the search itself is never called.
#![cfg_attr(not(feature = "onnx"), allow(dead_code))]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// The ONNX Runtime version fetched from PyPI when none is found (CPU build, 24 MB wheel).
pub const PINNED_VERSION: &str = "1.31.1";

/// The oldest usable ONNX Runtime minor version (`ort` is built with `api-20`).
pub const MIN_MINOR: u32 = 20;

/// Where an ONNX Runtime library was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibrarySource {
    /// The path given explicitly (`--ort-lib`).
    Explicit,
    /// The `ORT_DYLIB_PATH` environment variable.
    Environment,
    /// Next to the executable.
    NextToExecutable,
    /// The per-user cache, filled earlier.
    Cache,
    /// The system loader's search path.
    System,
    /// Just fetched from PyPI into the cache.
    Fetched,
}

impl std::fmt::Display for LibrarySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LibrarySource::Explicit => "explicit path",
            LibrarySource::Environment => "ORT_DYLIB_PATH",
            LibrarySource::NextToExecutable => "next to the executable",
            LibrarySource::Cache => "gsimg cache",
            LibrarySource::System => "system library path",
            LibrarySource::Fetched => "fetched from PyPI",
        })
    }
}

/// A usable ONNX Runtime library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundLibrary {
    /// Absolute path (or, for [`LibrarySource::System`], the name given to the loader).
    pub path: PathBuf,
    /// Minor version (`1.31.1` gives 31).
    pub minor: u32,
    /// Where it came from.
    pub source: LibrarySource,
}

/// Where to look for ONNX Runtime. [`LibrarySearch::from_env`] reads the environment; tests
/// build one field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibrarySearch {
    /// An explicit library path, tried first.
    pub explicit: Option<PathBuf>,
    /// What messages call the explicit path (the command line names its option).
    pub explicit_label: String,
    /// The value of `ORT_DYLIB_PATH`, tried second.
    pub env_path: Option<PathBuf>,
    /// The executable's folder.
    pub exe_dir: Option<PathBuf>,
    /// The per-user cache folder (holds `onnxruntime-<version>/`).
    pub cache_dir: Option<PathBuf>,
    /// Try the system loader's `libonnxruntime.so.1`.
    pub system: bool,
    /// Fetch the pinned version from PyPI with pip when nothing else works.
    pub fetch: bool,
    /// The Python interpreter that runs pip.
    pub python: OsString,
}

/// The search of a library that was given no environment: the explicit path, then the system
/// loader; no cache, no fetch.
impl Default for LibrarySearch {
    fn default() -> Self {
        LibrarySearch {
            explicit: None,
            explicit_label: "explicit library path".into(),
            env_path: None,
            exe_dir: None,
            cache_dir: None,
            system: true,
            fetch: false,
            python: "python3".into(),
        }
    }
}

impl LibrarySearch {
    /// The search this process's environment describes (`ORT_DYLIB_PATH`, `GSIMG_CACHE_DIR`,
    /// `XDG_CACHE_HOME`, `HOME`, `GSIMG_ORT_FETCH`, `GSIMG_PYTHON`), with no explicit path.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let cache_dir = var("GSIMG_CACHE_DIR").map(PathBuf::from).or_else(|| {
            var("XDG_CACHE_HOME")
                .map(|d| PathBuf::from(d).join("gsimg"))
                .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache").join("gsimg")))
        });
        let fetch = !matches!(
            var("GSIMG_ORT_FETCH")
                .and_then(|v| v.into_string().ok())
                .as_deref(),
            Some("0" | "false" | "no" | "off")
        );
        LibrarySearch {
            explicit: None,
            explicit_label: "explicit library path".into(),
            env_path: var("ORT_DYLIB_PATH").map(PathBuf::from),
            exe_dir: std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(Path::to_path_buf)),
            cache_dir,
            system: true,
            fetch,
            python: var("GSIMG_PYTHON").unwrap_or_else(|| "python3".into()),
        }
    }

    /// The same search with an explicit library path tried first.
    pub(crate) fn with_explicit(mut self, path: Option<PathBuf>) -> Self {
        self.explicit = path;
        self
    }

    /// The folder this search's cache keeps the pinned version in.
    pub(crate) fn pinned_cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir
            .as_ref()
            .map(|c| c.join(format!("onnxruntime-{PINNED_VERSION}")))
    }
}

/// The file names ONNX Runtime's library has on this platform.
fn is_library_name(name: &str) -> bool {
    if cfg!(target_os = "windows") {
        name.eq_ignore_ascii_case("onnxruntime.dll")
    } else if cfg!(target_os = "macos") {
        name.starts_with("libonnxruntime.") && name.ends_with(".dylib")
    } else {
        name == "libonnxruntime.so" || name.starts_with("libonnxruntime.so.")
    }
}

/// Version numbers in a library file name (`libonnxruntime.so.1.31.1` → [1, 31, 1]).
fn name_version(name: &str) -> Vec<u32> {
    name.split('.').filter_map(|p| p.parse().ok()).collect()
}

/// The ONNX Runtime libraries in `dir`, highest version first.
fn libraries_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            (is_library_name(&name) && e.path().is_file()).then(|| (name_version(&name), e.path()))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    found.into_iter().map(|(_, p)| p).collect()
}

/// Makes a path absolute against the current folder (ONNX Runtime finds its provider
/// libraries next to itself, resolved against the current folder: pass it absolute paths).
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// One probed candidate: what happened, for the error message.
fn check(path: &Path, probe: &dyn Fn(&Path) -> Option<u32>) -> std::result::Result<u32, String> {
    if !path.exists() {
        return Err("no such file".into());
    }
    if path.is_dir() {
        return Err("is a folder, not the library file".into());
    }
    // Loading a truncated library maps pages past its end: the process dies of SIGBUS at the
    // first touch, with no message. Check that the file holds all its headers point to first.
    whole_library(path)?;
    match probe(path) {
        None => Err(
            "cannot be loaded as ONNX Runtime 1.x (not a shared library, wrong \
                     architecture, a missing dependency, or not ONNX Runtime)"
                .into(),
        ),
        Some(m) if m < MIN_MINOR => Err(format!(
            "ONNX Runtime 1.{m} is too old (gsimg needs 1.{MIN_MINOR} or newer)"
        )),
        Some(m) => Ok(m),
    }
}

/// Removes the fetch folders (`.onnxruntime-<version>.<pid>.tmp`, a wheel of ~24 MB) left in
/// the cache by processes that were killed while fetching and no longer exist (Linux, where
/// `/proc` tells).
fn remove_abandoned_fetches(cache: &Path) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(".onnxruntime-")?.strip_suffix(".tmp"))
            .and_then(|n| n.rsplit_once('.'))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The name of the file, in a cache folder, that records the size and SHA-256 of each library
/// file fetched into it (lines `<sha256>  <size>  <name>`).
const MANIFEST: &str = "gsimg-manifest.txt";

/// Records the size and SHA-256 of every file in `dir` in its [`MANIFEST`].
fn write_manifest(dir: &Path) -> std::result::Result<(), String> {
    let mut lines = String::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != MANIFEST)
        .collect();
    names.sort();
    for name in names {
        let (size, hash) = crate::encode::digest::file_sha256(&dir.join(&name))
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        lines.push_str(&format!("{hash}  {size}  {name}\n"));
    }
    std::fs::write(dir.join(MANIFEST), lines).map_err(|e| format!("cannot write {MANIFEST}: {e}"))
}

/// Checks a cached library against its folder's [`MANIFEST`] (size first, then SHA-256). A
/// folder without a manifest (filled by hand) is not checked here.
fn matches_manifest(dir: &Path, lib: &Path) -> std::result::Result<(), String> {
    let Ok(text) = std::fs::read_to_string(dir.join(MANIFEST)) else {
        return Ok(());
    };
    let name = lib.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let Some((hash, size)) = text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        let (h, s, n) = (w.next()?, w.next()?, w.next()?);
        (n == name).then(|| (h.to_string(), s.parse::<u64>().ok()))
    }) else {
        return Err(format!("is damaged: not in {MANIFEST}"));
    };
    let actual = std::fs::metadata(lib).map_err(|e| e.to_string())?.len();
    if size != Some(actual) {
        return Err(format!(
            "is damaged: {actual} bytes where {} were fetched",
            size.map_or("?".to_string(), |s| s.to_string())
        ));
    }
    let (_, got) = crate::encode::digest::file_sha256(lib).map_err(|e| e.to_string())?;
    if got != hash {
        return Err(
            "is damaged: its SHA-256 differs from the one recorded when it was fetched".into(),
        );
    }
    Ok(())
}

/// Checks that a shared library file is whole: for ELF (Linux), that its program headers, every
/// segment they describe and the section header table lie within the file. Other formats are
/// only checked for being non-empty.
fn whole_library(path: &Path) -> std::result::Result<(), String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    if len == 0 {
        return Err("is empty".into());
    }
    let mut head = [0u8; 64];
    let n = f.read(&mut head).map_err(|e| e.to_string())?;
    if n < 16 || head[..4] != [0x7f, b'E', b'L', b'F'] {
        // Not ELF: the loader's own checks apply.
        return Ok(());
    }
    let (wide, little) = (head[4] == 2, head[5] == 1);
    let truncated = |need: u64| {
        format!("is damaged: truncated ({len} bytes; its headers describe at least {need})")
    };
    if n < if wide { 64 } else { 52 } {
        return Err(truncated(if wide { 64 } else { 52 }));
    }
    let uint = |b: &[u8]| -> u64 {
        let mut v = 0u64;
        for (i, &x) in b.iter().enumerate() {
            let shift = if little { 8 * i } else { 8 * (b.len() - 1 - i) };
            v |= (x as u64) << shift;
        }
        v
    };
    // (e_phoff, e_shoff, e_phentsize, e_phnum, e_shentsize, e_shnum)
    let (phoff, shoff, phent, phnum, shent, shnum) = if wide {
        (
            uint(&head[0x20..0x28]),
            uint(&head[0x28..0x30]),
            uint(&head[0x36..0x38]),
            uint(&head[0x38..0x3a]),
            uint(&head[0x3a..0x3c]),
            uint(&head[0x3c..0x3e]),
        )
    } else {
        (
            uint(&head[0x1c..0x20]),
            uint(&head[0x20..0x24]),
            uint(&head[0x2a..0x2c]),
            uint(&head[0x2c..0x2e]),
            uint(&head[0x2e..0x30]),
            uint(&head[0x30..0x32]),
        )
    };
    let ph_end = phoff.saturating_add(phent.saturating_mul(phnum));
    if ph_end > len {
        return Err(truncated(ph_end));
    }
    if shoff != 0 {
        let sh_end = shoff.saturating_add(shent.saturating_mul(shnum));
        if sh_end > len {
            return Err(truncated(sh_end));
        }
    }
    let mut table = vec![0u8; (ph_end - phoff) as usize];
    f.seek(SeekFrom::Start(phoff))
        .and_then(|_| f.read_exact(&mut table))
        .map_err(|e| e.to_string())?;
    for ph in table.chunks_exact(phent.max(1) as usize) {
        let (offset, filesz) = if wide && ph.len() >= 0x28 {
            (uint(&ph[8..16]), uint(&ph[0x20..0x28]))
        } else if !wide && ph.len() >= 0x14 {
            (uint(&ph[4..8]), uint(&ph[0x10..0x14]))
        } else {
            return Err("is damaged: bad program header size".into());
        };
        let end = offset.saturating_add(filesz);
        if end > len {
            return Err(truncated(end));
        }
    }
    Ok(())
}

fn fix_hint(search: &LibrarySearch) -> String {
    format!(
        "to fix: let gsimg fetch it (needs python3 with pip and access to PyPI; unset \
         GSIMG_ORT_FETCH), or install it yourself: `python3 -m pip download --no-deps \
         --only-binary=:all: onnxruntime=={PINNED_VERSION}`, unzip \
         onnxruntime/capi/libonnxruntime.so.{PINNED_VERSION} from the wheel, and pass its path \
         with {} or ORT_DYLIB_PATH (or put it in <gsimg's folder>/lib/)",
        search.explicit_label
    )
}

/// Finds a usable library, fetching it into the cache if allowed and needed. `probe` returns a
/// library's minor version, or `None` if it cannot be loaded; `say` reports progress (fetching).
pub fn locate(
    search: &LibrarySearch,
    probe: &dyn Fn(&Path) -> Option<u32>,
    say: &dyn Fn(&str),
) -> Result<FoundLibrary> {
    let found = |path: PathBuf, minor, source| FoundLibrary {
        path,
        minor,
        source,
    };
    // 1, 2: explicit requests are honoured or refused, never replaced.
    for (req, source, what) in [
        (
            &search.explicit,
            LibrarySource::Explicit,
            search.explicit_label.as_str(),
        ),
        (
            &search.env_path,
            LibrarySource::Environment,
            "ORT_DYLIB_PATH",
        ),
    ] {
        if let Some(p) = req {
            let p = absolute(p);
            return match check(&p, probe) {
                Ok(m) => Ok(found(p, m, source)),
                Err(why) => Err(Error::Model(
                    format!(
                        "cannot use the ONNX Runtime library given by {what}, {}: {why}; point \
                     {what} at a libonnxruntime file of version 1.{MIN_MINOR} or newer (e.g. \
                     onnxruntime/capi/libonnxruntime.so.{PINNED_VERSION} from the onnxruntime \
                     wheel on PyPI), or unset it to let gsimg find or fetch one",
                        p.display()
                    )
                    .into(),
                )),
            };
        }
    }
    let mut tried: Vec<String> = vec![
        format!("{}: not given", search.explicit_label),
        "ORT_DYLIB_PATH: not set".into(),
    ];
    // 3: next to the executable.
    if let Some(exe) = &search.exe_dir {
        let mut any = false;
        for dir in [exe.join("lib"), exe.clone()] {
            for p in libraries_in(&dir) {
                any = true;
                let p = absolute(&p);
                match check(&p, probe) {
                    Ok(m) => return Ok(found(p, m, LibrarySource::NextToExecutable)),
                    Err(why) => tried.push(format!("{}: {why}", p.display())),
                }
            }
        }
        if !any {
            tried.push(format!(
                "{}/lib/libonnxruntime.so.1.* and {}/libonnxruntime.so*: none",
                exe.display(),
                exe.display()
            ));
        }
    }
    // 4: the cache, the pinned version first, then any other version kept there.
    if let Some(cache) = &search.cache_dir {
        let mut dirs: Vec<PathBuf> = search.pinned_cache_dir().into_iter().collect();
        if let Ok(entries) = std::fs::read_dir(cache) {
            let mut others: Vec<(Vec<u32>, PathBuf)> = entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let v = name.strip_prefix("onnxruntime-")?;
                    Some((name_version(v), e.path()))
                })
                .filter(|(_, p)| Some(p) != dirs.first())
                .collect();
            others.sort_by(|a, b| b.0.cmp(&a.0));
            dirs.extend(others.into_iter().map(|(_, p)| p));
        }
        let mut any = false;
        for dir in &dirs {
            for p in libraries_in(dir) {
                any = true;
                let p = absolute(&p);
                match matches_manifest(dir, &p).and_then(|()| check(&p, probe)) {
                    Ok(m) => return Ok(found(p, m, LibrarySource::Cache)),
                    Err(why) => {
                        tried.push(format!("{}: {why}", p.display()));
                        // A damaged copy of the pinned version is removed, so that the fetch
                        // below (or the next run's) fills the cache again.
                        if Some(dir) == search.pinned_cache_dir().as_ref() {
                            say(&format!(
                                "the cached ONNX Runtime library {} {why}; removing it",
                                p.display()
                            ));
                            let _ = std::fs::remove_dir_all(dir);
                            break;
                        }
                    }
                }
            }
        }
        if !any {
            tried.push(format!("{}: empty", dirs[0].display()));
        }
    } else {
        tried.push(
            "per-user cache: no folder (HOME, XDG_CACHE_HOME and GSIMG_CACHE_DIR unset)".into(),
        );
    }
    // 5: the system loader.
    if search.system {
        let name = Path::new(if cfg!(target_os = "macos") {
            "libonnxruntime.1.dylib"
        } else if cfg!(target_os = "windows") {
            "onnxruntime.dll"
        } else {
            "libonnxruntime.so.1"
        });
        match probe(name) {
            Some(m) if m >= MIN_MINOR => {
                return Ok(found(name.to_path_buf(), m, LibrarySource::System));
            }
            Some(m) => tried.push(format!(
                "system {}: ONNX Runtime 1.{m} is too old",
                name.display()
            )),
            None => tried.push(format!("system {}: not found", name.display())),
        }
    }
    // 6: fetch.
    match (&search.fetch, search.pinned_cache_dir()) {
        (true, Some(dest)) => match fetch(search, &dest, probe, say) {
            Ok(lib) => return Ok(lib),
            Err(why) => tried.push(format!("fetching onnxruntime=={PINNED_VERSION}: {why}")),
        },
        (false, _) => tried.push("fetching from PyPI: disabled by GSIMG_ORT_FETCH".into()),
        (true, None) => tried.push("fetching from PyPI: no cache folder to fetch into".into()),
    }
    Err(Error::RuntimeUnavailable(format!(
        "ONNX Runtime (libonnxruntime, version 1.{MIN_MINOR} or newer) not found; tried: {}; {}",
        tried.join("; "),
        fix_hint(search)
    ).into()))
}

/// Runs a command; the error names it by `what` and ends with the last lines it printed.
/// `Err((message, ran))`: `ran` is false when the program could not be started at all.
fn run_logged(cmd: &mut Command, what: &str) -> std::result::Result<(), (String, bool)> {
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let last: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = last[last.len().saturating_sub(3)..].join(" / ");
            Err((format!("`{what}` failed ({}): {tail}", o.status), true))
        }
        Err(e) => Err((format!("cannot run `{what}`: {e}"), false)),
    }
}

/// The manylinux platform tag of this machine, for a pip download that does not depend on the
/// local Python's version.
fn manylinux_platform() -> Option<&'static str> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    match std::env::consts::ARCH {
        "x86_64" => Some("manylinux_2_28_x86_64"),
        "aarch64" => Some("manylinux_2_28_aarch64"),
        _ => None,
    }
}

/// Python that extracts the ONNX Runtime libraries of a wheel (argv: wheel, destination) and
/// prints their names.
const EXTRACT_PY: &str = r#"
import os, shutil, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        d, name = os.path.split(info.filename)
        if d != "onnxruntime/capi" or not (name.startswith("libonnxruntime")
                                           or name.startswith("onnxruntime_providers_shared")
                                           or name == "onnxruntime.dll"):
            continue
        if not (".so" in name or name.endswith((".dylib", ".dll"))) or "providers_cuda" in name \
                or "providers_tensorrt" in name:
            continue
        with z.open(info) as src, open(os.path.join(dest, name), "wb") as out:
            shutil.copyfileobj(src, out)
        print(name)
"#;

fn fetch(
    search: &LibrarySearch,
    dest: &Path,
    probe: &dyn Fn(&Path) -> Option<u32>,
    say: &dyn Fn(&str),
) -> std::result::Result<FoundLibrary, String> {
    let parent = dest.parent().ok_or("bad cache folder")?;
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let tmp = parent.join(format!(
        ".onnxruntime-{PINNED_VERSION}.{}.tmp",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    remove_abandoned_fetches(parent);
    let (wheel_dir, lib_dir) = (tmp.join("wheel"), tmp.join("lib"));
    let cleanup = || {
        let _ = std::fs::remove_dir_all(&tmp);
    };
    let result = (|| -> std::result::Result<FoundLibrary, String> {
        std::fs::create_dir_all(&wheel_dir).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&lib_dir).map_err(|e| e.to_string())?;
        say(&format!(
            "ONNX Runtime not found: fetching onnxruntime=={PINNED_VERSION} (CPU build, about \
             24 MB) from PyPI with `{} -m pip download` into {} (once per user)",
            search.python.to_string_lossy(),
            dest.display()
        ));
        let python = search.python.to_string_lossy().into_owned();
        let pip = |extra: &[&str]| {
            let mut c = Command::new(&search.python);
            c.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
                .args(["--disable-pip-version-check", "--quiet", "--dest"])
                .arg(&wheel_dir)
                .args(extra)
                .arg(format!("onnxruntime=={PINNED_VERSION}"));
            let what = format!(
                "{python} -m pip download --no-deps --only-binary=:all: {}onnxruntime=={PINNED_VERSION}",
                extra.iter().map(|a| format!("{a} ")).collect::<String>()
            );
            run_logged(&mut c, &what)
        };
        match pip(&[]) {
            Ok(()) => {}
            Err((first, false)) => return Err(first),
            Err((first, true)) => {
                // The local Python may be one the pinned version has no wheel for: the library
                // inside does not depend on Python's version, so ask for a CPython 3.12 wheel.
                let Some(plat) = manylinux_platform() else {
                    return Err(first);
                };
                pip(&[
                    "--platform",
                    plat,
                    "--python-version",
                    "3.12",
                    "--implementation",
                    "cp",
                    "--abi",
                    "cp312",
                ])
                .map_err(|(second, _)| format!("{first}; then {second}"))?;
            }
        }
        let wheel = std::fs::read_dir(&wheel_dir)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or("pip downloaded no wheel")?;
        say(&format!(
            "extracting the library from {}",
            wheel.file_name().unwrap_or_default().to_string_lossy()
        ));
        let mut c = Command::new(&search.python);
        c.arg("-c").arg(EXTRACT_PY).arg(&wheel).arg(&lib_dir);
        run_logged(
            &mut c,
            &format!("{python} -c <extract the library from the wheel>"),
        )
        .map_err(|(e, _)| e)?;
        let libs = libraries_in(&lib_dir);
        let lib = libs.first().ok_or("the wheel holds no libonnxruntime")?;
        let name = lib.file_name().ok_or("bad library name")?.to_owned();
        write_manifest(&lib_dir)?;
        // Only the library folder goes into the cache.
        let _ = std::fs::remove_dir_all(&wheel_dir);
        if std::fs::rename(&lib_dir, dest).is_err() {
            // The folder is there: filled by another process meanwhile (use its copy if it is
            // whole), or left damaged (replace it).
            let theirs = absolute(&dest.join(&name));
            if matches_manifest(dest, &theirs).is_err() || whole_library(&theirs).is_err() {
                let _ = std::fs::remove_dir_all(dest);
                std::fs::rename(&lib_dir, dest)
                    .map_err(|e| format!("cannot move the library to {}: {e}", dest.display()))?;
            }
        }
        // Probe at the final path only (a library probed elsewhere could stay mapped there).
        let path = absolute(&dest.join(&name));
        match check(&path, probe) {
            Ok(m) => {
                say(&format!("ONNX Runtime 1.{m} ready at {}", path.display()));
                Ok(FoundLibrary {
                    path,
                    minor: m,
                    source: LibrarySource::Fetched,
                })
            }
            Err(why) => {
                let _ = std::fs::remove_dir_all(dest);
                Err(format!("the fetched library {} {why}", path.display()))
            }
        }
    })();
    cleanup();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(dir: &Path) -> LibrarySearch {
        LibrarySearch {
            explicit: None,
            explicit_label: "--ort-lib".into(),
            env_path: None,
            exe_dir: Some(dir.join("exe")),
            cache_dir: Some(dir.join("cache")),
            system: false,
            fetch: false,
            python: "python3".into(),
        }
    }

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    /// A fake probe: the version is the second number of the file name.
    fn fake(p: &Path) -> Option<u32> {
        name_version(&p.file_name()?.to_string_lossy())
            .get(1)
            .copied()
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gsimg-ortlib-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn order_and_versions() {
        let d = tmpdir("order");
        let s = search(&d);
        let quiet = |_: &str| {};
        let err = locate(&s, &fake, &quiet).unwrap_err().to_string();
        assert!(err.contains("not found") && err.contains("exe"), "{err}");
        // The cache.
        touch(&d.join(format!(
            "cache/onnxruntime-{PINNED_VERSION}/libonnxruntime.so.1.31.1"
        )));
        let f = locate(&s, &fake, &quiet).unwrap();
        assert_eq!((f.source, f.minor), (LibrarySource::Cache, 31));
        // Next to the executable beats the cache; the highest version wins; too old is skipped.
        touch(&d.join("exe/lib/libonnxruntime.so.1.22.0"));
        touch(&d.join("exe/lib/libonnxruntime.so.1.24.0"));
        touch(&d.join("exe/lib/libonnxruntime.so.1.19.0"));
        let f = locate(&s, &fake, &quiet).unwrap();
        assert_eq!((f.source, f.minor), (LibrarySource::NextToExecutable, 24));
        // ORT_DYLIB_PATH beats both, and the explicit path beats it.
        let env = d.join("env/libonnxruntime.so.1.26.0");
        let exp = d.join("exp/libonnxruntime.so.1.27.0");
        touch(&env);
        touch(&exp);
        let s2 = LibrarySearch {
            env_path: Some(env.clone()),
            ..s.clone()
        };
        assert_eq!(
            locate(&s2, &fake, &quiet).unwrap().source,
            LibrarySource::Environment
        );
        let s3 = s2.clone().with_explicit(Some(exp.clone()));
        let f = locate(&s3, &fake, &quiet).unwrap();
        assert_eq!((f.source, f.path.clone()), (LibrarySource::Explicit, exp));
        // A bad explicit request is an error naming it, not a silent fallback.
        let bad = LibrarySearch {
            env_path: Some(d.join("nope/libonnxruntime.so.1.30.0")),
            ..s.clone()
        };
        let err = locate(&bad, &fake, &quiet).unwrap_err().to_string();
        assert!(
            err.contains("ORT_DYLIB_PATH") && err.contains("nope"),
            "{err}"
        );
        let old = LibrarySearch {
            explicit: Some(d.join("exe/lib/libonnxruntime.so.1.19.0")),
            ..s
        };
        let err = locate(&old, &fake, &quiet).unwrap_err().to_string();
        assert!(err.contains("too old"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A probe that loads only whole ELF files (version 31), like the real loader would.
    fn elf_probe(p: &Path) -> Option<u32> {
        let b = std::fs::read(p).ok()?;
        (b.starts_with(b"\x7fELF") && whole_library(p).is_ok()).then_some(31)
    }

    #[test]
    fn truncated_libraries_are_refused_before_loading() {
        let d = tmpdir("elf");
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let whole = d.join("libonnxruntime.so.1.31.1");
        std::fs::write(&whole, &exe).unwrap();
        assert_eq!(whole_library(&whole), Ok(()));
        for keep in [exe.len() / 2, 40, 0] {
            std::fs::write(&whole, &exe[..keep]).unwrap();
            let e = whole_library(&whole).unwrap_err();
            assert!(
                e.contains("truncated") || e.contains("empty"),
                "{keep}: {e}"
            );
            // The probe (the loader) is never reached with it.
            let never = |_: &Path| -> Option<u32> { panic!("probed a truncated library") };
            assert!(check(&whole, &never).is_err());
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A damaged cached library (garbage, truncated, or bytes changed under its manifest) is
    /// replaced by a fresh fetch in the same run. A fake `python` stands in for pip: it
    /// "downloads" a wheel and "extracts" a whole ELF file as the library.
    #[test]
    #[cfg(unix)]
    fn a_damaged_cache_is_fetched_again_in_the_same_run() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmpdir("repair");
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let good = d.join("good.so");
        std::fs::write(&good, &exe).unwrap();
        let py = d.join("python");
        std::fs::write(
            &py,
            format!(
                "#!/bin/sh\nif [ \"$1\" = -m ]; then\n  while [ $# -gt 0 ]; do \
                 [ \"$1\" = --dest ] && dest=$2; shift; done\n  echo w > \
                 \"$dest/onnxruntime-{PINNED_VERSION}-cp312-none-any.whl\"\n  exit 0\nfi\n\
                 cp {} \"$4/libonnxruntime.so.{PINNED_VERSION}\"\n",
                good.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&py, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = LibrarySearch {
            fetch: true,
            python: py.into_os_string(),
            ..search(&d)
        };
        let dir = s.pinned_cache_dir().unwrap();
        let lib = dir.join(format!("libonnxruntime.so.{PINNED_VERSION}"));
        let quiet = |_: &str| {};
        // A fetch abandoned by a killed process (its pid gone) is removed by the next fetch.
        let mut dead = Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        dead.wait().unwrap();
        let abandoned = d
            .join("cache")
            .join(format!(".onnxruntime-{PINNED_VERSION}.{dead_pid}.tmp"));
        std::fs::create_dir_all(abandoned.join("wheel")).unwrap();
        // Empty cache: fetched, with a manifest.
        let f = locate(&s, &elf_probe, &quiet).unwrap();
        assert!(!abandoned.exists());
        assert_eq!(f.source, LibrarySource::Fetched);
        assert!(dir.join(MANIFEST).is_file());
        assert_eq!(
            locate(&s, &elf_probe, &quiet).unwrap().source,
            LibrarySource::Cache
        );
        type Damage<'a> = (&'a str, Box<dyn Fn() + 'a>);
        let damages: [Damage; 3] = [
            (
                "garbage without a manifest",
                Box::new(|| {
                    let _ = std::fs::remove_file(dir.join(MANIFEST));
                    std::fs::write(&lib, vec![0x5a; 4096]).unwrap();
                }),
            ),
            (
                "truncated",
                Box::new(|| std::fs::write(&lib, &exe[..exe.len() / 3]).unwrap()),
            ),
            (
                "one byte changed",
                Box::new(|| {
                    let mut b = exe.clone();
                    let i = b.len() - 100;
                    b[i] ^= 1;
                    std::fs::write(&lib, b).unwrap();
                }),
            ),
        ];
        for (what, damage) in damages {
            // Each damage on a freshly fetched cache (with its manifest).
            let _ = std::fs::remove_dir_all(&dir);
            locate(&s, &elf_probe, &quiet).unwrap();
            damage();
            let said = std::sync::Mutex::new(Vec::<String>::new());
            let say = |m: &str| said.lock().unwrap().push(m.to_string());
            let f = locate(&s, &elf_probe, &say).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(f.source, LibrarySource::Fetched, "{what}");
            assert_eq!(std::fs::read(&lib).unwrap(), exe, "{what}");
            let said = said.into_inner().unwrap().join("\n");
            assert!(said.contains("removing it"), "{what}: {said}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
