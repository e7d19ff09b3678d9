//! The kernel registry: embedded PTX per kernel file, and every kernel's module and name.
//!
//! The PTX in `kernels/ptx/` is generated from `kernels/*.cu` by `scripts/build-ptx.sh` (nvcc
//! 13.0.88 from PyPI, `-arch=compute_75`) and committed, so builds need no CUDA toolkit;
//! `kernels/ptx/MANIFEST` records the sha256 of each source and PTX file, and a CPU test
//! (`tests/cuda.rs`) checks that it matches the sources.

/// The kernel files, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Module {
    Project = 0,
    Bin = 1,
    Rasterize = 2,
    Refine = 3,
}

pub(crate) const MODULE_COUNT: usize = 4;

/// (file name, PTX text) of each module, indexed by `Module`.
pub const PTX_FILES: [(&str, &str); MODULE_COUNT] = [
    ("project.ptx", include_str!("../../kernels/ptx/project.ptx")),
    ("bin.ptx", include_str!("../../kernels/ptx/bin.ptx")),
    (
        "rasterize.ptx",
        include_str!("../../kernels/ptx/rasterize.ptx"),
    ),
    ("refine.ptx", include_str!("../../kernels/ptx/refine.ptx")),
];

/// Every kernel, named like its `extern "C"` function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    ProjectGaussians,
    ScanBlocks,
    ScanAdd,
    EmitPairs,
    RadixHistogram,
    RadixScan,
    RadixScatter,
    TileRanges,
    /// `rasterize_{u8,f32}_c{1..4}`: index = kind * 4 + channels - 1.
    Rasterize(u8),
    /// `refine_forward_c{1..4}`: index = channels - 1.
    RefineForward(u8),
    RefineLoss,
    /// `refine_backward_c{1..4}`: index = channels - 1.
    RefineBackward(u8),
    RefineUpdate,
    /// The colour fit's conjugate gradients (`fit_*` in refine.cu).
    FitStart,
    FitProduct,
    FitReduce,
    FitStep,
    FitDirection,
    FitFinish,
    /// `moves_blend_c{1..4}`: index = channels - 1.
    MovesBlend(u8),
    /// `moves_cost_c{1..4}`: index = channels - 1.
    MovesCost(u8),
    MovesGather,
}

pub(crate) const KERNEL_COUNT: usize = 41;

const MOVES_BLEND_NAMES: [&str; 4] = [
    "moves_blend_c1",
    "moves_blend_c2",
    "moves_blend_c3",
    "moves_blend_c4",
];

const MOVES_COST_NAMES: [&str; 4] = [
    "moves_cost_c1",
    "moves_cost_c2",
    "moves_cost_c3",
    "moves_cost_c4",
];

const REFINE_FORWARD_NAMES: [&str; 4] = [
    "refine_forward_c1",
    "refine_forward_c2",
    "refine_forward_c3",
    "refine_forward_c4",
];

const REFINE_BACKWARD_NAMES: [&str; 4] = [
    "refine_backward_c1",
    "refine_backward_c2",
    "refine_backward_c3",
    "refine_backward_c4",
];

const RASTERIZE_NAMES: [&str; 8] = [
    "rasterize_u8_c1",
    "rasterize_u8_c2",
    "rasterize_u8_c3",
    "rasterize_u8_c4",
    "rasterize_f32_c1",
    "rasterize_f32_c2",
    "rasterize_f32_c3",
    "rasterize_f32_c4",
];

