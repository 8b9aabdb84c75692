//! Strided views over flat buffers, and the two forms of targets.
//!
//! Activations and gradients are 3-D arrays indexed `(t, b, v)`: frame, sequence in the batch, class.
//! A view is a flat slice plus a [`Layout`]; element `(t, b, v)` lives at
//!
//! ```text
//! data[t * stride_t + b * stride_b + v * stride_v]
//! ```
//!
//! with strides counted in elements, not bytes. Time-major buffers (warp-ctc, PyTorch: `(T, B, V)`
//! contiguous) have strides `(B*V, V, 1)`; batch-major ones (`(B, T, V)` contiguous) have `(V, T*V, 1)`;
//! a sub-view of a larger buffer starts at a sub-slice and keeps the parent's strides. Nothing is copied.
//!
//! Views are validated once, when they are made: every addressable offset must be inside the slice
//! (computed with checked arithmetic), and a writable view must not alias (no two indices may address the
//! same element), because the kernel writes gradients for different sequences from different threads.

use crate::error::CtcError;

/// Shape and strides of a `(T, B, V)` view, in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Frames `T`: the largest input length the view can hold.
    pub max_time: usize,
    /// Sequences `B` in the batch.
    pub batch: usize,
    /// Classes `V`, the blank included.
    pub classes: usize,
    /// Elements between frame `t` and frame `t + 1` of the same sequence.
    pub stride_t: usize,
    /// Elements between sequence `b` and sequence `b + 1` at the same frame.
    pub stride_b: usize,
    /// Elements between class `v` and class `v + 1`. The fast paths want 1; any value is correct.
    pub stride_v: usize,
}

impl Layout {
    /// A contiguous time-major layout, `(T, B, V)` with strides `(B*V, V, 1)` (warp-ctc and PyTorch).
    ///
    /// Overflow of `B*V` is reported when a view is made from the layout.
    pub fn time_major(max_time: usize, batch: usize, classes: usize) -> Self {
        Layout {
            max_time,
            batch,
            classes,
            stride_t: batch.saturating_mul(classes),
            stride_b: classes,
            stride_v: 1,
        }
    }

    /// A contiguous batch-major layout, `(B, T, V)` in memory, with strides `(V, T*V, 1)`.
    pub fn batch_major(max_time: usize, batch: usize, classes: usize) -> Self {
        Layout {
            max_time,
            batch,
            classes,
            stride_t: classes,
            stride_b: max_time.saturating_mul(classes),
            stride_v: 1,
        }
    }

    /// Number of elements `T * B * V` the view addresses (not the length of the slice it needs).
    pub fn elements(&self) -> Option<usize> {
        self.max_time.checked_mul(self.batch)?.checked_mul(self.classes)
    }

    /// Offset of element `(t, b, v)`. Only meaningful for in-range indices of a validated view.
    #[inline(always)]
    pub fn offset(&self, t: usize, b: usize, v: usize) -> usize {
        t * self.stride_t + b * self.stride_b + v * self.stride_v
    }

    /// Offset of sequence `b`'s element `(0, b, 0)`.
    ///
    /// In a validated view with at least one element it cannot overflow (it is at most the largest
    /// addressable offset). In an empty view (`T = 0` or `V = 0`) nothing is ever read or written at it,
    /// whatever the strides, so it wraps instead of panicking.
    #[inline(always)]
    pub fn sequence_base(&self, b: usize) -> usize {
        b.wrapping_mul(self.stride_b)
    }

    /// The slice length the view needs: the largest addressable offset plus one, or 0 if the view is
    /// empty. `None` on overflow.
    pub fn required_len(&self) -> Option<usize> {
        if self.max_time == 0 || self.batch == 0 || self.classes == 0 {
            return Some(0);
        }
        let last_t = (self.max_time - 1).checked_mul(self.stride_t)?;
        let last_b = (self.batch - 1).checked_mul(self.stride_b)?;
        let last_v = (self.classes - 1).checked_mul(self.stride_v)?;
        last_t.checked_add(last_b)?.checked_add(last_v)?.checked_add(1)
    }

    /// Whether no two in-range indices address the same element.
    ///
    /// Sufficient test (the one BLAS-like libraries use): sorting the dimensions of extent > 1 by stride,
    /// each stride must be at least the span of the dimensions below it. It can reject exotic
    /// non-overlapping layouts; none of those are useful for activations.
    pub fn is_injective(&self) -> bool {
        let mut dims =
            [(self.stride_t, self.max_time), (self.stride_b, self.batch), (self.stride_v, self.classes)];
        if dims.iter().any(|&(_, n)| n == 0) {
            return true;
        }
        dims.sort_unstable();
        let mut span: usize = 1; // elements covered by the dimensions already placed
        for &(stride, n) in &dims {
            if n <= 1 {
                continue;
            }
            if stride < span {
                return false;
            }
            match stride.checked_mul(n - 1).and_then(|x| x.checked_add(span)) {
                Some(s) => span = s,
                None => return false,
            }
        }
        true
    }

    fn validate(&self, buffer: &'static str, len: usize) -> Result<(), CtcError> {
        let needed = self.required_len().ok_or(CtcError::LayoutOverflow { buffer })?;
        if self.elements().is_none() {
            return Err(CtcError::LayoutOverflow { buffer });
        }
        if needed > len {
            return Err(buffer_too_short(buffer, needed, len));
        }
        Ok(())
    }
}

#[cold]
fn buffer_too_short(buffer: &'static str, needed: usize, got: usize) -> CtcError {
    CtcError::BufferTooShort { buffer, needed, got }
}

/// A read-only `(T, B, V)` view of activations (logits or log-probabilities), validated at creation.
#[derive(Clone, Copy, Debug)]
pub struct ActsView<'a, F> {
    data: &'a [F],
    layout: Layout,
}

