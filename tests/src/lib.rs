//! Placeholder
pub mod sim;
