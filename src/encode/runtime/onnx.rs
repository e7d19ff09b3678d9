//! Running an encoder network through ONNX Runtime: the only file that imports `ort`.
//!
//! The library is opened once per process ([`ort_lib`](super::ort_lib) finds it, `ort::init_from`
//! loads it, with an absolute path); a session is created per model, on the CUDA execution
//! provider when asked for (`Device::Cuda`) or allowed (`Device::Auto`) and the library has it,
//! on the CPU provider otherwise. CUDA is declared working only after a warm-up run succeeded
//! (cuDNN loads lazily, at the first convolution); with `Device::Auto` any CUDA failure falls back
//! to the CPU provider with a message saying why.
//!
//! # With the CUDA provider
//!
//! The CUDA build of ONNX Runtime (PyPI `onnxruntime-gpu`, CUDA 13, cuDNN 9) is selected with
//! `ORT_DYLIB_PATH` or an explicit library path; its folder must also hold
//! `libonnxruntime_providers_shared.so` and `libonnxruntime_providers_cuda.so`, which ONNX Runtime
//! looks for next to itself. `Device::Cuda` fails with the reason if CUDA cannot run;
//! `ORT_LOG=verbose` shows where ONNX Runtime placed the nodes. `benches/encode.rs` times the
//! encoders on either provider (`GSIMG_BENCH_DEVICE=cuda|cpu`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ort::ep::{self, ExecutionProvider};
use ort::session::Session;
use ort::value::TensorRef;

use super::ort_lib::{self, FoundLibrary, LibrarySearch};
pub(crate) use super::{ModelDecl, TensorDecl};
use super::{Device, Provider};
use crate::core::error::Cause;
use crate::{Error, Result};

/// The process's ONNX Runtime: the library (loaded once, never unloaded) and its environment.
struct Runtime {
    library: FoundLibrary,
    env: ort::environment::Environment,
}

static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);

fn model_err(context: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Model(Cause::with_source(format!("{context}: {e}"), e))
}

/// Loads ONNX Runtime once per process. A later call that explicitly asks for another library
/// is an error (a process can hold one ONNX Runtime only).
fn runtime(search: &LibrarySearch, say: &dyn Fn(&str)) -> Result<Arc<Runtime>> {
    let mut guard = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(rt) = guard.as_ref() {
        // Only the first explicit request counts (the explicit path hides ORT_DYLIB_PATH).
        if let Some(wanted) = search.explicit.as_ref().or(search.env_path.as_ref()) {
            let wanted = std::path::absolute(wanted).unwrap_or_else(|_| wanted.clone());
            let same = match (wanted.canonicalize(), rt.library.path.canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => wanted == rt.library.path,
            };
            if !same {
                return Err(Error::Model(format!(
                    "ONNX Runtime is already loaded in this process from {}; cannot switch to {}",
                    rt.library.path.display(),
                    wanted.display()
                ).into()));
            }
        }
        return Ok(rt.clone());
    }
    let probe = |p: &Path| ort::util::probe(p);
    let library = ort_lib::locate(search, &probe, say)?;
    let env = ort::init_from(&library.path)
        .map_err(|e| model_err("cannot load ONNX Runtime", e))?
        .with_name("gsimg")
        .build()
        .map_err(|e| model_err("cannot start ONNX Runtime", e))?;
    let rt = Arc::new(Runtime { library, env });
    *guard = Some(rt.clone());
    Ok(rt)
}

/// An open model session.
pub(crate) struct OnnxModel {
    session: Mutex<Session>,
    pub provider: Provider,
    pub library: FoundLibrary,
    /// Why CUDA was not used, when it was allowed but fell back.
    pub fallback_reason: Option<String>,
}

fn declare(outlets: &[ort::value::Outlet]) -> Vec<TensorDecl> {
    outlets
        .iter()
        .map(|o| TensorDecl {
            name: o.name().to_string(),
            is_f32: o
                .dtype()
                .tensor_type()
                .map(|t| t == ort::value::TensorElementType::Float32),
            shape: o
                .dtype()
                .tensor_shape()
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default(),
        })
        .collect()
}

fn read_decl(session: &Session) -> Result<ModelDecl> {
    let meta = session
        .metadata()
        .map_err(|e| model_err("cannot read the model's metadata", e))?;
    let mut metadata = BTreeMap::new();
    for key in meta
        .custom_keys()
        .map_err(|e| model_err("cannot read the model's metadata", e))?
    {
        if let Some(v) = meta.custom(&key) {
            metadata.insert(key, v);
        }
    }
    Ok(ModelDecl {
        inputs: declare(session.inputs()),
        outputs: declare(session.outputs()),
        metadata,
    })
}

