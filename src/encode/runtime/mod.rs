//! ONNX Runtime: finding and loading the shared library, and running a model.

#[cfg(feature = "onnx")]
pub(crate) mod onnx;
#[cfg(not(feature = "onnx"))]
#[path = "onnx_stub.rs"]
pub(crate) mod onnx;
pub mod ort_lib;

/// Declared type and shape of a model input or output (`-1` for a dynamic dimension).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorDecl {
    pub name: String,
    /// `None` when the value is not a tensor; `Some(true)` when it holds float32.
    pub is_f32: Option<bool>,
    pub shape: Vec<i64>,
}

/// What a model file declares, read before anything runs.
#[derive(Debug, Clone)]
pub(crate) struct ModelDecl {
    pub inputs: Vec<TensorDecl>,
    pub outputs: Vec<TensorDecl>,
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// Which device runs the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// CUDA when the ONNX Runtime library has it and it works, else the CPU.
    #[default]
    Auto,
    /// The CPU execution provider.
    Cpu,
    /// The CUDA execution provider, or an error.
    Cuda,
}

/// The execution provider that actually ran the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// `CPUExecutionProvider`.
    Cpu,
    /// `CUDAExecutionProvider`.
    Cuda,
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provider::Cpu => "CPUExecutionProvider",
            Provider::Cuda => "CUDAExecutionProvider",
        })
    }
}
