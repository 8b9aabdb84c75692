//! A C ABI shaped like warp-ctc's `compute_ctc_loss`, for callers outside Rust.
//!
//! Activations are time-major `(T, B, V)` contiguous (element `(t, b, v)` at `(t*B + b)*V + v`, as in
//! warp-ctc and PyTorch), labels concatenated, lengths `int32`. The workspace is allocated internally
//! (per call); a caller that loops over batches from Rust should use [`crate::ctc_compute`] instead.
//! Build a shared or static library with
//! `cargo rustc --release --no-default-features --features ffi,rayon --crate-type cdylib` (or
//! `staticlib`); the declarations are in `include/fastctc.h`.
//!
//! Every function returns a status code: 0 on success, a positive code naming the problem otherwise
//! (see [`fastctc_status_string`]). No Rust panic crosses the boundary.

use crate::{
    ctc_compute, ActsView, ActsViewMut, CtcError, CtcOptions, Float, InputKind, Parallelism, Reduction,
    Targets, Workspace,
};
use core::ffi::c_char;

/// Options of a call, mirrored in `include/fastctc.h`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FastctcOptions {
    /// The blank class, `0..alphabet_size`.
    pub blank: i32,
    /// 0: activations are logits (gradient w.r.t. logits); 1: log-probabilities (gradient `-gamma`).
    pub input_kind: i32,
    /// 0: none (costs only; gradient of their sum), 1: sum, 2: mean (PyTorch's).
    pub reduction: i32,
    /// Non-zero: infinite losses become 0 with zero gradients.
    pub zero_infinity: i32,
    /// Non-zero: spread sequences over the global rayon pool; 0: the calling thread only.
    pub parallel: i32,
}

/// Success.
pub const FASTCTC_OK: i32 = 0;
/// A required pointer is null.
pub const FASTCTC_NULL_POINTER: i32 = 1;
/// A size, length, label or option is invalid (negative, too large, label == blank or >= V, …).
pub const FASTCTC_INVALID_VALUE: i32 = 2;
/// The activations contain NaN or `+inf` where they are read, or a logits frame is all `-inf`.
pub const FASTCTC_NON_FINITE: i32 = 3;
/// Shape arithmetic overflows.
pub const FASTCTC_OVERFLOW: i32 = 4;
/// An unexpected internal failure (a bug: please report it).
pub const FASTCTC_INTERNAL: i32 = 5;

/// A static, NUL-terminated description of a status code.
#[no_mangle]
pub extern "C" fn fastctc_status_string(status: i32) -> *const c_char {
    let s: &'static [u8] = match status {
        FASTCTC_OK => b"ok\0",
        FASTCTC_NULL_POINTER => b"a required pointer is null\0",
        FASTCTC_INVALID_VALUE => b"invalid size, length, label or option\0",
        FASTCTC_NON_FINITE => b"NaN or +inf in the activations (or a logits frame of all -inf)\0",
        FASTCTC_OVERFLOW => b"shape arithmetic overflows\0",
        FASTCTC_INTERNAL => b"internal error\0",
        _ => b"unknown status\0",
    };
    s.as_ptr().cast()
}

fn status_of(e: &CtcError) -> i32 {
    match e {
        CtcError::NonFinite { .. } => FASTCTC_NON_FINITE,
        CtcError::LayoutOverflow { .. } => FASTCTC_OVERFLOW,
        _ => FASTCTC_INVALID_VALUE,
    }
}

