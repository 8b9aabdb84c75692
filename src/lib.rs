//! fastctc: CTC loss on the CPU, and a small speech trainer built on it.
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod buffer;
pub mod error;
pub mod float;
pub mod loss;
pub mod simd;

pub use buffer::{ActsView, ActsViewMut, Index, Layout, Targets};
pub use error::CtcError;
pub use float::Float;
pub use loss::{
    ctc_compute, ctc_loss, ctc_loss_and_grad, CtcLoss, CtcOptions, GradOutput, InputKind, Parallelism,
    Reduction, Workspace,
};

#[cfg(feature = "decode")]
pub mod align;
#[cfg(feature = "decode")]
pub mod decode;
#[cfg(feature = "decode")]
pub mod metrics;
