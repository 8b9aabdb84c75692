//! The scalar operations the layers need beyond [`Float`].

use crate::Float;

pub(crate) use kernels::Kernels;

/// [`Float`] plus the few functions the layers and optimizers need (`sqrt`, `tanh`, `sigmoid`).
///
/// Implemented for `f32` and `f64` only (like `Float`, which is sealed); matrix products dispatch on
/// the concrete type inside the `gemm` crate.
pub trait NnFloat: Float + Kernels {
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

mod kernels {
    use super::NnFloat;
    use crate::nn::Activation;

    /// Hot element-wise loops with a SIMD version for `f32` (the training type) and the plain scalar
    /// loop for `f64` (the finite-difference checks). Public inside a private module, so `NnFloat`
    /// stays sealed and these stay out of the crate's API.
    pub trait Kernels: Sized {
        /// One GRU cell for one sequence: `xp = W_i x + b_i` and `hp = W_h h + b_h` (each `[r | z | n]`,
        /// `3H`), `state` (`H`) is updated in place to `h'`, which is also written to `out`, and
        /// `gates` (`4H`) receives `[r | z | n | hp_n]` for the backward pass.
        fn gru_cell(
            xp: &[Self],
            hp: &[Self],
            state: &mut [Self],
            gates: &mut [Self],
            out: &mut [Self],
        );

        /// `out[i] = gelu(x[i])` (tanh form), `out.len() == x.len()`.
        fn gelu_forward(x: &[Self], out: &mut [Self]);

        /// `out[i] = g[i] * gelu'(x[i])`, all three of one length.
        fn gelu_backward(x: &[Self], g: &[Self], out: &mut [Self]);
    }

    fn gelu_forward_scalar<F: NnFloat>(x: &[F], out: &mut [F]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = Activation::Gelu.apply(v);
        }
    }

    fn gelu_backward_scalar<F: NnFloat>(x: &[F], g: &[F], out: &mut [F]) {
        for ((o, &v), &d) in out.iter_mut().zip(x).zip(g) {
            *o = d * Activation::Gelu.derivative(v);
        }
    }

    /// The reference loop, exactly PyTorch's equations.
    #[inline]
    fn gru_cell_scalar<F: NnFloat>(
        xp: &[F],
        hp: &[F],
        state: &mut [F],
        gates: &mut [F],
        out: &mut [F],
    ) {
        let h = state.len();
        let (xr, rest) = xp.split_at(h);
        let (xz, xn) = rest.split_at(h);
        let (hr, rest) = hp.split_at(h);
        let (hz, hn) = rest.split_at(h);
        let (gr, rest) = gates.split_at_mut(h);
        let (gz, rest) = rest.split_at_mut(h);
        let (gn, ghn) = rest.split_at_mut(h);
        let (xz, xn, hz, hn, out) = (&xz[..h], &xn[..h], &hz[..h], &hn[..h], &mut out[..h]);
        for k in 0..h {
            let r = (xr[k] + hr[k]).sigmoid();
            let z = (xz[k] + hz[k]).sigmoid();
            let n = (xn[k] + r * hn[k]).tanh();
            let new = n + z * (state[k] - n);
            gr[k] = r;
            gz[k] = z;
            gn[k] = n;
            ghn[k] = hn[k];
            state[k] = new;
            out[k] = new;
        }
    }

    impl Kernels for f64 {
        #[inline]
        fn gru_cell(
            xp: &[Self],
            hp: &[Self],
            state: &mut [Self],
            gates: &mut [Self],
            out: &mut [Self],
        ) {
            gru_cell_scalar(xp, hp, state, gates, out);
        }

        fn gelu_forward(x: &[Self], out: &mut [Self]) {
            gelu_forward_scalar(x, out);
        }

        fn gelu_backward(x: &[Self], g: &[Self], out: &mut [Self]) {
            gelu_backward_scalar(x, g, out);
        }
    }

    /// `sqrt(2 / pi)` and the cubic coefficient of the tanh-form GELU, as in [`Activation::Gelu`].
    const GELU_C: f32 = 0.797_884_6;
    const GELU_A: f32 = 0.044_715;

