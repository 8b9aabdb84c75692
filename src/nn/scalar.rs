//! The scalar operations the layers need beyond [`Float`].

use crate::Float;

/// [`Float`] plus the few functions the layers and optimizers need (`sqrt`, `tanh`, `sigmoid`).
///
/// Implemented for `f32` and `f64` only (like `Float`, which is sealed); matrix products dispatch on
/// the concrete type inside the `gemm` crate.
pub trait NnFloat: Float {
    /// Square root (`NaN` for negative input).
    fn sqrt(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Logistic function `1 / (1 + e^-x)`, without overflow for large `|x|`.
    fn sigmoid(self) -> Self;
    /// `self^n`.
    fn powi(self, n: i32) -> Self;
    /// `self^e`.
    fn powf(self, e: Self) -> Self;
    /// Cosine (radians).
    fn cos(self) -> Self;
}

macro_rules! impl_nn_float {
    ($t:ident) => {
        impl NnFloat for $t {
            #[inline(always)]
            fn sqrt(self) -> Self {
                $t::sqrt(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                $t::tanh(self)
            }
            #[inline(always)]
            fn sigmoid(self) -> Self {
                // e^-|x| never overflows; the two branches are the same function.
                let e = $t::exp(-$t::abs(self));
                if self >= 0.0 {
                    1.0 / (1.0 + e)
                } else {
                    e / (1.0 + e)
                }
            }
            #[inline(always)]
            fn powi(self, n: i32) -> Self {
                $t::powi(self, n)
            }
            #[inline(always)]
            fn powf(self, e: Self) -> Self {
                $t::powf(self, e)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                $t::cos(self)
            }
        }
    };
}

impl_nn_float!(f32);
impl_nn_float!(f64);
