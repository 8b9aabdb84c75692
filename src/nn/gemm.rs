//! Checked matrix products over flat slices, through the `gemm` crate.
//!
//! A [`View`] is a `rows x cols` matrix inside a slice: element `(i, j)` at `data[i * rs + j * cs]`.
//! Its constructor checks that the largest offset is inside the slice, so the one `unsafe` call below
//! only ever reads and writes in bounds.

use super::NnFloat;

/// A read-only strided matrix: element `(i, j)` at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a, F> {
    data: &'a [F],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, F> View<'a, F> {
    /// A `rows x cols` matrix stored row-major with leading dimension `ld >= cols`.
    pub(crate) fn with_ld(data: &'a [F], rows: usize, cols: usize, ld: usize) -> Self {
        Self::new(data, rows, cols, ld, 1)
    }

    /// A `rows x cols` matrix stored row-major, contiguous.
    pub(crate) fn rm(data: &'a [F], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose of a row-major `stored_rows x stored_cols` matrix: shape `stored_cols x stored_rows`.
    pub(crate) fn tr(data: &'a [F], stored_rows: usize, stored_cols: usize) -> Self {
        Self::new(data, stored_cols, stored_rows, 1, stored_cols)
    }

    fn new(data: &'a [F], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        if rows > 0 && cols > 0 {
            // Internal invariant (shapes come from validated batches and layer sizes); a failure here
            // is a bug in this module, and must not turn into an out-of-bounds read.
            let last = (rows - 1) * rs + (cols - 1) * cs;
            assert!(
                last < data.len(),
                "gemm view out of bounds: {rows}x{cols} rs={rs} cs={cs} len={}",
                data.len()
            );
        }
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// Rows `start..start + n` of this view.
    fn row_block(&self, start: usize, n: usize) -> Self {
        debug_assert!(start + n <= self.rows);
        if n == 0 || self.cols == 0 {
            return Self {
                data: &self.data[..0],
                rows: n,
                cols: self.cols,
                rs: self.rs,
                cs: self.cs,
            };
        }
        Self::new(
            &self.data[start * self.rs..],
            n,
            self.cols,
            self.rs,
            self.cs,
        )
    }
}

/// `C = A B` (or `C += A B` when `accumulate`), with `C` row-major `m x n`, leading dimension `ldc`.
///
/// Single-threaded: callers parallelise above this (directions, row blocks).
pub(crate) fn matmul<F: NnFloat>(
    accumulate: bool,
    a: View<'_, F>,
    b: View<'_, F>,
    c: &mut [F],
    ldc: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "gemm inner dimensions differ");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        ldc >= n && (m - 1) * ldc + n <= c.len(),
        "gemm output out of bounds"
    );
    if k == 0 {
        if !accumulate {
            for row in c.chunks_mut(ldc).take(m) {
                row[..n].fill(F::ZERO);
            }
        }
        return;
    }
    // SAFETY: `View::new` checked that every element (i, j) of `a` and `b` is inside its slice, and the
    // assertion above that every element of the `m x n` output with row stride `ldc` is inside `c`;
    // `c` is borrowed mutably, so it aliases neither input. `F` is f32 or f64 (sealed `Float`), the
    // two types `gemm` dispatches on.
    unsafe {
        gemm::gemm::<F>(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            F::ONE,
            F::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Products smaller than this many multiply-adds are not worth splitting across threads.
const PAR_MIN_FLOPS: usize = 1 << 21;

/// As [`matmul`], splitting the rows of `A` and `C` in two parallel halves when the product is large
/// (with the `rayon` feature; otherwise the same as `matmul`).
pub(crate) fn matmul_par<F: NnFloat>(
    accumulate: bool,
    a: View<'_, F>,
    b: View<'_, F>,
    c: &mut [F],
    ldc: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if cfg!(feature = "rayon") && m >= 32 && m.saturating_mul(k).saturating_mul(n) >= PAR_MIN_FLOPS
    {
        let half = m / 2;
        let (c0, c1) = c.split_at_mut(half * ldc);
        let (a0, a1) = (a.row_block(0, half), a.row_block(half, m - half));
        super::join(
            || matmul(accumulate, a0, b, c0, ldc),
            || matmul(accumulate, a1, b, c1, ldc),
        );
    } else {
        matmul(accumulate, a, b, c, ldc);
    }
}

/// Adds the column sums of a row-major `rows x cols` matrix to `out` (length `cols`): bias gradients.
pub(crate) fn add_col_sums<F: NnFloat>(out: &mut [F], m: &[F], cols: usize) {
    for row in m.chunks_exact(cols) {
        for (o, &x) in out.iter_mut().zip(row) {
            *o += x;
        }
    }
}

/// Sets each of the `rows` rows (length `cols`, contiguous) of `m` to `bias`.
pub(crate) fn fill_rows<F: NnFloat>(m: &mut [F], bias: &[F], cols: usize) {
    for row in m.chunks_exact_mut(cols) {
        row.copy_from_slice(bias);
    }
}
