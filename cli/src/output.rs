//! Output files of the command-line tool: claimed and checked before the work, written whole.
//!
//! [`Output::claim`] runs before any decoding or encoding, so that a wrong output path fails at
//! once. It refuses what would lose data unless `--force`:
//! - an output that is one of the inputs (the same file, by device and inode);
//! - an existing file whose content is not what the command writes (a picture as the output of
//!   `encode`, a `.gsi` file as the output of `decode`); an empty file holds nothing to lose;
//! - an `encode` output whose name does not end in `.gsi`.
//!
//! Then, for a regular file (existing or not), it creates a temporary file beside it,
//! `.NAME.gsimg-PID.tmp`; [`Output::write`] fills it, syncs it and renames it over the output,
//! so the output appears whole or not at all. A symbolic link is followed (the file it points to
//! is replaced, the link stays); a device node or FIFO (`/dev/null`, `/dev/stdout`, a named
//! pipe) is written through, never renamed over, except a block device (a disk): refused unless
//! `--force`. A folder is an error.
//!
//! A temporary file is removed when the command fails, and on SIGINT or SIGTERM by the handler
//! [`install_signal_handler`] starts (exit status 130 or 143). A process killed outright
//! (SIGKILL, a crash) cannot clean up: the next `gsimg` that writes into the same folder removes
//! the temporary files of processes that no longer exist (their names carry the process id).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

/// What a command writes, for the check of an existing output's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// A `.gsi` file (`encode`).
    Gsi,
    /// A picture (`decode`, `upscale`).
    Picture,
}

/// An output claimed before the work: see the module documentation.
pub struct Output {
    /// The path as the user gave it (for messages).
    shown: PathBuf,
    kind: Kind,
}

enum Kind {
    Stdout,
    /// A device node or FIFO: opened and written as it is.
    Through(PathBuf),
    /// A regular file: a temporary beside `target`, renamed over it.
    Atomic {
        target: PathBuf,
        tmp: PathBuf,
        file: Option<fs::File>,
    },
}

/// Temporary files this process has open, removed by the signal handler.
static TEMPORARIES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn lock_temporaries() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    TEMPORARIES.lock().unwrap_or_else(|p| p.into_inner())
}

/// The marker in a temporary file's name, before the process id.
const TEMP_MARK: &str = ".gsimg-";

impl Output {
    /// Checks `path` as the output of a command that reads `inputs` and writes `writes`, and
    /// claims it (see the module documentation). `-` is standard output.
    pub fn claim(path: &Path, inputs: &[&Path], writes: Writes, force: bool) -> Result<Output> {
        let shown = path.to_path_buf();
        if path.as_os_str() == "-" {
            return Ok(Output {
                shown,
                kind: Kind::Stdout,
            });
        }
        if writes == Writes::Gsi && !force && !has_extension(path, "gsi") {
            bail!(
                "{}: the output of encode is a .gsi file; name it *.gsi (or use --force to \
                 write it under this name)",
                path.display()
            );
        }
        let meta = match fs::metadata(path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot write {}", path.display())),
        };
        // Where a symbolic link points: the file replaced (or created, for a dangling link).
        let target = match &meta {
            Some(m) if m.is_file() => fs::canonicalize(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
            _ => follow_links(path)?,
        };
        if let Some(m) = &meta {
            if m.is_dir() {
                bail!("cannot write {}: it is a folder", path.display());
            }
            for input in inputs.iter().filter(|i| i.as_os_str() != "-") {
                if same_file(m, input) && !force {
                    bail!(
                        "{}: the output is the input file; choose another output (or use \
                         --force to replace the input)",
                        path.display()
                    );
                }
            }
            if is_block_device(m) && !force {
                bail!(
                    "{} is a block device (a disk); not writing over it (use --force to \
                     write it anyway)",
                    path.display()
                );
            }
            if !m.is_file() {
                // A device node or FIFO: write through it.
                return Ok(Output {
                    shown,
                    kind: Kind::Through(path.to_path_buf()),
                });
            }
            if !force && let Some(what) = foreign_content(&target, writes) {
                bail!(
                    "{} exists and holds {what}, not {}; not replacing it (use --force to \
                     replace it)",
                    path.display(),
                    match writes {
                        Writes::Gsi => "a .gsi file",
                        Writes::Picture => "a picture",
                    }
                );
            }
        }
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match fs::metadata(&dir) {
            Ok(d) if d.is_dir() => {}
            Ok(_) => bail!(
                "cannot write {}: {} is not a folder",
                path.display(),
                dir.display()
            ),
            Err(_) => bail!(
                "cannot write {}: the folder {} does not exist",
                path.display(),
                dir.display()
            ),
        }
        remove_stale_temporaries(&dir);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}{TEMP_MARK}{}.tmp", std::process::id()));
        let mut temporaries = lock_temporaries();
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", path.display()))?;
        // A replaced file keeps its permissions.
        if let Some(m) = &meta {
            let _ = file.set_permissions(m.permissions());
        }
        temporaries.push(tmp.clone());
        drop(temporaries);
        Ok(Output {
            shown,
            kind: Kind::Atomic {
                target,
                tmp,
                file: Some(file),
            },
        })
    }

