//! fastctc: CTC loss on the CPU, and a small speech trainer built on it.
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "audio")]
pub mod audio;
pub mod float;
#[cfg(feature = "audio")]
pub mod train;

pub use float::Float;
