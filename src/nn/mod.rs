//! A small acoustic-model toolkit: layers over flat row-major buffers with hand-written backward passes.
//!
//! # Layout
//!
//! Every activation of a batch is a [`Batch`]: `B` sequences of up to `T` frames of `C` channels, stored
//! batch-major, element `(b, t, c)` at `data[(b * T + t) * C + c]`, with a valid length
//! `lengths[b] <= T` per sequence. Frames `t >= lengths[b]` are padding: every layer writes zeros there,
//! never lets their input values reach a valid output, and returns a zero input gradient for them.
//!
//! # Forward and backward
//!
//! Each layer implements [`Layer`]: `forward(&mut self, &Batch, Mode) -> Result<Batch>` stores in the
//! layer what its backward pass needs, and `backward(&mut self, grad_output) -> Result<Vec>` returns
//! the gradient with respect to the input of the last `forward` and *adds* the parameter gradients to
//! each [`Param`]'s `grad` (call `zero_grad` between steps). Parameters are visited by name through
//! [`Layer::visit_params`] / [`Layer::visit_params_mut`], or collected with
//! [`AcousticModel::params`] / [`AcousticModel::params_mut`].
//!
//! # A training step
//!
//! ```
//! use fastctc::nn::{AcousticModel, Batch, GruModelConfig, Mode, ModelConfig};
//! use fastctc::optim::{clip_grad_norm, Adam, AdamConfig, LrSchedule};
//!
//! let config = ModelConfig::Gru(GruModelConfig { gru_layers: 1, hidden: 16, conv_channels: 16, ..Default::default() });
//! let mut model = AcousticModel::<f32>::new(&config, 42)?;
//! // Two utterances of 40 and 31 frames of 80 log-mel features, padded to 40.
//! let features = Batch::new(vec![0.1; 2 * 40 * 80], 2, 40, 80, vec![40, 31])?;
//! let logits = model.forward(&features, Mode::Train)?; // (2, 10, 29), x4 subsampling
//! assert_eq!(logits.shape(), (2, 10, 29));
//! assert_eq!(logits.lengths(), &[10, 8]);
//! // In the trainer this is the CTC loss's gradient with respect to the logits, (B, T', V) flat.
//! let grad_logits = vec![0.01f32; logits.data().len()];
//! model.zero_grad();
//! model.backward(&grad_logits)?;
//! let schedule = LrSchedule::WarmupCosine { peak_lr: 1e-3, warmup_steps: 100, total_steps: 2000, min_lr: 1e-5 };
//! let mut adam = Adam::<f32>::new(AdamConfig::default())?;
//! let mut params = model.params_mut();
//! let norm = clip_grad_norm(&mut params, 5.0)?;
//! if norm.is_finite() {
//!     adam.step(&mut params, schedule.lr(adam.step_count()))?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Everything is generic over [`NnFloat`] (`f32` to train, `f64` for the finite-difference tests).
//! Matrix products go through the `gemm` crate with single-threaded calls; with the `rayon` feature the
//! two directions of a recurrent layer run in parallel, and large products are split by rows.

mod activation;
mod conv;
mod dropout;
mod error;
mod factored;
mod gemm;
mod gru;
mod linear;
mod model;
mod norm;
mod param;
mod scalar;
mod split;

pub use activation::{Activation, ActivationLayer};
pub use conv::{conv_output_length, Conv1d, Conv1dSpec};
pub use dropout::Dropout;
pub use error::NnError;
pub use factored::WordStartExpand;
pub use gru::BiGru;
pub use linear::Linear;
pub use model::{AcousticModel, ConvModelConfig, GruModelConfig, ModelConfig, ResidualConvBlock};
pub use norm::LayerNorm;
pub use param::{Param, ParamInit};
pub use scalar::NnFloat;
pub use split::SubframeLinear;

/// Whether a forward pass is for training (dropout active) or evaluation (dropout is the identity).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Training: dropout draws a fresh mask on every forward pass.
    Train,
    /// Evaluation / inference: deterministic, dropout does nothing.
    Eval,
}

