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
    InputImage(String),

    /// An output image could not be encoded.
    #[error("cannot write output image: {0}")]
    OutputImage(String),

    /// A neural encoder model could not be loaded or run, or the ONNX Runtime library found
    /// failed.
    #[error("{0}")]
    Model(String),

    /// No usable ONNX Runtime library could be found or fetched (the network encoders need
    /// one; the analytic encoder does not). Not a fault of any file.
    #[error("{0}")]
    RuntimeUnavailable(String),

    /// No usable GPU: no NVIDIA driver, no CUDA device, a GPU too old for gsimg's kernels, or
    /// gsimg built without CUDA. Not a fault: callers use the CPU renderer.
    #[error("no usable CUDA GPU: {0}")]
    NoGpu(String),

    /// The CUDA renderer failed on a usable GPU (out of memory, a launch failure, …).
    #[error("CUDA: {0}")]
    Cuda(String),

    /// The caller cancelled the work (a decode or render option's cancel flag was set).
    #[error("cancelled")]
    Cancelled,

    /// An I/O error from the operating system.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name,
            reason: reason.into(),
        }
    }
}
