//! Layer normalisation over the channels of each frame.

use rand::rngs::Xoshiro256PlusPlus;

use super::{
    check_channels, check_grad_len, zero_padded_rows, Batch, Layer, Mode, NnError, NnFloat, Param,
    ParamInit,
};

/// `y = (x - mean) / sqrt(var + eps) * weight + bias` over the `C` channels of each valid frame
/// (biased variance, like PyTorch's `LayerNorm(C)`).
///
/// Shapes: `(B, T, C)` in and out, same lengths; `weight` and `bias` are `(C)`, initialised to 1 and 0.
/// Padded frames output zero.
#[derive(Clone, Debug)]
pub struct LayerNorm<F> {
    weight: Param<F>,
    bias: Param<F>,
    channels: usize,
    eps: f64,
    /// Normalised input `(x - mean) * rstd` of the last forward, `(B, T, C)`.
    xhat: Vec<F>,
    /// `1 / sqrt(var + eps)` per frame, `(B, T)`.
    rstd: Vec<F>,
    shape: Option<(usize, Vec<usize>)>,
}

impl<F: NnFloat> LayerNorm<F> {
    /// Layer norm over `channels`, named `prefix` (`prefix.weight`, `prefix.bias`), with `eps` added to
    /// the variance (PyTorch's default is `1e-5`). `rng` is unused (constant init) but taken for a
    /// uniform constructor signature.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] if `channels == 0` or `eps` is not positive and finite.
    pub fn new(
        prefix: &str,
        channels: usize,
        eps: f64,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Result<Self, NnError> {
        if channels == 0 {
            return Err(NnError::InvalidConfig {
                field: "channels",
                value: 0.0,
                requirement: "at least 1",
            });
        }
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(NnError::InvalidConfig {
                field: "eps",
                value: eps,
                requirement: "positive and finite",
            });
        }
        Ok(Self {
            weight: Param::new(
                format!("{prefix}.weight"),
                vec![channels],
                ParamInit::Constant(1.0),
                rng,
            ),
            bias: Param::new(
                format!("{prefix}.bias"),
                vec![channels],
                ParamInit::Constant(0.0),
                rng,
            ),
            channels,
            eps,
            xhat: Vec::new(),
            rstd: Vec::new(),
            shape: None,
        })
    }
}

impl<F: NnFloat> Layer<F> for LayerNorm<F> {
    fn forward(&mut self, input: &Batch<F>, _mode: Mode) -> Result<Batch<F>, NnError> {
        let (b, t, c) = input.shape();
        check_channels("layer norm input channels", self.channels, c)?;
        self.xhat.clear();
        self.xhat.resize(b * t * c, F::ZERO);
        self.rstd.clear();
        self.rstd.resize(b * t, F::ZERO);
        let mut out = vec![F::ZERO; b * t * c];
        let inv_c = F::ONE / F::from_usize(c);
        let eps = F::from_f64(self.eps);
        let (w, bias) = (self.weight.value(), self.bias.value());
        for (bi, &len) in input.lengths().iter().enumerate() {
            for ti in 0..len {
                let r = bi * t + ti;
                let x = &input.data()[r * c..(r + 1) * c];
                let mean = x.iter().copied().sum::<F>() * inv_c;
                let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<F>() * inv_c;
                let rstd = F::ONE / (var + eps).sqrt();
                self.rstd[r] = rstd;
                let xh = &mut self.xhat[r * c..(r + 1) * c];
                let o = &mut out[r * c..(r + 1) * c];
                for k in 0..c {
                    xh[k] = (x[k] - mean) * rstd;
                    o[k] = xh[k] * w[k] + bias[k];
                }
            }
        }
        self.shape = Some((t, input.lengths().to_vec()));
        Ok(Batch::from_parts(out, b, t, c, input.lengths().to_vec()))
    }

    fn backward(&mut self, grad_output: &[F]) -> Result<Vec<F>, NnError> {
        let (t, lengths) = self
            .shape
            .as_ref()
            .ok_or(NnError::NoForwardCache { layer: "LayerNorm" })?;
        let c = self.channels;
        check_grad_len(
            "layer norm grad_output length",
            self.xhat.len(),
            grad_output.len(),
        )?;
        let mut gin = vec![F::ZERO; self.xhat.len()];
        let inv_c = F::ONE / F::from_usize(c);
        let w = self.weight.value().to_vec();
        let mut dw = vec![F::ZERO; c];
        let mut db = vec![F::ZERO; c];
        for (bi, &len) in lengths.iter().enumerate() {
            for ti in 0..len {
                let r = bi * t + ti;
                let g = &grad_output[r * c..(r + 1) * c];
                let xh = &self.xhat[r * c..(r + 1) * c];
                // dxhat = g * w; dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
                let mut sum_d = F::ZERO;
                let mut sum_dx = F::ZERO;
                for k in 0..c {
                    let d = g[k] * w[k];
                    sum_d += d;
                    sum_dx += d * xh[k];
                    dw[k] += g[k] * xh[k];
                    db[k] += g[k];
                }
                let (mean_d, mean_dx) = (sum_d * inv_c, sum_dx * inv_c);
                let rstd = self.rstd[r];
                let gi = &mut gin[r * c..(r + 1) * c];
                for k in 0..c {
                    gi[k] = rstd * (g[k] * w[k] - mean_d - xh[k] * mean_dx);
                }
            }
        }
        for (a, d) in self.weight.grad_mut().iter_mut().zip(&dw) {
            *a += *d;
        }
        for (a, d) in self.bias.grad_mut().iter_mut().zip(&db) {
            *a += *d;
        }
        zero_padded_rows(&mut gin, *t, c, lengths);
        Ok(gin)
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