/// A padded batch of sequences: shape `(B, T, C)`, row-major, with a valid length per sequence.
///
/// Element `(b, t, c)` is `data[(b * T + t) * C + c]`. Frames `t >= lengths[b]` are padding. The
/// constructor checks `data.len() == B * T * C`, `lengths.len() == B` and `lengths[b] <= T`, so every
/// layer can index the buffer without further checks.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch<F> {
    data: Vec<F>,
    batch: usize,
    time: usize,
    channels: usize,
    lengths: Vec<usize>,
}

impl<F: NnFloat> Batch<F> {
    /// Wraps `data` (shape `(batch, time, channels)`, row-major) with per-sequence valid `lengths`
    /// (in frames, each `<= time`).
    ///
    /// # Errors
    /// [`NnError::ShapeMismatch`] if `data.len() != batch * time * channels` (or the product
    /// overflows) or `lengths.len() != batch`; [`NnError::LengthTooLong`] if some `lengths[b] > time`.
    pub fn new(
        data: Vec<F>,
        batch: usize,
        time: usize,
        channels: usize,
        lengths: Vec<usize>,
    ) -> Result<Self, NnError> {
        let expected = batch
            .checked_mul(time)
            .and_then(|x| x.checked_mul(channels))
            .ok_or(NnError::ShapeOverflow { batch, time, channels })?;
        if data.len() != expected {
            return Err(NnError::ShapeMismatch { what: "batch data length", expected, got: data.len() });
        }
        if lengths.len() != batch {
            return Err(NnError::ShapeMismatch {
                what: "number of sequence lengths",
                expected: batch,
                got: lengths.len(),
            });
        }
        if let Some((index, &length)) = lengths.iter().enumerate().find(|(_, &l)| l > time) {
            return Err(NnError::LengthTooLong { index, length, max: time });
        }
        Ok(Self { data, batch, time, channels, lengths })
    }

    /// A batch of zeros of shape `(batch, time, channels)` with the given lengths.
    ///
    /// # Errors
    /// As [`Batch::new`].
    pub fn zeros(batch: usize, time: usize, channels: usize, lengths: Vec<usize>) -> Result<Self, NnError> {
        let n = batch
            .checked_mul(time)
            .and_then(|x| x.checked_mul(channels))
            .ok_or(NnError::ShapeOverflow { batch, time, channels })?;
        Self::new(vec![F::ZERO; n], batch, time, channels, lengths)
    }

    /// The flat buffer, `(B, T, C)` row-major.
    pub fn data(&self) -> &[F] {
        &self.data
    }

    /// The flat buffer, mutable (its length cannot change).
    pub fn data_mut(&mut self) -> &mut [F] {
        &mut self.data
    }

    /// Consumes the batch, returning its flat `(B, T, C)` buffer.
    pub fn into_data(self) -> Vec<F> {
        self.data
    }

    /// Number of sequences `B`.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Padded length `T`, in frames.
    pub fn time(&self) -> usize {
        self.time
    }

    /// Channels per frame `C`.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// `(B, T, C)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.batch, self.time, self.channels)
    }

    /// Valid length of each sequence, in frames; `lengths()[b] <= T`.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// Sets every padded frame (`t >= lengths[b]`) to zero.
    pub fn zero_padding(&mut self) {
        zero_padded_rows(&mut self.data, self.time, self.channels, &self.lengths);
    }

    /// Builds a batch without checks, for layers whose shapes are correct by construction.
    fn from_parts(data: Vec<F>, batch: usize, time: usize, channels: usize, lengths: Vec<usize>) -> Self {
        debug_assert_eq!(data.len(), batch * time * channels);
        debug_assert_eq!(lengths.len(), batch);
        debug_assert!(lengths.iter().all(|&l| l <= time));
        Self { data, batch, time, channels, lengths }
    }
}