    impl Kernels for f32 {
        /// Eight lanes at a time with `wide`'s `exp` and `tanh` (a few ulp from the standard library's;
        /// the f32 model is trained, not compared bit-for-bit), the scalar loop for the tail.
        fn gru_cell(
            xp: &[Self],
            hp: &[Self],
            state: &mut [Self],
            gates: &mut [Self],
            out: &mut [Self],
        ) {
            use wide::f32x8;
            const L: usize = 8;
            let h = state.len();
            let body = h - h % L;
            let load = |s: &[f32], i: usize| f32x8::new(s[i..i + L].try_into().expect("8 lanes"));
            let one = f32x8::splat(1.0);
            for i in (0..body).step_by(L) {
                let hn = load(hp, 2 * h + i);
                // sigmoid(a) = 1 / (1 + e^-a): e^-a overflowing to +inf gives exactly 0.
                let r = one / (one + (-(load(xp, i) + load(hp, i))).exp());
                let z = one / (one + (-(load(xp, h + i) + load(hp, h + i))).exp());
                let n = (load(xp, 2 * h + i) + r * hn).tanh();
                let new = n + z * (load(state, i) - n);
                gates[i..i + L].copy_from_slice(&r.to_array());
                gates[h + i..h + i + L].copy_from_slice(&z.to_array());
                gates[2 * h + i..2 * h + i + L].copy_from_slice(&n.to_array());
                gates[3 * h + i..3 * h + i + L].copy_from_slice(&hn.to_array());
                let new = new.to_array();
                state[i..i + L].copy_from_slice(&new);
                out[i..i + L].copy_from_slice(&new);
            }
            if body < h {
                // The tail runs the scalar loop on the last `h - body` units of each gate block.
                for k in body..h {
                    let r = (xp[k] + hp[k]).sigmoid();
                    let z = (xp[h + k] + hp[h + k]).sigmoid();
                    let n = (xp[2 * h + k] + r * hp[2 * h + k]).tanh();
                    let new = n + z * (state[k] - n);
                    gates[k] = r;
                    gates[h + k] = z;
                    gates[2 * h + k] = n;
                    gates[3 * h + k] = hp[2 * h + k];
                    state[k] = new;
                    out[k] = new;
                }
            }
        }

        fn gelu_forward(x: &[Self], out: &mut [Self]) {
            use wide::f32x8;
            let (c, a, half) = (
                f32x8::splat(GELU_C),
                f32x8::splat(GELU_A),
                f32x8::splat(0.5),
            );
            let mut xs = x.chunks_exact(8);
            let mut os = out.chunks_exact_mut(8);
            for (xc, oc) in (&mut xs).zip(&mut os) {
                let v = f32x8::new(xc.try_into().expect("8 lanes"));
                let th = (c * (v + a * v * v * v)).tanh();
                oc.copy_from_slice(&(half * v * (f32x8::ONE + th)).to_array());
            }
            gelu_forward_scalar(xs.remainder(), os.into_remainder());
        }

        fn gelu_backward(x: &[Self], g: &[Self], out: &mut [Self]) {
            use wide::f32x8;
            let (c, a, half) = (
                f32x8::splat(GELU_C),
                f32x8::splat(GELU_A),
                f32x8::splat(0.5),
            );
            let three_a = f32x8::splat(3.0 * GELU_A);
            let mut xs = x.chunks_exact(8);
            let mut gs = g.chunks_exact(8);
            let mut os = out.chunks_exact_mut(8);
            for ((xc, gc), oc) in (&mut xs).zip(&mut gs).zip(&mut os) {
                let v = f32x8::new(xc.try_into().expect("8 lanes"));
                let d = f32x8::new(gc.try_into().expect("8 lanes"));
                let th = (c * (v + a * v * v * v)).tanh();
                let deriv = half * (f32x8::ONE + th)
                    + half * v * (f32x8::ONE - th * th) * c * (f32x8::ONE + three_a * v * v);
                oc.copy_from_slice(&(d * deriv).to_array());
            }
            gelu_backward_scalar(xs.remainder(), gs.remainder(), os.into_remainder());
        }
    }
}
