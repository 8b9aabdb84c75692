//! The kernel's typed errors.
//!
//! Every problem with the caller's buffers, lengths, labels or options is reported before any output is
//! written, as one of these variants, naming the offending sequence, position or value; the one
//! exception, [`CtcError::NonFinite`], is found while the lattices run and leaves the gradient view
//! zeroed (see [`crate::loss`]). Subsystems of the speech stack have error types of their own.

use core::fmt;

/// What went wrong in a call to the CTC kernel.
///
/// Every variant carries enough of the input to find the fault: the sequence index `sequence` counts
/// from 0 within the batch; `position` counts from 0 within a target sequence.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum CtcError {
    /// A flat buffer is shorter than its shape and strides require.
    BufferTooShort {
        /// Which buffer (`"activations"`, `"gradients"`, `"labels"`, …).
        buffer: &'static str,
        /// Elements required: the largest offset the view can address, plus one.
        needed: usize,
        /// Elements the slice has.
        got: usize,
    },
    /// Computing the largest offset of a view overflows `usize`.
    LayoutOverflow {
        /// Which buffer.
        buffer: &'static str,
    },
    /// A writable view whose strides make two different indices address the same element (a stride of
    /// zero, or strides that interleave). Writing through it would race between threads.
    AliasingOutput {
        /// Which buffer.
        buffer: &'static str,
    },
    /// Two things that must agree in size do not (a lengths array and the batch, the gradient view and
    /// the activations, the per-sequence loss slice and the batch).
    ShapeMismatch {
        /// What was compared.
        what: &'static str,
        /// The size required.
        expected: usize,
        /// The size given.
        got: usize,
    },
    /// A length or label is negative, or does not fit in `usize`.
    InvalidValue {
        /// What the value is (`"input length"`, `"target length"`, `"label"`).
        what: &'static str,
        /// The sequence it belongs to.
        sequence: usize,
        /// The value, widened to `i128` so that every integer type fits.
        value: i128,
    },
    /// An input length is larger than the time dimension of the activations.
    InputLengthTooLong {
        /// The sequence.
        sequence: usize,
        /// Its input length.
        length: usize,
        /// The activations' time dimension `T`.
        max_time: usize,
    },
    /// A padded-targets length is larger than the padded width.
    TargetLengthTooLong {
        /// The sequence.
        sequence: usize,
        /// Its target length.
        length: usize,
        /// The padded width `Lmax`.
        max_len: usize,
    },
    /// The blank index is not a class: `blank >= V`.
    BlankOutOfRange {
        /// The blank index.
        blank: usize,
        /// The number of classes `V`.
        classes: usize,
    },
    /// A target label equals the blank index.
    LabelIsBlank {
        /// The sequence.
        sequence: usize,
        /// Position in its target.
        position: usize,
    },
    /// A target label is not a class: `label >= V`.
    LabelOutOfRange {
        /// The sequence.
        sequence: usize,
        /// Position in its target.
        position: usize,
        /// The label.
        label: usize,
        /// The number of classes `V`.
        classes: usize,
    },
    /// The activations contain NaN or `+inf` in a frame the kernel reads, or a frame of logits is all
    /// `-inf` (its log-softmax is undefined). `-inf` log-probabilities are allowed: they are hard zeros.
    /// Found while the forward passes read the frames: the losses are untouched and every element of
    /// the gradient view is zero (the forward passes may have begun writing it).
    NonFinite {
        /// The sequence.
        sequence: usize,
        /// The frame `t`.
        frame: usize,
        /// The class `v`.
        class: usize,
        /// The value found.
        value: f64,
    },
}

impl fmt::Display for CtcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CtcError::BufferTooShort { buffer, needed, got } => write!(
                f,
                "{buffer} buffer too short: its shape and strides need {needed} elements, the slice has {got}"
            ),
            CtcError::LayoutOverflow { buffer } => {
                write!(f, "{buffer} view: shape times strides overflows usize")
            }
            CtcError::AliasingOutput { buffer } => write!(
                f,
                "{buffer} view: strides make two indices address the same element; a writable view must not alias"
            ),
            CtcError::ShapeMismatch { what, expected, got } => {
                write!(f, "{what}: expected {expected}, got {got}")
            }
            CtcError::InvalidValue { what, sequence, value } => {
                write!(f, "sequence {sequence}: invalid {what} {value}")
            }
            CtcError::InputLengthTooLong { sequence, length, max_time } => write!(
                f,
                "sequence {sequence}: input length {length} exceeds the activations' {max_time} frames"
            ),
            CtcError::TargetLengthTooLong { sequence, length, max_len } => write!(
                f,
                "sequence {sequence}: target length {length} exceeds the padded width {max_len}"
            ),
            CtcError::BlankOutOfRange { blank, classes } => {
                write!(f, "blank index {blank} is not one of the {classes} classes")
            }
            CtcError::LabelIsBlank { sequence, position } => write!(
                f,
                "sequence {sequence}: target label at position {position} is the blank"
            ),
            CtcError::LabelOutOfRange { sequence, position, label, classes } => write!(
                f,
                "sequence {sequence}: target label {label} at position {position} is not one of the {classes} classes"
            ),
            CtcError::NonFinite { sequence, frame, class, value } => write!(
                f,
                "sequence {sequence}: activation at frame {frame}, class {class} is {value}; \
                 NaN and +inf are never valid, and a frame of logits may not be all -inf"
            ),
        }
    }
}

impl std::error::Error for CtcError {}