/// A layer with a forward pass that caches what its hand-written backward pass needs.
///
/// Shapes: `forward` maps a `(B, T, C_in)` batch to a `(B, T_out, C_out)` batch (with output lengths);
/// `backward` takes the gradient of the loss with respect to that output, `(B, T_out, C_out)` flat, and
/// returns the gradient with respect to the input, `(B, T, C_in)` flat, zero at padded input frames.
/// Gradient values at padded *output* frames are ignored.
pub trait Layer<F: NnFloat>: Send {
    /// Runs the layer on `input` and remembers what `backward` needs (overwriting the previous cache).
    ///
    /// # Errors
    /// [`NnError::ShapeMismatch`] when the input's channel count is not the layer's, or a layer-specific
    /// error (e.g. a sequence too short for a convolution is not an error: its output length is 0).
    fn forward(&mut self, input: &Batch<F>, mode: Mode) -> Result<Batch<F>, NnError>;

    /// Back-propagates `grad_output` (flat `(B, T_out, C_out)`, the shape of the last forward's output),
    /// adds the parameter gradients into each parameter's `grad`, and returns the input gradient
    /// (flat `(B, T, C_in)`).
    ///
    /// # Errors
    /// [`NnError::NoForwardCache`] if `forward` has not run; [`NnError::ShapeMismatch`] if
    /// `grad_output` does not have the length of the last output.
    fn backward(&mut self, grad_output: &[F]) -> Result<Vec<F>, NnError>;

    /// As [`Layer::backward`], but without the input gradient: for the first layer of a model, whose
    /// input (the features) needs none. Layers for which that gradient costs real work (a
    /// convolution's second matrix product) skip it; the default computes and drops it.
    ///
    /// # Errors
    /// As [`Layer::backward`].
    fn backward_params(&mut self, grad_output: &[F]) -> Result<(), NnError> {
        self.backward(grad_output).map(drop)
    }

    /// Calls `f` on each parameter (weights, biases), in a fixed order.
    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(&'a Param<F>));

    /// Calls `f` on each parameter, mutably, in the same order as [`Layer::visit_params`].
    fn visit_params_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<F>));

    /// Sets every parameter gradient to zero.
    fn zero_grad(&mut self) {
        self.visit_params_mut(&mut |p| p.zero_grad());
    }
}

/// Zeroes rows `t >= lengths[b]` of a `(B, T, C)` buffer.
fn zero_padded_rows<F: NnFloat>(data: &mut [F], time: usize, channels: usize, lengths: &[usize]) {
    for (b, &len) in lengths.iter().enumerate() {
        let start = (b * time + len) * channels;
        let end = (b + 1) * time * channels;
        data[start..end].fill(F::ZERO);
    }
}

/// Copies a `(B, T, C)` buffer, writing zeros at padded frames (which may hold anything, NaN included).
fn masked_copy<F: NnFloat>(dst: &mut Vec<F>, src: &[F], time: usize, channels: usize, lengths: &[usize]) {
    // Every element is written below, so the old contents (not a fresh zero fill) may stay.
    dst.resize(src.len(), F::ZERO);
    zero_padded_rows(dst, time, channels, lengths);
    for (b, &len) in lengths.iter().enumerate() {
        let start = b * time * channels;
        let end = start + len * channels;
        dst[start..end].copy_from_slice(&src[start..end]);
    }
}

/// Checks that a gradient has the length of the cached output.
fn check_grad_len(what: &'static str, expected: usize, got: usize) -> Result<(), NnError> {
    if expected != got {
        return Err(NnError::ShapeMismatch { what, expected, got });
    }
    Ok(())
}

/// Checks the channel count of a layer's input.
fn check_channels(layer: &'static str, expected: usize, got: usize) -> Result<(), NnError> {
    if expected != got {
        return Err(NnError::ShapeMismatch { what: layer, expected, got });
    }
    Ok(())
}

/// Runs two closures, in parallel when the `rayon` feature is on.
fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    #[cfg(feature = "rayon")]
    {
        rayon::join(a, b)
    }
    #[cfg(not(feature = "rayon"))]
    {
        (a(), b())
    }
}
