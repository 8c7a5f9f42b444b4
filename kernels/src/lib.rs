//! GPU kernels (CUDA C compiled at run time with NVRTC through cudarc) and a CPU reference
//! of each: decode and normalise splats as the validator does, render its 16 views, and
//! measure them. Nothing lives here yet: the kernels issue builds it.
