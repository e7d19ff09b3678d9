//! The optimization toolbox both encoders share: colour fits, gradient refinement, moves of
//! Gaussians, coverage of empty cells, the alpha fit and symmetry averaging.

pub(crate) mod alpha;
pub(crate) mod coverage;
pub mod fit;
pub mod realloc;
pub mod refine;
pub mod symmetry;
