//! Bidirectional GRU with PyTorch's gate equations and backpropagation through time.

use rand::rngs::Xoshiro256PlusPlus;

use super::gemm::{add_col_sums, fill_rows, matmul, matmul_par, View};
use super::param::default_bound;
use super::{
    check_channels, check_grad_len, join, masked_copy, zero_padded_rows, Batch, Layer, Mode, NnError,
    NnFloat, Param, ParamInit,
};

/// A bidirectional single-layer GRU over the valid frames of each sequence.
///
/// Per direction, with `x_t` the input frame and `h` the previous state (zero before the first frame
/// the direction visits), PyTorch's equations:
///
/// ```text
/// r = sigmoid(W_ir x_t + b_ir + W_hr h + b_hr)
/// z = sigmoid(W_iz x_t + b_iz + W_hz h + b_hz)
/// n = tanh(W_in x_t + b_in + r * (W_hn h + b_hn))
/// h' = (1 - z) * n + z * h
/// ```
///
/// The forward direction runs `t = 0 .. lengths[b]`, the reverse direction
/// `t = lengths[b] - 1 .. 0`, so each sequence starts from its own last valid frame and padding never
/// enters the state.
///
/// Shapes: input `(B, T, input_size)`, output `(B, T, 2 * hidden)` with the forward direction's state in
/// channels `0..hidden` and the reverse direction's in `hidden..2 hidden`, same lengths, zero at padded
/// frames. Parameters per direction (suffix `""` forward, `"_reverse"` reverse; PyTorch's names and
/// layouts for layer `l0`): `weight_ih_l0` `(3 hidden, input_size)`, `weight_hh_l0` `(3 hidden, hidden)`,
/// `bias_ih_l0` and `bias_hh_l0` `(3 hidden)`, gate rows in the order `r, z, n`. All initialised
/// `uniform(-1/sqrt(hidden), 1/sqrt(hidden))` like PyTorch.
///
/// Cost: the input projection of all frames is one matrix product per direction; each time step is one
/// `(B, hidden) x (hidden, 3 hidden)` product for the whole batch plus fused gate arithmetic. Buffers
/// are kept across calls, so a step allocates nothing. With the `rayon` feature the two directions run
/// in parallel.
#[derive(Clone, Debug)]
pub struct BiGru<F> {
    input_size: usize,
    hidden: usize,
    dirs: [Direction<F>; 2],
    /// Input of the last forward, padded frames zeroed, `(B, T, input_size)`.
    input: Vec<F>,
    shape: Option<(usize, usize, Vec<usize>)>,
}

#[derive(Clone, Debug)]
struct Direction<F> {
    reverse: bool,
    hidden: usize,
    w_ih: Param<F>,
    w_hh: Param<F>,
    b_ih: Param<F>,
    b_hh: Param<F>,
    /// `W_i x + b_i` for every frame, `(B * T, 3H)`; reused as the gradient of that quantity in backward.
    xp: Vec<F>,
    /// Per frame `[r, z, n, W_hn h + b_hn]`, `(B * T, 4H)`; stale at padded frames (never read there).
    gates: Vec<F>,
    /// The state before each frame, `(B * T, H)`.
    hprev: Vec<F>,
    /// The state after each valid frame (the output), `(B * T, H)`, zero at padded frames.
    out: Vec<F>,
    /// Running state `(B, H)` (forward) or its gradient (backward).
    h: Vec<F>,
    /// Step product `W_h h + b_h`, `(B, 3H)`.
    hp: Vec<F>,
    /// `W_hh` transposed, `(H, 3H)` row-major: the step product reads it row-major, which `gemm`
    /// runs about 1.5x faster than the column-major view at these small shapes (measured 16x192x576).
    w_hh_t: Vec<F>,
    /// Gradient of `W_h h + b_h` for every frame, `(B * T, 3H)`.
    dhp: Vec<F>,
}