/// Receives the `gaussians` output: its shape and values.
pub(crate) type OutputSink<'a> = &'a mut dyn FnMut(&[i64], &[f32]) -> Result<()>;

/// Watches a network run from another thread: called about every [`WATCH_INTERVAL`] with the
/// time the run has taken so far; returning `true` stops the run ([`Error::Cancelled`]).
pub(crate) type Watch<'a> = &'a (dyn Fn(std::time::Duration) -> bool + Sync);

/// How often a [`Watch`] is called during a run.
pub(crate) const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// What the caller checks before a session is used: the model's declaration, turned into the
/// size of a warm-up input (height, width), or an error if the model is unusable.
pub(crate) type Validate<'a> = &'a dyn Fn(&ModelDecl) -> Result<(usize, usize)>;

impl OnnxModel {
    /// Opens `model` on `device`. `validate` checks the declaration and names the warm-up size.
    pub fn open(
        model: &Path,
        device: Device,
        search: &LibrarySearch,
        threads: usize,
        validate: Validate<'_>,
        say: &dyn Fn(&str),
    ) -> Result<OnnxModel> {
        if !model.is_file() {
            return Err(Error::Model(format!(
                "model {}: {}",
                model.display(),
                if model.exists() {
                    "not a file"
                } else {
                    "no such file"
                }
            ).into()));
        }
        let rt = runtime(search, say)?;
        let ctx = |what: &str| format!("model {}: {what}", model.display());
        let cpu_session = || -> Result<Session> {
            let r = (|| -> ort::Result<Session> {
                let mut b = Session::builder(&rt.env)?;
                if threads > 0 {
                    b = b.with_intra_threads(threads)?;
                }
                b.commit_from_file(model)
            })();
            r.map_err(|e| model_err(&ctx("cannot load it as an ONNX model"), e))
        };
        let mut fallback_reason = None;
        if device != Device::Cpu {
            match Self::try_cuda(&rt, model, validate) {
                Ok(session) => {
                    return Ok(OnnxModel {
                        session: Mutex::new(session),
                        provider: Provider::Cuda,
                        library: rt.library.clone(),
                        fallback_reason: None,
                    });
                }
                Err(CudaFailure::Model(e)) => return Err(e),
                Err(CudaFailure::Unavailable(why)) => {
                    if device == Device::Cuda {
                        return Err(Error::CudaProviderUnavailable {
                            cpu_only_build: why.starts_with(NOT_BUILT),
                            reason: why,
                            runtime_minor: rt.library.minor,
                            runtime_path: rt.library.path.clone(),
                        });
                    }
                    // A CPU-only library is the normal case, not worth a message.
                    if !why.starts_with(NOT_BUILT) {
                        fallback_reason = Some(why);
                    }
                }
            }
        }
        let session = cpu_session()?;
        let decl = read_decl(&session)?;
        validate(&decl).map_err(|e| prefix(e, &ctx("")))?;
        Ok(OnnxModel {
            session: Mutex::new(session),
            provider: Provider::Cpu,
            library: rt.library.clone(),
            fallback_reason,
        })
    }

    /// ONNX Runtime's messages start with its source location and status code: keep the text.
    fn clean(e: &dyn std::fmt::Display) -> String {
        let s = e.to_string();
        let s = match s.rfind(" : FAIL : ") {
            Some(i) => &s[i + " : FAIL : ".len()..],
            None => &s,
        };
        s.trim().to_string()
    }

    fn try_cuda(
        rt: &Runtime,
        model: &Path,
        validate: Validate<'_>,
    ) -> std::result::Result<Session, CudaFailure> {
        let unavailable = |e: &dyn std::fmt::Display| CudaFailure::Unavailable(Self::clean(e));
        match ep::CUDA::is_available() {
            Ok(true) => {}
            Ok(false) => {
                return Err(CudaFailure::Unavailable(NOT_BUILT.into()));
            }
            Err(e) => return Err(unavailable(&e)),
        }
        // Heuristic convolution algorithms: an exhaustive search costs seconds per new input
        // shape (every tile size), too much for a command that encodes one picture.
        let cuda = ep::CUDA::default()
            .with_device_id(0)
            .with_conv_algorithm_search(ep::cuda::ConvAlgorithmSearch::Heuristic)
            .build()
            .error_on_failure();
        let session = (|| -> ort::Result<Session> {
            Session::builder(&rt.env)?
                .with_execution_providers([cuda])?
                .commit_from_file(model)
        })()
        .map_err(|e| unavailable(&e))?;
        let decl = read_decl(&session).map_err(CudaFailure::Model)?;
        let (h, w) = validate(&decl)
            .map_err(|e| CudaFailure::Model(prefix(e, &format!("model {}: ", model.display()))))?;
        let mut session = session;
        // cuDNN and the kernels load at the first run: warm up before trusting CUDA.
        let zeros = vec![0f32; 3 * h * w];
        let options = run_options().map_err(CudaFailure::Model)?;
        run_raw(&mut session, &zeros, h, w, &options, &mut |_, _| Ok(())).map_err(|e| {
            CudaFailure::Unavailable(format!("warm-up run failed: {}", Self::clean(&e)))
        })?;
        Ok(session)
    }

