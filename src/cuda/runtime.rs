//! The device: driver detection, the CUDA context, and the lazily loaded kernel modules.

use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream, DriverError};
use cudarc::nvrtc::Ptx;

use super::kernels::{KERNEL_COUNT, Kernel, MODULE_COUNT, PTX_FILES};
use crate::core::error::Cause;
use crate::{Error, Result};

/// Oldest compute capability the PTX targets (`-arch=compute_75`, Turing).
pub(crate) const MIN_COMPUTE_CAPABILITY: (i32, i32) = (7, 5);

/// Maps a driver error to [`Error::Cuda`], saying what was being done.
pub(crate) fn driver_err(what: &'static str) -> impl FnOnce(DriverError) -> Error {
    move |e| Error::Cuda(Cause::with_source(format!("{what}: {e}"), e))
}

/// A failure to open device `ordinal`: out of memory is a fault of a usable GPU
/// ([`Error::Cuda`]); anything else (no such device, no device at all, …) means there is no
/// usable GPU ([`Error::NoGpu`]).
fn open_err(e: DriverError) -> Error {
    let why = format!("cannot open CUDA device: {e}");
    if fault_of_a_usable_gpu(e.0) {
        Error::Cuda(Cause::with_source(why, e))
    } else {
        Error::NoGpu(Cause::with_source(why, e))
    }
}

fn fault_of_a_usable_gpu(code: cudarc::driver::sys::CUresult) -> bool {
    code == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY
}

/// Whether libcuda can be loaded. Checked before any driver call: cudarc panics when a driver
/// function is called without the library.
pub(crate) fn driver_present() -> bool {
    // SAFETY: only tries to dlopen libcuda under its usual names and closes it again; no CUDA
    // function is called.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Number of CUDA devices, 0 without a driver.
#[cfg(feature = "unstable")]
pub(crate) fn device_count() -> usize {
    if !driver_present() {
        return 0;
    }
    if cudarc::driver::result::init().is_err() {
        return 0;
    }
    CudaContext::device_count().map_or(0, |n| n.max(0) as usize)
}

/// A CUDA context with gsimg's kernels, shared by every object of one [`super::CudaRenderer`].
pub(crate) struct Runtime {
    pub(crate) ctx: Arc<CudaContext>,
    /// Stream for allocations not tied to one image (device frames).
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) name: String,
    pub(crate) multiprocessors: u32,
    modules: [OnceLock<Arc<CudaModule>>; MODULE_COUNT],
    functions: [OnceLock<CudaFunction>; KERNEL_COUNT],
}

/// The runtimes opened so far with their device ordinals: one per device for the process.
type Opened = Mutex<Vec<(usize, Arc<Runtime>)>>;
static SHARED: OnceLock<Opened> = OnceLock::new();

impl Runtime {
    /// The process's runtime of device `ordinal`, opened on first use. Opening a device (its
    /// primary context) and loading the kernels costs tens to hundreds of milliseconds, which
    /// an encode that renders, refines and then refines again on the quantization grid would
    /// otherwise pay each time; later callers share the context, the loaded kernels and the
    /// device-frame stream, and each image or refiner still gets its own stream.
    pub(crate) fn shared(ordinal: usize) -> Result<Arc<Runtime>> {
        let mut open = SHARED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((_, rt)) = open.iter().find(|(o, _)| *o == ordinal) {
            return Ok(rt.clone());
        }
        let rt = Runtime::new(ordinal)?;
        open.push((ordinal, rt.clone()));
        Ok(rt)
    }

    fn new(ordinal: usize) -> Result<Arc<Runtime>> {
        if !driver_present() {
            return Err(Error::NoGpu(
                "no NVIDIA driver found (libcuda.so could not be loaded)".into(),
            ));
        }
        let ctx = CudaContext::new(ordinal).map_err(open_err)?;
        // SAFETY: gsimg manages stream ordering itself: every buffer of a GpuImage or
        // CudaDecoder is allocated, used and freed on that object's one stream, and device
        // frames are synchronized after allocation and after each render into them (see api.rs),
        // so the per-buffer events cudarc would otherwise record on every launch are not needed.
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx
            .compute_capability()
            .map_err(driver_err("cannot query the device"))?;
        if (major, minor) < MIN_COMPUTE_CAPABILITY {
            return Err(Error::NoGpu(format!(
                "the GPU has compute capability {major}.{minor}; gsimg's kernels need {}.{} or newer",
                MIN_COMPUTE_CAPABILITY.0, MIN_COMPUTE_CAPABILITY.1
            ).into()));
        }
        let name = ctx.name().map_err(driver_err("cannot query the device"))?;
        let multiprocessors = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(driver_err("cannot query the device"))?
            .max(1) as u32;
        let stream = ctx
            .new_stream()
            .map_err(driver_err("cannot create a stream"))?;
        Ok(Arc::new(Runtime {
            ctx,
            stream,
            name,
            multiprocessors,
            modules: Default::default(),
            functions: std::array::from_fn(|_| OnceLock::new()),
        }))
    }

    /// The kernel, loading its module on first use (the driver JIT-compiles the PTX for this GPU
    /// and caches the result on disk).
    pub(crate) fn function(&self, k: Kernel) -> Result<&CudaFunction> {
        let slot = &self.functions[k.index()];
        if let Some(f) = slot.get() {
            return Ok(f);
        }
        let m = k.module() as usize;
        let module = match self.modules[m].get() {
            Some(module) => module,
            None => {
                let (file, ptx) = PTX_FILES[m];
                let module = self.ctx.load_module(Ptx::from_src(ptx)).map_err(|e| {
                    Error::Cuda(format!("cannot load kernels/ptx/{file}: {e}").into())
                })?;
                // Another thread may have loaded it meanwhile: either copy is fine.
                let _ = self.modules[m].set(module);
                self.modules[m].get().expect("just set")
            }
        };
        let f = module
            .load_function(k.name())
            .map_err(|e| Error::Cuda(format!("kernel {} not found: {e}", k.name()).into()))?;
        let _ = slot.set(f);
        Ok(slot.get().expect("just set"))
    }

    /// Creates a stream of its own for one image or decoder.
    pub(crate) fn new_stream(&self) -> Result<Arc<CudaStream>> {
        self.ctx
            .new_stream()
            .map_err(driver_err("cannot create a stream"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cudarc::driver::sys::CUresult;

    #[test]
    fn out_of_memory_is_a_warning_not_a_missing_gpu() {
        // What the H100 said when another process held its memory (BENCHMARKS.md, CUDA
        // renderer, "Rerun"): a fault of a usable GPU, not a missing one. (The messages
        // themselves need the driver to format, so the codes are checked.)
        assert!(fault_of_a_usable_gpu(CUresult::CUDA_ERROR_OUT_OF_MEMORY));
        assert!(!fault_of_a_usable_gpu(CUresult::CUDA_ERROR_NO_DEVICE));
        assert!(!fault_of_a_usable_gpu(CUresult::CUDA_ERROR_INVALID_DEVICE));
    }
}