impl<F: NnFloat> Direction<F> {
    fn new(
        prefix: &str,
        suffix: &str,
        input_size: usize,
        hidden: usize,
        reverse: bool,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Result<Self, NnError> {
        let init = ParamInit::Uniform(default_bound(hidden));
        let g = 3 * hidden;
        Ok(Self {
            reverse,
            hidden,
            w_ih: Param::new(format!("{prefix}.weight_ih_l0{suffix}"), vec![g, input_size], init, rng)?,
            w_hh: Param::new(format!("{prefix}.weight_hh_l0{suffix}"), vec![g, hidden], init, rng)?,
            b_ih: Param::new(format!("{prefix}.bias_ih_l0{suffix}"), vec![g], init, rng)?,
            b_hh: Param::new(format!("{prefix}.bias_hh_l0{suffix}"), vec![g], init, rng)?,
            xp: Vec::new(),
            gates: Vec::new(),
            hprev: Vec::new(),
            out: Vec::new(),
            h: Vec::new(),
            hp: Vec::new(),
            w_hh_t: Vec::new(),
            dhp: Vec::new(),
        })
    }

    #[inline]
    fn frame(&self, step: usize, t: usize) -> usize {
        if self.reverse {
            t - 1 - step
        } else {
            step
        }
    }

    /// Runs the recurrence over `x` (`(B, T, I)`, padded frames zero).
    fn forward(&mut self, x: &[F], dims: Dims<'_>) {
        let Dims { b, t, input_size, lengths } = dims;
        let h = self.hidden;
        let g = 3 * h;
        let rows = b * t;
        // `xp` and `w_hh_t` are overwritten whole below and `gates` is only ever read at valid frames;
        // `hprev` and `out` are written at valid frames, and their padded rows must be zero (the
        // output, and the weight gradient's product over all rows). `memset`, mostly these fills, had
        // about 5 % of a training step's `perf` samples.
        fit(&mut self.xp, rows * g);
        fit(&mut self.gates, rows * 4 * h);
        fit(&mut self.hprev, rows * h);
        fit(&mut self.out, rows * h);
        zero_padded_rows(&mut self.hprev, t, h, lengths);
        zero_padded_rows(&mut self.out, t, h, lengths);
        reset(&mut self.h, b * h);
        reset(&mut self.hp, b * g);
        fit(&mut self.w_hh_t, h * g);
        for (j, row) in self.w_hh.value().chunks_exact(h).enumerate() {
            for (k, &w) in row.iter().enumerate() {
                self.w_hh_t[k * g + j] = w;
            }
        }
        fill_rows(&mut self.xp, self.b_ih.value(), g);
        matmul(
            true,
            View::rm(x, rows, input_size),
            View::tr(self.w_ih.value(), g, input_size),
            &mut self.xp,
            g,
        );
        let sorted = lengths.windows(2).all(|w| w[0] >= w[1]);
        for step in 0..t {
            let ti = self.frame(step, t);
            let rows_now = active_rows(lengths, sorted, ti);
            let hp = &mut self.hp[..rows_now * g];
            fill_rows(hp, self.b_hh.value(), g);
            matmul(true, View::rm(&self.h, rows_now, h), View::rm(&self.w_hh_t, h, g), hp, g);
            for (bi, &len) in lengths.iter().enumerate() {
                if ti >= len {
                    // Inactive: the state carries over (for the reverse direction it is still zero).
                    continue;
                }
                let row = bi * t + ti;
                let state = &mut self.h[bi * h..(bi + 1) * h];
                self.hprev[row * h..(row + 1) * h].copy_from_slice(state);
                F::gru_cell(
                    &self.xp[row * g..(row + 1) * g],
                    &self.hp[bi * g..(bi + 1) * g],
                    state,
                    &mut self.gates[row * 4 * h..(row + 1) * 4 * h],
                    &mut self.out[row * h..(row + 1) * h],
                );
            }
        }
    }

    /// Back-propagates `dout` (`(B, T, ld)`, this direction's channels at `offset`) through the
    /// recurrence, adds the parameter gradients, and leaves the gradient of the input projection in
    /// `self.xp` (`(B * T, 3H)`); the caller multiplies it by `W_ih`.
    fn backward(&mut self, x: &[F], dout: &[F], ld: usize, offset: usize, dims: Dims<'_>) {
        let Dims { b, t, input_size, lengths } = dims;
        let h = self.hidden;
        let g = 3 * h;
        let rows = b * t;
        // The projections are no longer needed: reuse their buffer for their gradient. Both gradients
        // are written at every valid frame below and must be zero at padded ones (the products over
        // all rows read them).
        fit(&mut self.xp, rows * g);
        fit(&mut self.dhp, rows * g);
        zero_padded_rows(&mut self.xp, t, g, lengths);
        zero_padded_rows(&mut self.dhp, t, g, lengths);
        reset(&mut self.h, b * h);
        // With no sequences there is no recurrence (and no row `ti` to view below).
        let steps = if b == 0 { 0 } else { t };
        let sorted = lengths.windows(2).all(|w| w[0] >= w[1]);
        for step in (0..steps).rev() {
            let ti = self.frame(step, t);
            for (bi, &len) in lengths.iter().enumerate() {
                if ti >= len {
                    continue;
                }
                let row = bi * t + ti;
                let gates = &self.gates[row * 4 * h..(row + 1) * 4 * h];
                let (gr, rest) = gates.split_at(h);
                let (gz, rest) = rest.split_at(h);
                let (gn, ghn) = rest.split_at(h);
                let hprev = &self.hprev[row * h..(row + 1) * h];
                let dstate = &mut self.h[bi * h..(bi + 1) * h];
                let dy = &dout[row * ld + offset..row * ld + offset + h];
                let dxp = &mut self.xp[row * g..(row + 1) * g];
                let (dxr, rest) = dxp.split_at_mut(h);
                let (dxz, dxn) = rest.split_at_mut(h);
                let dhp = &mut self.dhp[row * g..(row + 1) * g];
                let (dhr, rest) = dhp.split_at_mut(h);
                let (dhz, dhn) = rest.split_at_mut(h);
                // Every slice cut to exactly `h`, so that the loop below runs without bounds checks and
                // vectorises.
                let (ghn, dxn, dhn) = (&ghn[..h], &mut dxn[..h], &mut dhn[..h]);
                for k in 0..h {
                    let (r, z, n, hn) = (gr[k], gz[k], gn[k], ghn[k]);
                    let dh = dstate[k] + dy[k];
                    let dn_pre = dh * (F::ONE - z) * (F::ONE - n * n);
                    let dz_pre = dh * (hprev[k] - n) * z * (F::ONE - z);
                    let dr_pre = dn_pre * hn * r * (F::ONE - r);
                    dxr[k] = dr_pre;
                    dxz[k] = dz_pre;
                    dxn[k] = dn_pre;
                    dhr[k] = dr_pre;
                    dhz[k] = dz_pre;
                    dhn[k] = dn_pre * r;
                    dstate[k] = dh * z;
                }
            }
            // dstate += dhp_t (B, 3H) x W_hh (3H, H); frame ti of every sequence is row ti of a view with
            // row stride T * 3H. Rows of inactive sequences are zero, so their carried gradient is kept.
            let rows_now = active_rows(lengths, sorted, ti);
            let dhp_t = View::with_ld(&self.dhp[ti * g..], rows_now, g, t * g);
            matmul(true, dhp_t, View::rm(self.w_hh.value(), g, h), &mut self.h, h);
        }
        matmul(true, View::tr(&self.dhp, rows, g), View::rm(&self.hprev, rows, h), self.w_hh.grad_mut(), h);
        add_col_sums(self.b_hh.grad_mut(), &self.dhp, g);
        matmul(
            true,
            View::tr(&self.xp, rows, g),
            View::rm(x, rows, input_size),
            self.w_ih.grad_mut(),
            input_size,
        );
        add_col_sums(self.b_ih.grad_mut(), &self.xp, g);
    }
}

/// Largest hidden size accepted (keeps `3 * hidden` and the state buffers far from overflow).
const MAX_HIDDEN: usize = 1 << 20;

/// Batch geometry of one recurrence: `B` sequences padded to `T` frames of `input_size` channels.
#[derive(Clone, Copy)]
struct Dims<'a> {
    b: usize,
    t: usize,
    input_size: usize,
    lengths: &'a [usize],
}