    /// Writes `bytes` as the whole output.
    pub fn write(mut self, bytes: &[u8]) -> Result<()> {
        let shown = self.shown.clone();
        let fail = || format!("cannot write {}", shown.display());
        match &mut self.kind {
            Kind::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)
                    .and_then(|_| out.flush())
                    .context("cannot write standard output")
            }
            Kind::Through(path) => fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&*path)
                .and_then(|mut f| f.write_all(bytes).and_then(|_| f.flush()))
                .with_context(fail),
            Kind::Atomic { target, tmp, file } => {
                let mut f = file
                    .take()
                    .context("internal error: output written twice")?;
                f.write_all(bytes)
                    .and_then(|_| f.sync_all())
                    .with_context(fail)?;
                drop(f);
                // Under the lock, so that a signal's cleanup sees the file renamed or not.
                let mut temporaries = lock_temporaries();
                fs::rename(&*tmp, &*target).with_context(fail)?;
                temporaries.retain(|t| t != tmp);
                // The rename is done: nothing left for `drop` to remove.
                tmp.clear();
                Ok(())
            }
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Kind::Atomic { tmp, file, .. } = &mut self.kind
            && !tmp.as_os_str().is_empty()
        {
            drop(file.take());
            let mut temporaries = lock_temporaries();
            let _ = fs::remove_file(&*tmp);
            temporaries.retain(|t| t != tmp);
        }
    }
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.to_string_lossy().eq_ignore_ascii_case(ext))
}

/// `path` with symbolic links followed to the final path, which may not exist yet.
fn follow_links(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = fs::read_link(&p)
                    .with_context(|| format!("cannot read the link {}", p.display()))?;
                p = match p.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            _ => return Ok(p),
        }
    }
    bail!(
        "cannot write {}: too many levels of symbolic links",
        path.display()
    )
}

#[cfg(unix)]
fn is_block_device(m: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    m.file_type().is_block_device()
}

#[cfg(not(unix))]
fn is_block_device(_: &fs::Metadata) -> bool {
    false
}

#[cfg(unix)]
fn same_file(out: &fs::Metadata, input: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(input).is_ok_and(|i| i.dev() == out.dev() && i.ino() == out.ino())
}

#[cfg(not(unix))]
fn same_file(_: &fs::Metadata, _input: &Path) -> bool {
    false
}

/// What an existing file holds when it is not what the command writes: `None` when replacing it
/// loses nothing the command would not write again (same kind of content, or empty).
fn foreign_content(path: &Path, writes: Writes) -> Option<String> {
    let mut head = [0u8; 64];
    let n = fs::File::open(path)
        .and_then(|mut f| {
            use std::io::Read;
            let mut n = 0;
            while n < head.len() {
                match f.read(&mut head[n..])? {
                    0 => break,
                    k => n += k,
                }
            }
            Ok(n)
        })
        .unwrap_or(0);
    if n == 0 {
        return None;
    }
    let head = &head[..n];
    let gsi = head.starts_with(&gsimg::info::SIGNATURE);
    let picture = image::guess_format(head).ok();
    match (writes, gsi, picture) {
        (Writes::Gsi, true, _) => None,
        (Writes::Picture, false, Some(_)) => None,
        (Writes::Picture, true, _) => Some("a .gsi file".into()),
        (_, _, Some(f)) => Some(format!(
            "a {} picture",
            f.extensions_str()
                .first()
                .map(|e| e.to_ascii_uppercase())
                .unwrap_or_else(|| format!("{f:?}"))
        )),
        (_, _, None) => Some("other data".into()),
    }
}

/// Removes the temporary files in `dir` left by `gsimg` processes that no longer run (killed
/// outright, or crashed). Linux only (where `/proc` tells whether a process exists).
fn remove_stale_temporaries(dir: &Path) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(temporary_pid) else {
            continue;
        };
        if pid != std::process::id()
            && !Path::new("/proc").join(pid.to_string()).exists()
            && e.file_type().is_ok_and(|t| t.is_file())
        {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The process id in a temporary file's name `.NAME.gsimg-PID.tmp`.
fn temporary_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (_, pid) = rest.rsplit_once(TEMP_MARK)?;
    pid.parse().ok()
}

/// Removes this process's temporary files and exits with 128 + the signal's number, on SIGINT
/// or SIGTERM (a thread of its own waits for them).
#[cfg(unix)]
pub fn install_signal_handler() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let temporaries = lock_temporaries();
            for t in temporaries.iter() {
                let _ = fs::remove_file(t);
            }
            // Exit with the lock held (no rename can start after the cleanup), at once: no
            // exit handlers of libraries whose threads are still running (ONNX Runtime).
            signal_hook::low_level::exit(128 + sig);
        }
    });
}

#[cfg(not(unix))]
pub fn install_signal_handler() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_give_their_process() {
        assert_eq!(temporary_pid(".out.png.gsimg-1234.tmp"), Some(1234));
        assert_eq!(temporary_pid(".a.gsimg-b.gsi.gsimg-77.tmp"), Some(77));
        assert_eq!(temporary_pid("out.png.gsimg-1234.tmp"), None);
        assert_eq!(temporary_pid(".out.png.1234.tmp"), None);
        assert_eq!(temporary_pid(".out.gsimg-12x.tmp"), None);
    }
}
