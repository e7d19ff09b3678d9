//! What the subcommands share: the usage error, the run context, value parsers, and the hints
//! the command line adds to library errors.

/// A wrong command line found after parsing (options that cannot go together, a size that
/// rounds to nothing): `main` reports it with exit status 2, as clap does its own.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns early with a [`UsageError`].
macro_rules! usage {
    ($($t:tt)*) => {
        return Err(anyhow::Error::new($crate::common::UsageError(format!($($t)*))))
    };
}
pub(crate) use usage;

/// What every subcommand is run with.
pub struct Context {
    /// The resource limits.
    pub limits: gsimg::Limits,
    /// `--force`: replace outputs that the checks of [`output::Output::claim`] protect.
    pub force: bool,
}

/// Value parsers that accept negative-looking values (`--scale -1`) and reject them with the
/// real reason, rather than clap's "unexpected argument".
pub mod parse {
    /// A positive finite real number.
    pub fn positive(s: &str) -> Result<f64, String> {
        match s.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
            Ok(_) => Err("must be a positive number".into()),
            Err(_) => Err("expected a positive number, e.g. 2.5".into()),
        }
    }

    /// A whole number of at least 1 (pixels, threads).
    pub fn at_least_one(s: &str) -> Result<u32, String> {
        match s.trim().parse::<i64>() {
            Ok(v) if v >= 1 && v <= u32::MAX as i64 => Ok(v as u32),
            Ok(v) if v < 1 => Err("must be at least 1".into()),
            Ok(_) => Err(format!("must be at most {}", u32::MAX)),
            Err(_) => Err("expected a whole number, e.g. 1920".into()),
        }
    }

    /// A whole number of 0 or more.
    pub fn count(s: &str) -> Result<usize, String> {
        match s.trim().parse::<i64>() {
            Ok(v) if v >= 0 => Ok(v as usize),
            Ok(_) => Err("must be 0 or more".into()),
            Err(_) => Err("expected a whole number, e.g. 40".into()),
        }
    }

    /// A quality from 1 to 100.
    pub fn quality(s: &str) -> Result<u8, String> {
        match s.trim().parse::<i64>() {
            Ok(v) if (1..=100).contains(&v) => Ok(v as u8),
            Ok(_) => Err("must be from 1 to 100".into()),
            Err(_) => Err("expected a whole number from 1 to 100".into()),
        }
    }
}

/// A library error as the command line says it: the library's errors name no command-line
/// options, so the options that fix a missing model, a GPU-only network or a build without
/// ONNX Runtime are added here.
pub fn describe(e: &gsimg::Error) -> String {
    use gsimg::Error;
    match e {
        Error::ModelNotFound {
            kind: "compact", ..
        } => format!("{e}; pass one with --model PATH, or use --method analytic"),
        Error::ModelNotFound { .. } => format!("{e}; pass one with --model PATH"),
        Error::CudaProviderUnavailable {
            reason,
            cpu_only_build: true,
            runtime_minor,
            runtime_path,
        } => format!(
            "--device cuda: the CUDA execution provider cannot run: {reason} (ONNX Runtime \
             1.{runtime_minor} from {}); set ORT_DYLIB_PATH (or --ort-lib) to the GPU build's \
             libonnxruntime.so.1.x (PyPI onnxruntime-gpu, with \
             libonnxruntime_providers_shared.so and libonnxruntime_providers_cuda.so next to \
             it); or use --device cpu",
            runtime_path.display()
        ),
        Error::CudaProviderUnavailable { .. } => format!("--device cuda: {e}; or use --device cpu"),
        Error::NotBuiltWith {
            feature: "onnx", ..
        } => {
            let text = e.to_string();
            match text.strip_suffix(')') {
                Some(head) => format!("{head}, or use --method analytic)"),
                None => text,
            }
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::describe;
    use gsimg::Error;

    /// The library's typed errors, worded as the command line has always worded them.
    #[test]
    fn library_errors_get_the_options_that_fix_them() {
        let not_built = Error::CudaProviderUnavailable {
            reason: "this ONNX Runtime library was built without the CUDA execution provider"
                .into(),
            cpu_only_build: true,
            runtime_minor: 31,
            runtime_path: "/c/libonnxruntime.so.1.31.1".into(),
        };
        assert!(!not_built.to_string().contains("--"), "{not_built}");
        assert_eq!(
            describe(&not_built),
            "--device cuda: the CUDA execution provider cannot run: this ONNX Runtime library was built without the CUDA execution provider (ONNX Runtime 1.31 from /c/libonnxruntime.so.1.31.1); set ORT_DYLIB_PATH (or --ort-lib) to the GPU build's libonnxruntime.so.1.x (PyPI onnxruntime-gpu, with libonnxruntime_providers_shared.so and libonnxruntime_providers_cuda.so next to it); or use --device cpu"
        );
        let failed = Error::CudaProviderUnavailable {
            reason: "warm-up run failed: no kernel image".into(),
            cpu_only_build: false,
            runtime_minor: 31,
            runtime_path: "/g/libonnxruntime.so.1.31.1".into(),
        };
        assert!(!failed.to_string().contains("--"), "{failed}");
        assert_eq!(
            describe(&failed),
            "--device cuda: the CUDA execution provider cannot run: warm-up run failed: no kernel image (ONNX Runtime 1.31 from /g/libonnxruntime.so.1.31.1); this needs an NVIDIA GPU and driver, and the CUDA and cuDNN libraries that build was made for (CUDA 13 and cuDNN 9 for onnxruntime-gpu 1.31) on the loader path, e.g. through LD_LIBRARY_PATH; or use --device cpu"
        );
        let no_onnx = Error::NotBuiltWith {
            feature: "onnx",
            what: "the network encoder",
        };
        assert_eq!(
            describe(&no_onnx),
            "this gsimg was built without the `onnx` feature: the network encoder is unavailable (rebuild with `--features onnx`, or use --method analytic)"
        );
        let compact = Error::ModelNotFound {
            kind: "compact",
            tried: vec!["/m/compact.onnx".into()],
        };
        assert_eq!(
            describe(&compact),
            "no compact model found (tried /m/compact.onnx); pass one with --model PATH, or use --method analytic"
        );
        let upscale = Error::ModelNotFound {
            kind: "upscale",
            tried: vec![],
        };
        assert_eq!(
            describe(&upscale),
            "no upscale model given; pass one with --model PATH"
        );
        let other = Error::Cancelled;
        assert_eq!(describe(&other), "cancelled");
    }
}