    /// Runs the network on one planar RGB image `[3, h, w]` and hands the `gaussians` output
    /// (shape, values) to `f` without copying it. With `watch`, a thread calls it while the
    /// network runs (progress within one run) and stops the run when it returns `true`: ONNX
    /// Runtime checks its terminate flag between the graph's nodes, so a cancel takes effect
    /// within one node (a convolution), and the run returns [`Error::Cancelled`].
    pub fn run(
        &self,
        image: &[f32],
        h: usize,
        w: usize,
        f: OutputSink<'_>,
        watch: Option<Watch<'_>>,
    ) -> Result<()> {
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let options = run_options()?;
        let Some(watch) = watch else {
            return run_raw(&mut session, image, h, w, &options, f);
        };
        let (done, stopped) = (Mutex::new(false), std::sync::atomic::AtomicBool::new(false));
        let wake = std::sync::Condvar::new();
        let (done, stopped, wake, opts) = (&done, &stopped, &wake, &options);
        std::thread::scope(|scope| {
            let start = std::time::Instant::now();
            scope.spawn(move || {
                let mut finished = done.lock().unwrap_or_else(|p| p.into_inner());
                while !*finished {
                    finished = wake
                        .wait_timeout(finished, WATCH_INTERVAL)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    if !*finished && watch(start.elapsed()) {
                        stopped.store(true, std::sync::atomic::Ordering::Relaxed);
                        // Only fails if the options are gone, which the scope prevents.
                        let _ = opts.terminate();
                        break;
                    }
                }
            });
            let r = run_raw(&mut session, image, h, w, &options, f);
            *done.lock().unwrap_or_else(|p| p.into_inner()) = true;
            wake.notify_all();
            match r {
                Err(_) if stopped.load(std::sync::atomic::Ordering::Relaxed) => {
                    Err(Error::Cancelled)
                }
                r => r,
            }
        })
    }
}

const NOT_BUILT: &str = "this ONNX Runtime library was built without the CUDA execution provider";

enum CudaFailure {
    /// The model itself is wrong: no point trying the CPU.
    Model(Error),
    /// CUDA cannot run here.
    Unavailable(String),
}

fn prefix(e: Error, p: &str) -> Error {
    match e {
        Error::Model(m) if !p.is_empty() => Error::Model(m.prefixed(p)),
        e => e,
    }
}

/// The options of one run: ONNX Runtime's CPU memory arena returns its memory after the run.
/// A picture run in tiles otherwise kept the high-water mark of its largest tile's
/// activations, grown in doubling chunks (1.8 GiB instead of 0.8 for a 4 MP picture in tiles
/// of 2 MP), while the arena within a run keeps its speed (BENCHMARKS.md, "Encoder memory").
fn run_options() -> Result<ort::session::RunOptions> {
    let mut options = ort::session::RunOptions::new()
        .map_err(|e| model_err("cannot create the run options", e))?;
    options
        .set("memory.enable_memory_arena_shrinkage", "cpu:0")
        .map_err(|e| model_err("cannot set the run options", e))?;
    Ok(options)
}

fn run_raw(
    session: &mut Session,
    image: &[f32],
    h: usize,
    w: usize,
    options: &ort::session::RunOptions,
    f: OutputSink<'_>,
) -> Result<()> {
    let input = TensorRef::from_array_view(([1usize, 3, h, w], image))
        .map_err(|e| model_err("cannot build the input tensor", e))?;
    let outputs = session
        .run_with_options(ort::inputs!["image" => input], options)
        .map_err(|e| model_err(&format!("the network failed on a {w}x{h} input"), e))?;
    let out = outputs
        .get("gaussians")
        .ok_or_else(|| Error::Model("the network has no output named `gaussians`".into()))?;
    let (shape, data) = out
        .try_extract_tensor::<f32>()
        .map_err(|e| model_err("the `gaussians` output is not a float32 tensor", e))?;
    f(shape, data)
}
