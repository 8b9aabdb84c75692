//! The error type of the `nn` module.

use core::fmt;

/// What can go wrong when building or running a layer or model.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum NnError {
    /// A buffer or count does not have the size the shapes imply.
    ShapeMismatch {
        /// Which buffer or count.
        what: &'static str,
        /// The size the shapes require.
        expected: usize,
        /// The size given.
        got: usize,
    },
    /// `batch * time * channels` does not fit in `usize`.
    ShapeOverflow {
        /// `B`.
        batch: usize,
        /// `T`.
        time: usize,
        /// `C`.
        channels: usize,
    },
    /// A sequence's valid length exceeds the padded length `T`.
    LengthTooLong {
        /// The sequence (batch index).
        index: usize,
        /// Its length, in frames.
        length: usize,
        /// The padded length `T`.
        max: usize,
    },
    /// `backward` was called without a preceding `forward`.
    NoForwardCache {
        /// The layer.
        layer: &'static str,
    },
    /// A configuration value is out of range.
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// Its value (integers are widened to `f64`).
        value: f64,
        /// What it must satisfy.
        requirement: &'static str,
    },
}

impl fmt::Display for NnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShapeMismatch {
                what,
                expected,
                got,
            } => {
                write!(f, "{what}: expected {expected}, got {got}")
            }
            Self::ShapeOverflow {
                batch,
                time,
                channels,
            } => {
                write!(f, "shape ({batch}, {time}, {channels}) overflows usize")
            }
            Self::LengthTooLong { index, length, max } => {
                write!(
                    f,
                    "sequence {index} has length {length}, more than the padded length {max}"
                )
            }
            Self::NoForwardCache { layer } => {
                write!(f, "{layer}: backward called before forward")
            }
            Self::InvalidConfig {
                field,
                value,
                requirement,
            } => {
                write!(f, "config field `{field}` = {value}: must be {requirement}")
            }
        }
    }
}

impl std::error::Error for NnError {}