/// How many leading sequences the step product at frame `ti` must cover: all `B` in general, but
/// when the lengths are sorted longest first (as length-bucketed batches usually are) the sequences
/// still running at `ti` are a prefix, and the rest need no product (their rows would be discarded).
#[inline]
fn active_rows(lengths: &[usize], sorted_desc: bool, ti: usize) -> usize {
    if sorted_desc {
        lengths.partition_point(|&l| l > ti)
    } else {
        lengths.len()
    }
}

/// Resizes to `n` elements, keeping the allocation and leaving whatever the kept ones held.
fn fit<F: NnFloat>(v: &mut Vec<F>, n: usize) {
    v.resize(n, F::ZERO);
}

/// Resizes to `n` zeros, keeping the allocation.
fn reset<F: NnFloat>(v: &mut Vec<F>, n: usize) {
    v.clear();
    v.resize(n, F::ZERO);
}

impl<F: NnFloat> BiGru<F> {
    /// A bidirectional GRU named `prefix` (parameters `prefix.weight_ih_l0`, ...,
    /// `prefix.bias_hh_l0_reverse`), initialised from `rng` (forward direction first, in the order
    /// `weight_ih, weight_hh, bias_ih, bias_hh`).
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] if either size is zero.
    pub fn new(
        prefix: &str,
        input_size: usize,
        hidden: usize,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Result<Self, NnError> {
        for (field, v) in [("input_size", input_size), ("hidden", hidden)] {
            if v == 0 {
                return Err(NnError::InvalidConfig { field, value: 0.0, requirement: "at least 1" });
            }
        }
        if hidden > MAX_HIDDEN {
            return Err(NnError::InvalidConfig {
                field: "hidden",
                value: hidden as f64,
                requirement: "at most 2^20",
            });
        }
        let fwd = Direction::new(prefix, "", input_size, hidden, false, rng)?;
        let rev = Direction::new(prefix, "_reverse", input_size, hidden, true, rng)?;
        Ok(Self { input_size, hidden, dirs: [fwd, rev], input: Vec::new(), shape: None })
    }

    /// Input channels.
    pub fn input_size(&self) -> usize {
        self.input_size
    }

    /// Hidden size per direction (the output has `2 * hidden` channels).
    pub fn hidden(&self) -> usize {
        self.hidden
    }
}

