//! The scorer on CUDA (to be filled in).
