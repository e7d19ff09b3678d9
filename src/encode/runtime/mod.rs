//! ONNX Runtime: finding and loading the shared library, and running a model.

#[cfg(feature = "onnx")]
pub(crate) mod onnx;
#[cfg(not(feature = "onnx"))]
#[path = "onnx_stub.rs"]
pub(crate) mod onnx;
pub mod ort_lib;
