//! Named parameter tensors and their seeded initialisation.

use rand::rngs::Xoshiro256PlusPlus;
use rand::RngExt;

use super::{NnError, NnFloat};

/// A named parameter tensor with its gradient: values and gradient are flat row-major buffers of the
/// same length, the product of `shape`.
///
/// Names are dotted paths unique within a model (e.g. `"rnn.0.weight_ih_l0_reverse"`), and shapes follow
/// PyTorch's layouts (a linear weight is `(out, in)`, a convolution weight `(out, in, kernel)`), so
/// checkpoints can be written and read by name.
#[derive(Clone, Debug, PartialEq)]
pub struct Param<F> {
    name: String,
    shape: Vec<usize>,
    value: Vec<F>,
    grad: Vec<F>,
}

impl<F: NnFloat> Param<F> {
    /// A parameter of the given shape, initialised by `init` with `rng`, gradient zero.
    pub(crate) fn new(
        name: String,
        shape: Vec<usize>,
        init: ParamInit,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Self {
        let n: usize = shape.iter().product();
        let value = match init {
            ParamInit::Constant(c) => vec![F::from_f64(c); n],
            ParamInit::Uniform(bound) => (0..n)
                .map(|_| F::from_f64((rng.random::<f64>() * 2.0 - 1.0) * bound))
                .collect(),
        };
        Self {
            name,
            shape,
            grad: vec![F::ZERO; n],
            value,
        }
    }

    /// A parameter with the given values (row-major, `shape.iter().product()` of them) and a zero
    /// gradient; for tests, checkpoint loading and custom layers.
    ///
    /// # Errors
    /// [`NnError::ShapeMismatch`] if `values.len()` is not the product of `shape`.
    pub fn from_values(
        name: impl Into<String>,
        shape: Vec<usize>,
        values: Vec<F>,
    ) -> Result<Self, NnError> {
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .unwrap_or(usize::MAX);
        if n != values.len() {
            return Err(NnError::ShapeMismatch {
                what: "parameter values for its shape",
                expected: n,
                got: values.len(),
            });
        }
        Ok(Self {
            name: name.into(),
            shape,
            grad: vec![F::ZERO; n],
            value: values,
        })
    }

    /// The parameter's dotted name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its shape (PyTorch layout); the buffers hold `shape.iter().product()` elements, row-major.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    /// `true` for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// The values, flat row-major.
    pub fn value(&self) -> &[F] {
        &self.value
    }

    /// The values, mutable (for optimizers and checkpoint loading).
    pub fn value_mut(&mut self) -> &mut [F] {
        &mut self.value
    }

    /// The accumulated gradient, same layout as the values.
    pub fn grad(&self) -> &[F] {
        &self.grad
    }

    /// The gradient, mutable (for clipping and scaling).
    pub fn grad_mut(&mut self) -> &mut [F] {
        &mut self.grad
    }

    /// Values (mutable) and gradient together, for an optimizer step.
    pub fn value_and_grad_mut(&mut self) -> (&mut [F], &[F]) {
        (&mut self.value, &self.grad)
    }

    /// Sets the gradient to zero (backward passes accumulate into it).
    pub fn zero_grad(&mut self) {
        self.grad.fill(F::ZERO);
    }
}

/// How a parameter is initialised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamInit {
    /// Every element `uniform(-bound, bound)`; PyTorch's default for linear, convolution and recurrent
    /// weights and biases is `bound = 1 / sqrt(fan_in)` (`fan_in = in * kernel`, or the hidden size).
    Uniform(f64),
    /// Every element equal to the constant (layer-norm gain 1, bias 0).
    Constant(f64),
}

/// PyTorch's default bound `1 / sqrt(fan_in)` (`fan_in >= 1`).
pub(crate) fn default_bound(fan_in: usize) -> f64 {
    1.0 / (fan_in.max(1) as f64).sqrt()
}