impl Kernel {
    /// Position in the function cache.
    pub(crate) fn index(self) -> usize {
        match self {
            Kernel::ProjectGaussians => 0,
            Kernel::ScanBlocks => 1,
            Kernel::ScanAdd => 2,
            Kernel::EmitPairs => 3,
            Kernel::RadixHistogram => 4,
            Kernel::RadixScan => 5,
            Kernel::RadixScatter => 6,
            Kernel::TileRanges => 7,
            Kernel::Rasterize(i) => 8 + i as usize,
            Kernel::RefineForward(i) => 16 + i as usize,
            Kernel::RefineLoss => 20,
            Kernel::RefineBackward(i) => 21 + i as usize,
            Kernel::RefineUpdate => 25,
            Kernel::FitStart => 26,
            Kernel::FitProduct => 27,
            Kernel::FitReduce => 28,
            Kernel::FitStep => 29,
            Kernel::FitDirection => 30,
            Kernel::FitFinish => 31,
            Kernel::MovesBlend(i) => 32 + i as usize,
            Kernel::MovesCost(i) => 36 + i as usize,
            Kernel::MovesGather => 40,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kernel::ProjectGaussians => "project_gaussians",
            Kernel::ScanBlocks => "scan_blocks",
            Kernel::ScanAdd => "scan_add",
            Kernel::EmitPairs => "emit_pairs",
            Kernel::RadixHistogram => "radix_histogram",
            Kernel::RadixScan => "radix_scan",
            Kernel::RadixScatter => "radix_scatter",
            Kernel::TileRanges => "tile_ranges",
            Kernel::Rasterize(i) => RASTERIZE_NAMES[i as usize],
            Kernel::RefineForward(i) => REFINE_FORWARD_NAMES[i as usize],
            Kernel::RefineLoss => "refine_loss",
            Kernel::RefineBackward(i) => REFINE_BACKWARD_NAMES[i as usize],
            Kernel::RefineUpdate => "refine_update",
            Kernel::FitStart => "fit_start",
            Kernel::FitProduct => "fit_product",
            Kernel::FitReduce => "fit_reduce",
            Kernel::FitStep => "fit_step",
            Kernel::FitDirection => "fit_direction",
            Kernel::FitFinish => "fit_finish",
            Kernel::MovesBlend(i) => MOVES_BLEND_NAMES[i as usize],
            Kernel::MovesCost(i) => MOVES_COST_NAMES[i as usize],
            Kernel::MovesGather => "moves_gather",
        }
    }

    pub(crate) fn module(self) -> Module {
        match self {
            Kernel::ProjectGaussians => Module::Project,
            Kernel::Rasterize(_) => Module::Rasterize,
            Kernel::RefineForward(_)
            | Kernel::RefineLoss
            | Kernel::RefineBackward(_)
            | Kernel::RefineUpdate
            | Kernel::FitStart
            | Kernel::FitProduct
            | Kernel::FitReduce
            | Kernel::FitStep
            | Kernel::FitDirection
            | Kernel::FitFinish
            | Kernel::MovesBlend(_)
            | Kernel::MovesCost(_)
            | Kernel::MovesGather => Module::Refine,
            _ => Module::Bin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_is_in_its_ptx() {
        let all = [
            Kernel::ProjectGaussians,
            Kernel::ScanBlocks,
            Kernel::ScanAdd,
            Kernel::EmitPairs,
            Kernel::RadixHistogram,
            Kernel::RadixScan,
            Kernel::RadixScatter,
            Kernel::TileRanges,
            Kernel::RefineLoss,
            Kernel::RefineUpdate,
            Kernel::FitStart,
            Kernel::FitProduct,
            Kernel::FitReduce,
            Kernel::FitStep,
            Kernel::FitDirection,
            Kernel::FitFinish,
            Kernel::MovesGather,
        ]
        .into_iter()
        .chain((0..8).map(Kernel::Rasterize))
        .chain((0..4).map(Kernel::RefineForward))
        .chain((0..4).map(Kernel::RefineBackward))
        .chain((0..4).map(Kernel::MovesBlend))
        .chain((0..4).map(Kernel::MovesCost));
        let mut seen = [false; KERNEL_COUNT];
        for k in all {
            assert!(!seen[k.index()], "{k:?}");
            seen[k.index()] = true;
            let ptx = PTX_FILES[k.module() as usize].1;
            assert!(
                ptx.contains(&format!(".entry {}(", k.name())),
                "{} not in {}",
                k.name(),
                PTX_FILES[k.module() as usize].0
            );
        }
        assert!(seen.iter().all(|s| *s));
    }
}