/// # Safety
/// See [`fastctc_compute_f32`].
#[allow(clippy::too_many_arguments)]
unsafe fn compute<F: Float>(
    activations: *const F,
    gradients: *mut F,
    flat_labels: *const i32,
    label_lengths: *const i32,
    input_lengths: *const i32,
    max_time: i32,
    alphabet_size: i32,
    minibatch: i32,
    costs: *mut F,
    options: *const FastctcOptions,
) -> i32 {
    if activations.is_null()
        || label_lengths.is_null()
        || input_lengths.is_null()
        || costs.is_null()
        || options.is_null()
    {
        return FASTCTC_NULL_POINTER;
    }
    let (Ok(t), Ok(b), Ok(v)) =
        (usize::try_from(max_time), usize::try_from(minibatch), usize::try_from(alphabet_size))
    else {
        return FASTCTC_INVALID_VALUE;
    };
    let Some(n) = t.checked_mul(b).and_then(|x| x.checked_mul(v)) else {
        return FASTCTC_OVERFLOW;
    };
    // SAFETY: the caller guarantees `options` points to a valid struct (checked non-null above).
    let o = unsafe { *options };
    let opts = CtcOptions {
        blank: match usize::try_from(o.blank) {
            Ok(x) => x,
            Err(_) => return FASTCTC_INVALID_VALUE,
        },
        input: match o.input_kind {
            0 => InputKind::Logits,
            1 => InputKind::LogProbs,
            _ => return FASTCTC_INVALID_VALUE,
        },
        reduction: match o.reduction {
            0 => Reduction::None,
            1 => Reduction::Sum,
            2 => Reduction::Mean,
            _ => return FASTCTC_INVALID_VALUE,
        },
        zero_infinity: o.zero_infinity != 0,
        parallelism: if o.parallel != 0 { Parallelism::Rayon } else { Parallelism::Sequential },
        ..CtcOptions::default()
    };
    // SAFETY: the caller guarantees `minibatch` readable ints behind each lengths pointer.
    let (label_lengths, input_lengths) = unsafe {
        (core::slice::from_raw_parts(label_lengths, b), core::slice::from_raw_parts(input_lengths, b))
    };
    let mut total = 0usize;
    for &l in label_lengths {
        match usize::try_from(l) {
            Ok(l) => total = total.saturating_add(l),
            Err(_) => return FASTCTC_INVALID_VALUE,
        }
    }
    if total > 0 && flat_labels.is_null() {
        return FASTCTC_NULL_POINTER;
    }
    // SAFETY: the caller guarantees sum(label_lengths) readable labels, `T*B*V` readable activations,
    // `minibatch` writable costs and, when `gradients` is not null, `T*B*V` writable gradients that do
    // not overlap the activations.
    let (labels, acts, costs) = unsafe {
        (
            if total == 0 { &[][..] } else { core::slice::from_raw_parts(flat_labels, total) },
            core::slice::from_raw_parts(activations, n),
            core::slice::from_raw_parts_mut(costs, b),
        )
    };
    let run = || -> Result<(), CtcError> {
        let view = ActsView::time_major(acts, t, b, v)?;
        let targets = Targets::Concatenated { labels, lengths: label_lengths };
        let mut ws = Workspace::new();
        if gradients.is_null() {
            ctc_compute(&view, &targets, input_lengths, costs, None, &opts, &mut ws)?;
        } else {
            // SAFETY: see above.
            let grads = unsafe { core::slice::from_raw_parts_mut(gradients, n) };
            let mut g = ActsViewMut::time_major(grads, t, b, v)?;
            ctc_compute(&view, &targets, input_lengths, costs, Some(&mut g), &opts, &mut ws)?;
        }
        Ok(())
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(())) => FASTCTC_OK,
        Ok(Err(e)) => status_of(&e),
        Err(_) => FASTCTC_INTERNAL,
    }
}

/// One exported entry point per element type: the C ABI needs a monomorphic function for each, and
/// their bodies are the generic `compute`.
macro_rules! c_entry_point {
    ($name:ident, $f:ty, $doc:expr) => {
        #[doc = $doc]
        ///
        /// # Safety
        /// - `activations`: `max_time * minibatch * alphabet_size` readable values, time-major.
        /// - `gradients`: null, or as many writable values, not overlapping `activations`.
        /// - `flat_labels`: `sum(label_lengths)` readable labels (may be null if that sum is 0);
        ///   `label_lengths`, `input_lengths`: `minibatch` readable values each; `costs`: `minibatch`
        ///   writable.
        /// - `options`: a valid [`FastctcOptions`].
        #[no_mangle]
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern "C" fn $name(
            activations: *const $f,
            gradients: *mut $f,
            flat_labels: *const i32,
            label_lengths: *const i32,
            input_lengths: *const i32,
            max_time: i32,
            alphabet_size: i32,
            minibatch: i32,
            costs: *mut $f,
            options: *const FastctcOptions,
        ) -> i32 {
            // SAFETY: forwarded contract.
            unsafe {
                compute(
                    activations,
                    gradients,
                    flat_labels,
                    label_lengths,
                    input_lengths,
                    max_time,
                    alphabet_size,
                    minibatch,
                    costs,
                    options,
                )
            }
        }
    };
}

c_entry_point!(fastctc_compute_f32, f32, "CTC loss (per-sequence `costs`) and optionally gradients, `f32`.");
c_entry_point!(fastctc_compute_f64, f64, "As `fastctc_compute_f32`, in `f64`.");
