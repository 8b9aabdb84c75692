//! 1-D convolution over time (im2col + one matrix product), with stride, padding and dilation.

use rand::rngs::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use super::gemm::{add_col_sums, fill_rows, matmul_par, View};
use super::param::default_bound;
use super::{
    check_channels, check_grad_len, masked_copy, zero_padded_rows, Batch, Layer, Mode, NnError, NnFloat,
    Param, ParamInit,
};

/// Geometry of a [`Conv1d`]: channels, kernel width, stride, zero padding on each side and dilation,
/// all in frames except the channel counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv1dSpec {
    /// Input channels per frame.
    pub in_channels: usize,
    /// Output channels per frame.
    pub out_channels: usize,
    /// Kernel width, in frames (>= 1).
    pub kernel: usize,
    /// Step between output frames, in input frames (>= 1).
    pub stride: usize,
    /// Zero frames added at each end of every sequence.
    pub padding: usize,
    /// Spacing between kernel taps, in frames (>= 1).
    pub dilation: usize,
}

/// PyTorch's output length of a convolution over `len` valid frames:
/// `floor((len + 2 padding - dilation (kernel - 1) - 1) / stride) + 1`, or 0 when the padded sequence is
/// shorter than the kernel's span. `spec.stride >= 1` and `spec.dilation >= 1` (checked by
/// [`Conv1d::new`]); a zero stride is treated as 1.
pub fn conv_output_length(len: usize, spec: &Conv1dSpec) -> usize {
    let span = spec.dilation * (spec.kernel.max(1) - 1) + 1;
    let padded = len + 2 * spec.padding;
    if padded < span {
        0
    } else {
        (padded - span) / spec.stride.max(1) + 1
    }
}

/// Input frame read by output frame `to` at tap `j`, if inside `0..len`.
#[inline]
fn source(spec: &Conv1dSpec, to: usize, j: usize, len: usize) -> Option<usize> {
    let pos = (to * spec.stride + j * spec.dilation).checked_sub(spec.padding)?;
    (pos < len).then_some(pos)
}

/// 1-D convolution over time applied to each sequence independently.
///
/// Shapes: input `(B, T, in_channels)`, output `(B, T_out, out_channels)` with
/// `T_out = conv_output_length(T)` and output lengths `conv_output_length(lengths[b])`.
/// `weight` is `(out_channels, in_channels, kernel)` row-major (PyTorch's layout), `bias` is
/// `(out_channels)`. Output frame `t` of sequence `b` is
/// `bias + sum_{ci, j} weight[co, ci, j] * x[b, t * stride - padding + j * dilation, ci]`, where frames
/// outside `0..lengths[b]` read as zero: a sequence behaves exactly as if it were alone and unpadded.
/// Initialised `uniform(-1/sqrt(in * kernel), +)` like PyTorch.
#[derive(Clone, Debug)]
pub struct Conv1d<F> {
    spec: Conv1dSpec,
    weight: Param<F>,
    bias: Param<F>,
    /// im2col matrix of the last forward: `(B * T_out, kernel * in_channels)`, column `j * in_channels + ci`
    /// (tap-major, so each tap is one contiguous copy of an input frame).
    cols: Vec<F>,
    /// The weight of the last forward reordered to match `cols`: `(out_channels, kernel * in_channels)`,
    /// `w_tap[co, j * in_channels + ci] = weight[co, ci, j]`.
    w_tap: Vec<F>,
    /// The last backward's gradient with padded frames zeroed, `(B * T_out, out_channels)`.
    scratch: Vec<F>,
    /// `(B, T, T_out, input lengths, output lengths)` of the last forward.
    shape: Option<ConvShape>,
}

#[derive(Clone, Debug)]
struct ConvShape {
    batch: usize,
    time: usize,
    time_out: usize,
    lengths: Vec<usize>,
    lengths_out: Vec<usize>,
}

