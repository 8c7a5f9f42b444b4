//! The CPU reference of every kernel, parallel with rayon. It is the fallback backend when
//! no GPU is present and the ground truth the GPU path is checked against.

mod metrics;
mod raster;

pub use metrics::measure;
pub use raster::render;
