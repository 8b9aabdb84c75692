//! fastctc: CTC loss on the CPU, and a small speech trainer built on it.
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod float;

pub use float::Float;
#[cfg(feature = "nn")]
pub mod nn;
#[cfg(feature = "nn")]
pub mod optim;