impl<F: NnFloat> Conv1d<F> {
    /// A convolution named `prefix` (parameters `prefix.weight`, `prefix.bias`), initialised from `rng`.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] if a channel count, the kernel, the stride or the dilation is zero.
    pub fn new(prefix: &str, spec: Conv1dSpec, rng: &mut Xoshiro256PlusPlus) -> Result<Self, NnError> {
        for (field, v) in [
            ("in_channels", spec.in_channels),
            ("out_channels", spec.out_channels),
            ("kernel", spec.kernel),
            ("stride", spec.stride),
            ("dilation", spec.dilation),
        ] {
            if v == 0 {
                return Err(NnError::InvalidConfig { field, value: 0.0, requirement: "at least 1" });
            }
        }
        // Bounded so that `len + 2 padding` and the kernel's span can never overflow for any length
        // that fits in memory, and the weight's size is representable.
        const LIMIT: usize = u32::MAX as usize;
        let span = spec.dilation.checked_mul(spec.kernel - 1).filter(|&v| v <= LIMIT);
        if span.is_none() {
            return Err(NnError::InvalidConfig {
                field: "dilation",
                value: spec.dilation as f64,
                requirement: "such that dilation * (kernel - 1) <= 2^32 - 1",
            });
        }
        if spec.padding > LIMIT {
            return Err(NnError::InvalidConfig {
                field: "padding",
                value: spec.padding as f64,
                requirement: "at most 2^32 - 1",
            });
        }
        let weight_len = spec
            .out_channels
            .checked_mul(spec.in_channels)
            .and_then(|v| v.checked_mul(spec.kernel))
            .filter(|&v| v <= isize::MAX as usize / 8);
        if weight_len.is_none() {
            return Err(NnError::InvalidConfig {
                field: "out_channels",
                value: spec.out_channels as f64,
                requirement: "such that out_channels * in_channels * kernel fits in memory",
            });
        }
        let fan_in = spec.in_channels * spec.kernel;
        let bound = default_bound(fan_in);
        Ok(Self {
            weight: Param::new(
                format!("{prefix}.weight"),
                vec![spec.out_channels, spec.in_channels, spec.kernel],
                ParamInit::Uniform(bound),
                rng,
            )?,
            bias: Param::new(
                format!("{prefix}.bias"),
                vec![spec.out_channels],
                ParamInit::Uniform(bound),
                rng,
            )?,
            spec,
            cols: Vec::new(),
            w_tap: Vec::new(),
            scratch: Vec::new(),
            shape: None,
        })
    }

    /// The layer's geometry.
    pub fn spec(&self) -> &Conv1dSpec {
        &self.spec
    }
}

impl<F: NnFloat> Layer<F> for Conv1d<F> {
    fn forward(&mut self, input: &Batch<F>, _mode: Mode) -> Result<Batch<F>, NnError> {
        let (b, t, c) = input.shape();
        check_channels("conv1d input channels", self.spec.in_channels, c)?;
        let s = self.spec;
        let t_out = conv_output_length(t, &s);
        let lengths_out: Vec<usize> = input.lengths().iter().map(|&l| conv_output_length(l, &s)).collect();
        let ck = c * s.kernel;
        let rows = b * t_out;
        self.cols.clear();
        self.cols.resize(rows * ck, F::ZERO);
        let x = input.data();
        for bi in 0..b {
            let len = input.lengths()[bi];
            for to in 0..lengths_out[bi] {
                let row = &mut self.cols[(bi * t_out + to) * ck..(bi * t_out + to + 1) * ck];
                for j in 0..s.kernel {
                    // Taps outside the sequence's own valid frames stay zero (zero padding).
                    let Some(ti) = source(&s, to, j, len) else {
                        continue;
                    };
                    row[j * c..(j + 1) * c].copy_from_slice(&x[(bi * t + ti) * c..(bi * t + ti + 1) * c]);
                }
            }
        }
        let co = s.out_channels;
        self.w_tap.clear();
        self.w_tap.resize(co * ck, F::ZERO);
        for (wo, w) in self.w_tap.chunks_exact_mut(ck).zip(self.weight.value().chunks_exact(ck)) {
            for ci in 0..c {
                for j in 0..s.kernel {
                    wo[j * c + ci] = w[ci * s.kernel + j];
                }
            }
        }
        let mut out = vec![F::ZERO; rows * co];
        fill_rows(&mut out, self.bias.value(), co);
        matmul_par(true, View::rm(&self.cols, rows, ck), View::tr(&self.w_tap, co, ck), &mut out, co);
        zero_padded_rows(&mut out, t_out, co, &lengths_out);
        self.shape = Some(ConvShape {
            batch: b,
            time: t,
            time_out: t_out,
            lengths: input.lengths().to_vec(),
            lengths_out: lengths_out.clone(),
        });
        Ok(Batch::from_parts(out, b, t_out, co, lengths_out))
    }

