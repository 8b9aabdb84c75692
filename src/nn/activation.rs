//! Element-wise activations.

use serde::{Deserialize, Serialize};

use super::{check_grad_len, zero_padded_rows, Batch, Layer, Mode, NnError, NnFloat, Param};

/// An element-wise nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(x, 0)`; gradient 0 at `x <= 0`.
    Relu,
    /// GELU, tanh form (PyTorch's `approximate="tanh"`):
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
    Gelu,
    /// SiLU / swish: `x * sigmoid(x)`.
    Silu,
    /// `tanh(x)`.
    Tanh,
    /// `clamp(x, min, max)` (hardtanh; `min = 0, max = 20` is DeepSpeech's clipped ReLU); gradient 1
    /// strictly inside the interval, 0 outside.
    HardTanh {
        /// Lower bound.
        min: f64,
        /// Upper bound (`>= min`).
        max: f64,
    },
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_CUBIC: f64 = 0.044_715;

impl Activation {
    /// `f(x)`.
    #[inline]
    pub fn apply<F: NnFloat>(self, x: F) -> F {
        match self {
            Self::Relu => x.max(F::ZERO),
            Self::Gelu => {
                let inner = F::from_f64(SQRT_2_OVER_PI) * (x + F::from_f64(GELU_CUBIC) * x * x * x);
                F::from_f64(0.5) * x * (F::ONE + inner.tanh())
            }
            Self::Silu => x * x.sigmoid(),
            Self::Tanh => x.tanh(),
            Self::HardTanh { min, max } => x.max(F::from_f64(min)).min(F::from_f64(max)),
        }
    }

    /// `f'(x)`.
    #[inline]
    pub fn derivative<F: NnFloat>(self, x: F) -> F {
        match self {
            Self::Relu => {
                if x > F::ZERO {
                    F::ONE
                } else {
                    F::ZERO
                }
            }
            Self::Gelu => {
                let c = F::from_f64(SQRT_2_OVER_PI);
                let a = F::from_f64(GELU_CUBIC);
                let th = (c * (x + a * x * x * x)).tanh();
                let half = F::from_f64(0.5);
                half * (F::ONE + th)
                    + half * x * (F::ONE - th * th) * c * (F::ONE + F::from_f64(3.0) * a * x * x)
            }
            Self::Silu => {
                let s = x.sigmoid();
                s * (F::ONE + x * (F::ONE - s))
            }
            Self::Tanh => {
                let th = x.tanh();
                F::ONE - th * th
            }
            Self::HardTanh { min, max } => {
                if x > F::from_f64(min) && x < F::from_f64(max) {
                    F::ONE
                } else {
                    F::ZERO
                }
            }
        }
    }
}

/// An [`Activation`] as a layer: output `(B, T, C)` = `f(input)` on valid frames, zero on padded frames.
#[derive(Clone, Debug)]
pub struct ActivationLayer<F> {
    kind: Activation,
    /// Input of the last forward, `(B, T, C)`, padded frames zeroed.
    input: Vec<F>,
    shape: Option<(usize, usize, Vec<usize>)>,
}

impl<F: NnFloat> ActivationLayer<F> {
    /// A layer applying `kind`.
    pub fn new(kind: Activation) -> Self {
        Self {
            kind,
            input: Vec::new(),
            shape: None,
        }
    }

    /// The nonlinearity.
    pub fn kind(&self) -> Activation {
        self.kind
    }
}

impl<F: NnFloat> Layer<F> for ActivationLayer<F> {
    fn forward(&mut self, input: &Batch<F>, _mode: Mode) -> Result<Batch<F>, NnError> {
        let (b, t, c) = input.shape();
        let kind = self.kind;
        self.input.clear();
        self.input.extend_from_slice(input.data());
        zero_padded_rows(&mut self.input, t, c, input.lengths());
        let mut out: Vec<F> = if kind == Activation::Gelu {
            let mut out = vec![F::ZERO; self.input.len()];
            F::gelu_forward(&self.input, &mut out);
            out
        } else {
            self.input.iter().map(|&x| kind.apply(x)).collect()
        };
        // f(0) need not be 0 (e.g. hardtanh with min > 0).
        zero_padded_rows(&mut out, t, c, input.lengths());
        self.shape = Some((t, c, input.lengths().to_vec()));
        Ok(Batch::from_parts(out, b, t, c, input.lengths().to_vec()))
    }

    fn backward(&mut self, grad_output: &[F]) -> Result<Vec<F>, NnError> {
        let (t, c, lengths) = self.shape.as_ref().ok_or(NnError::NoForwardCache {
            layer: "Activation",
        })?;
        check_grad_len(
            "activation grad_output length",
            self.input.len(),
            grad_output.len(),
        )?;
        let kind = self.kind;
        let mut gin: Vec<F> = self
            .input
            .iter()
            .zip(grad_output)
            .map(|(&x, &g)| g * kind.derivative(x))
            .collect();
        zero_padded_rows(&mut gin, *t, *c, lengths);
        Ok(gin)
    }

    fn visit_params<'a>(&'a self, _f: &mut dyn FnMut(&'a Param<F>)) {}

    fn visit_params_mut<'a>(&'a mut self, _f: &mut dyn FnMut(&'a mut Param<F>)) {}
}