impl<'a, F: Copy> ActsView<'a, F> {
    /// Wraps `data` with `layout`, checking that every addressable element is inside `data`.
    pub fn new(data: &'a [F], layout: Layout) -> Result<Self, CtcError> {
        layout.validate("activations", data.len())?;
        Ok(ActsView { data, layout })
    }

    /// Contiguous time-major `(T, B, V)`: `data.len()` must be at least `T * B * V`.
    pub fn time_major(
        data: &'a [F],
        max_time: usize,
        batch: usize,
        classes: usize,
    ) -> Result<Self, CtcError> {
        Self::new(data, Layout::time_major(max_time, batch, classes))
    }

    /// Contiguous batch-major `(B, T, V)`: `data.len()` must be at least `B * T * V`.
    pub fn batch_major(
        data: &'a [F],
        max_time: usize,
        batch: usize,
        classes: usize,
    ) -> Result<Self, CtcError> {
        Self::new(data, Layout::batch_major(max_time, batch, classes))
    }

    /// The shape and strides.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The underlying slice.
    pub fn data(&self) -> &'a [F] {
        self.data
    }

    /// Element `(t, b, v)`, or `None` outside the shape.
    pub fn get(&self, t: usize, b: usize, v: usize) -> Option<F> {
        let l = &self.layout;
        if t < l.max_time && b < l.batch && v < l.classes {
            Some(self.data[l.offset(t, b, v)])
        } else {
            None
        }
    }
}

/// A writable `(T, B, V)` view (gradients or posteriors), validated at creation: in bounds and
/// non-aliasing.
#[derive(Debug)]
pub struct ActsViewMut<'a, F> {
    data: &'a mut [F],
    layout: Layout,
}

impl<'a, F: Copy> ActsViewMut<'a, F> {
    /// Wraps `data` with `layout`, checking bounds and that no two indices address one element.
    pub fn new(data: &'a mut [F], layout: Layout) -> Result<Self, CtcError> {
        layout.validate("gradients", data.len())?;
        if !layout.is_injective() {
            return Err(CtcError::AliasingOutput { buffer: "gradients" });
        }
        Ok(ActsViewMut { data, layout })
    }

    /// Contiguous time-major `(T, B, V)`.
    pub fn time_major(
        data: &'a mut [F],
        max_time: usize,
        batch: usize,
        classes: usize,
    ) -> Result<Self, CtcError> {
        Self::new(data, Layout::time_major(max_time, batch, classes))
    }

    /// Contiguous batch-major `(B, T, V)`.
    pub fn batch_major(
        data: &'a mut [F],
        max_time: usize,
        batch: usize,
        classes: usize,
    ) -> Result<Self, CtcError> {
        Self::new(data, Layout::batch_major(max_time, batch, classes))
    }

    /// The shape and strides.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Element `(t, b, v)`, or `None` outside the shape.
    pub fn get(&self, t: usize, b: usize, v: usize) -> Option<F> {
        let l = &self.layout;
        if t < l.max_time && b < l.batch && v < l.classes {
            Some(self.data[l.offset(t, b, v)])
        } else {
            None
        }
    }

    /// A read-only view of the same elements.
    pub fn as_view(&self) -> ActsView<'_, F> {
        ActsView { data: self.data, layout: self.layout }
    }

    /// Raw pointer to element 0 of the slice, for the kernel's per-sequence writers.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut F {
        self.data.as_mut_ptr()
    }
}

/// An integer type usable for labels and lengths (`u16`, `u32`, `u64`, `usize`, `i32`, `i64`).
///
/// Signed types are accepted because PyTorch and warp-ctc callers hold `int`/`int64` buffers;
/// negative values are reported as [`CtcError::InvalidValue`].
pub trait Index: Copy + Send + Sync + core::fmt::Debug + 'static {
    /// The value as `usize`, or `None` if it is negative or too large.
    fn to_usize(self) -> Option<usize>;
    /// The value widened for error messages.
    fn to_i128(self) -> i128;
}

macro_rules! impl_index {
    ($($t:ty),*) => {$(
        impl Index for $t {
            #[inline(always)]
            fn to_usize(self) -> Option<usize> {
                usize::try_from(self).ok()
            }
            #[inline(always)]
            fn to_i128(self) -> i128 {
                self as i128
            }
        }
    )*};
}
impl_index!(u8, u16, u32, u64, usize, i32, i64, isize);

/// The target label sequences of a batch.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a, L> {
    /// All targets back to back (warp-ctc, PyTorch's 1-D form): sequence `b` is
    /// `labels[o_b .. o_b + lengths[b]]` with `o_b = lengths[0] + … + lengths[b-1]`.
    /// Labels after the last sequence's end are ignored.
    Concatenated {
        /// The labels, `sum(lengths)` or more.
        labels: &'a [L],
        /// Per-sequence target lengths, `B` of them.
        lengths: &'a [L],
    },
    /// A padded `(B, max_len)` row-major matrix (PyTorch's 2-D form): sequence `b` is
    /// `labels[b * max_len .. b * max_len + lengths[b]]`; the padding is never read.
    Padded {
        /// The padded labels, at least `B * max_len`.
        labels: &'a [L],
        /// Row width `Lmax`.
        max_len: usize,
        /// Per-sequence target lengths, `B` of them, each `<= max_len`.
        lengths: &'a [L],
    },
}

impl<'a, L: Index> Targets<'a, L> {
    /// The per-sequence lengths array.
    pub fn lengths(&self) -> &'a [L] {
        match self {
            Targets::Concatenated { lengths, .. } | Targets::Padded { lengths, .. } => lengths,
        }
    }
}
