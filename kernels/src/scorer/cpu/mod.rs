//! The CPU reference of the scorer (to be filled in).