    fn backward(&mut self, grad_output: &[F]) -> Result<Vec<F>, NnError> {
        self.backward_params(grad_output)?;
        let sh = self.shape.as_ref().ok_or(NnError::NoForwardCache { layer: "Conv1d" })?;
        let s = self.spec;
        let (c, co) = (s.in_channels, s.out_channels);
        let ck = c * s.kernel;
        let rows = sh.batch * sh.time_out;
        // dcols (rows, ck) = g (rows, co) x W (co, ck), then scattered back onto the frames they came
        // from; `scratch` still holds the masked gradient.
        let mut dcols = vec![F::ZERO; rows * ck];
        matmul_par(false, View::rm(&self.scratch, rows, co), View::rm(&self.w_tap, co, ck), &mut dcols, ck);
        let (t, t_out) = (sh.time, sh.time_out);
        let mut gin = vec![F::ZERO; sh.batch * t * c];
        for bi in 0..sh.batch {
            let len = sh.lengths[bi];
            for to in 0..sh.lengths_out[bi] {
                let row = &dcols[(bi * t_out + to) * ck..(bi * t_out + to + 1) * ck];
                for j in 0..s.kernel {
                    let Some(ti) = source(&s, to, j, len) else {
                        continue;
                    };
                    let dst = &mut gin[(bi * t + ti) * c..(bi * t + ti + 1) * c];
                    for (d, &v) in dst.iter_mut().zip(&row[j * c..(j + 1) * c]) {
                        *d += v;
                    }
                }
            }
        }
        Ok(gin)
    }

    fn backward_params(&mut self, grad_output: &[F]) -> Result<(), NnError> {
        let sh = self.shape.as_ref().ok_or(NnError::NoForwardCache { layer: "Conv1d" })?;
        let s = self.spec;
        let (c, co) = (s.in_channels, s.out_channels);
        let ck = c * s.kernel;
        let rows = sh.batch * sh.time_out;
        check_grad_len("conv1d grad_output length", rows * co, grad_output.len())?;
        masked_copy(&mut self.scratch, grad_output, sh.time_out, co, &sh.lengths_out);
        let g = &self.scratch;
        // dW_tap (co, ck) = g^T (co, rows) x cols (rows, ck), added to dW in PyTorch's order;
        // db += column sums of g.
        let mut dw_tap = vec![F::ZERO; co * ck];
        matmul_par(false, View::tr(g, rows, co), View::rm(&self.cols, rows, ck), &mut dw_tap, ck);
        for (dw, dt) in self.weight.grad_mut().chunks_exact_mut(ck).zip(dw_tap.chunks_exact(ck)) {
            for ci in 0..c {
                for j in 0..s.kernel {
                    dw[ci * s.kernel + j] += dt[j * c + ci];
                }
            }
        }
        add_col_sums(self.bias.grad_mut(), g, co);
        Ok(())
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(&'a Param<F>)) {
        f(&self.weight);
        f(&self.bias);
    }

    fn visit_params_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<F>)) {
        f(&mut self.weight);
        f(&mut self.bias);
    }
}
