//! Stand-in for `onnx.rs` when gsimg is built without the `onnx` feature: the same items, every
//! attempt to open a model an [`Error::Model`].

use std::path::Path;

use super::ort_lib::{FoundLibrary, LibrarySearch};
pub(crate) use super::{ModelDecl, TensorDecl};
use super::{Device, Provider};
use crate::{Error, Result};

pub(crate) type OutputSink<'a> = &'a mut dyn FnMut(&[i64], &[f32]) -> Result<()>;

pub(crate) type Watch<'a> = &'a (dyn Fn(std::time::Duration) -> bool + Sync);

pub(crate) type Validate<'a> = &'a dyn Fn(&ModelDecl) -> Result<(usize, usize)>;

/// Never constructed without the `onnx` feature.
pub(crate) struct OnnxModel {
    pub provider: Provider,
    pub library: FoundLibrary,
    pub fallback_reason: Option<String>,
}

impl OnnxModel {
    pub fn open(
        _model: &Path,
        _device: Device,
        _search: &LibrarySearch,
        _threads: usize,
        _validate: Validate<'_>,
        _say: &dyn Fn(&str),
    ) -> Result<OnnxModel> {
        Err(Error::NotBuiltWith {
            feature: "onnx",
            what: "the network encoder",
        })
    }

    pub fn run(
        &self,
        _image: &[f32],
        _h: usize,
        _w: usize,
        _f: OutputSink<'_>,
        _watch: Option<Watch<'_>>,
    ) -> Result<()> {
        Err(Error::Model("built without the `onnx` feature".into()))
    }
}