impl<F: NnFloat> Layer<F> for BiGru<F> {
    fn forward(&mut self, input: &Batch<F>, _mode: Mode) -> Result<Batch<F>, NnError> {
        let (b, t, c) = input.shape();
        check_channels("GRU input channels", self.input_size, c)?;
        masked_copy(&mut self.input, input.data(), t, c, input.lengths());
        let lengths = input.lengths();
        let x = &self.input;
        let [fwd, rev] = &mut self.dirs;
        join(
            || fwd.forward(x, Dims { b, t, input_size: c, lengths }),
            || rev.forward(x, Dims { b, t, input_size: c, lengths }),
        );
        let h = self.hidden;
        let mut out = vec![F::ZERO; b * t * 2 * h];
        for (row, o) in out.chunks_exact_mut(2 * h).enumerate() {
            o[..h].copy_from_slice(&fwd.out[row * h..(row + 1) * h]);
            o[h..].copy_from_slice(&rev.out[row * h..(row + 1) * h]);
        }
        self.shape = Some((b, t, lengths.to_vec()));
        Ok(Batch::from_parts(out, b, t, 2 * h, lengths.to_vec()))
    }

    fn backward(&mut self, grad_output: &[F]) -> Result<Vec<F>, NnError> {
        let (b, t, lengths) = self.shape.as_ref().ok_or(NnError::NoForwardCache { layer: "BiGru" })?;
        let (b, t) = (*b, *t);
        let h = self.hidden;
        let i = self.input_size;
        check_grad_len("GRU grad_output length", b * t * 2 * h, grad_output.len())?;
        let x = &self.input;
        let [fwd, rev] = &mut self.dirs;
        join(
            || fwd.backward(x, grad_output, 2 * h, 0, Dims { b, t, input_size: i, lengths }),
            || rev.backward(x, grad_output, 2 * h, h, Dims { b, t, input_size: i, lengths }),
        );
        // dx (B T, I) = dxp_fwd (B T, 3H) W_ih_fwd (3H, I) + dxp_rev W_ih_rev; zero at padded frames
        // because both dxp are.
        let rows = b * t;
        let g = 3 * h;
        let mut gin = vec![F::ZERO; rows * i];
        matmul_par(false, View::rm(&fwd.xp, rows, g), View::rm(fwd.w_ih.value(), g, i), &mut gin, i);
        matmul_par(true, View::rm(&rev.xp, rows, g), View::rm(rev.w_ih.value(), g, i), &mut gin, i);
        Ok(gin)
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(&'a Param<F>)) {
        for d in &self.dirs {
            f(&d.w_ih);
            f(&d.w_hh);
            f(&d.b_ih);
            f(&d.b_hh);
        }
    }

    fn visit_params_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<F>)) {
        for d in &mut self.dirs {
            f(&mut d.w_ih);
            f(&mut d.w_hh);
            f(&mut d.b_ih);
            f(&mut d.b_hh);
        }
    }
}
