//! The crate's error type: one enum with a variant per fault class.
//!
//! Whose fault it is decides the variant: a malformed file is [`Error::Format`], a request the
//! caller got wrong is [`Error::InvalidParameter`], a well-formed request that would exceed the
//! configured [`Limits`](crate::Limits) is [`Error::LimitsExceeded`], and I/O is [`Error::Io`].

use super::format_error::FormatError;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in gsimg.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `.gsi` bytes are malformed, truncated or corrupted.
    #[error("invalid .gsi file: {0}")]
    Format(#[from] FormatError),

    /// The caller passed an argument outside its valid range.
    #[error("invalid {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name, e.g. `"scale"`.
        name: &'static str,
        /// What is wrong with it, including the accepted range.
        reason: String,
    },

    /// A well-formed input or request would exceed a configured limit.
    #[error("{what} is {value}, over the limit of {limit}")]
    LimitsExceeded {
        /// What was measured, e.g. `"output pixel count"`.
        what: &'static str,
        /// The requested amount.
        value: u64,
        /// The configured maximum.
        limit: u64,
    },

    /// An input image could not be read or decoded.
    #[error("cannot read input image: {0}")]
    InputImage(#[source] Cause),

    /// An output image could not be encoded.
    #[error("cannot write output image: {0}")]
    OutputImage(#[source] Cause),

    /// A neural encoder model could not be loaded or run, or the ONNX Runtime library found
    /// failed.
    #[error("{0}")]
    Model(#[source] Cause),

    /// No usable ONNX Runtime library could be found or fetched (the network encoders need
    /// one; the analytic encoder does not). Not a fault of any file.
    #[error("{0}")]
    RuntimeUnavailable(#[source] Cause),

    /// The network was asked to run on a GPU only
    /// ([`network::Device::Cuda`](crate::network::Device::Cuda)) and ONNX Runtime's CUDA
    /// execution provider cannot run. Not a fault of any file: the caller may ask for the CPU
    /// instead.
    #[error(
        "the CUDA execution provider cannot run: {reason} (ONNX Runtime 1.{runtime_minor} from \
         {}); {}",
        runtime_path.display(),
        if *cpu_only_build { CPU_ONLY_BUILD_FIX } else { CUDA_LIBRARIES_FIX }
    )]
    CudaProviderUnavailable {
        /// ONNX Runtime's reason.
        reason: String,
        /// The library is a build without the CUDA provider (PyPI's `onnxruntime`), rather
        /// than a GPU build whose provider failed to start.
        cpu_only_build: bool,
        /// The ONNX Runtime library's minor version (`1.31.1` gives 31).
        runtime_minor: u32,
        /// Where that library is.
        runtime_path: std::path::PathBuf,
    },

    /// This build of gsimg was made without a feature the request needs (`onnx` for the
    /// network encoders).
    #[error(
        "this gsimg was built without the `{feature}` feature: {what} is unavailable (rebuild \
         with `--features {feature}`)"
    )]
    NotBuiltWith {
        /// The Cargo feature, e.g. `"onnx"`.
        feature: &'static str,
        /// What needs it, e.g. `"the network encoder"`.
        what: &'static str,
    },

    /// No usable GPU: no NVIDIA driver, no CUDA device, a GPU too old for gsimg's kernels, or
    /// gsimg built without CUDA. Not a fault: callers use the CPU renderer.
    #[error("no usable CUDA GPU: {0}")]
    NoGpu(#[source] Cause),

    /// The CUDA renderer failed on a usable GPU (out of memory, a launch failure, …).
    #[error("CUDA: {0}")]
    Cuda(#[source] Cause),

    /// No model file was given, and none was found where the caller asked to look
    /// (`tried`, in order; empty when no search was asked for).
    #[error("no {kind} model {}", tried_text(.tried))]
    ModelNotFound {
        /// The kind of model wanted, e.g. `"compact"`.
        kind: &'static str,
        /// The paths looked at.
        tried: Vec<std::path::PathBuf>,
    },

    /// The caller cancelled the work (a decode or render option's cancel flag was set).
    #[error("cancelled")]
    Cancelled,

    /// An I/O error from the operating system.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// What [`Error::CudaProviderUnavailable`] suggests for a CPU-only build of ONNX Runtime.
const CPU_ONLY_BUILD_FIX: &str = "use the GPU build's libonnxruntime.so.1.x (PyPI \
     onnxruntime-gpu, with libonnxruntime_providers_shared.so and \
     libonnxruntime_providers_cuda.so next to it)";

/// What [`Error::CudaProviderUnavailable`] suggests for a GPU build whose provider failed.
const CUDA_LIBRARIES_FIX: &str = "this needs an NVIDIA GPU and driver, and the CUDA and \
     cuDNN libraries that build was made for (CUDA 13 and cuDNN 9 for onnxruntime-gpu 1.31) on \
     the loader path, e.g. through LD_LIBRARY_PATH";

fn tried_text(tried: &[std::path::PathBuf]) -> String {
    if tried.is_empty() {
        return "given".into();
    }
    let paths: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    format!("found (tried {})", paths.join(", "))
}

/// The detail of a fault outside gsimg's own checks (a picture decoder, a model file, ONNX
/// Runtime, the CUDA driver): a one-line message for people and, where there is one, the error
/// it comes from ([`std::error::Error::source`]). It dereferences to the message.
#[derive(Debug)]
pub struct Cause {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Cause {
    /// A cause with only a message.
    pub fn new(message: impl Into<String>) -> Self {
        Cause {
            message: message.into(),
            source: None,
        }
    }

    /// A cause with a message and the error it comes from.
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Cause {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The message with `prefix` in front, the source kept (ONNX Runtime's errors).
    #[cfg(feature = "onnx")]
    pub(crate) fn prefixed(self, prefix: &str) -> Self {
        Cause {
            message: format!("{prefix}{}", self.message),
            source: self.source,
        }
    }
}

impl std::ops::Deref for Cause {
    type Target = str;
    fn deref(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Cause::new(message)
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        Cause::new(message)
    }
}

impl Error {
    pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name,
            reason: reason.into(),
        }
    }
}
