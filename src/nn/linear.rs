//! Fully connected layer applied to every frame.

use rand::rngs::Xoshiro256PlusPlus;

use super::gemm::{add_col_sums, fill_rows, matmul_par, View};
use super::param::default_bound;
use super::{
    check_channels, check_grad_len, masked_copy, zero_padded_rows, Batch, Layer, Mode, NnError,
    NnFloat, Param, ParamInit,
};

/// `y[b, t, :] = W x[b, t, :] + bias` on every valid frame.
///
/// Shapes: input `(B, T, in)`, output `(B, T, out)`, same lengths; `weight` is `(out, in)` row-major
/// (PyTorch's layout), `bias` is `(out)`. Initialised `uniform(-1/sqrt(in), 1/sqrt(in))` like PyTorch.
#[derive(Clone, Debug)]
pub struct Linear<F> {
    weight: Param<F>,
    bias: Param<F>,
    in_features: usize,
    out_features: usize,
    /// The input of the last forward, padded frames zeroed: `(B, T, in)`.
    input: Vec<F>,
    /// Shape and lengths of the last forward; `None` before the first.
    shape: Option<(usize, usize, Vec<usize>)>,
}

impl<F: NnFloat> Linear<F> {
    /// A layer named `prefix` (parameters `prefix.weight`, `prefix.bias`), initialised from `rng`.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] if either size is zero.
    pub fn new(
        prefix: &str,
        in_features: usize,
        out_features: usize,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Result<Self, NnError> {
        for (field, v) in [("in_features", in_features), ("out_features", out_features)] {
            if v == 0 {
                return Err(NnError::InvalidConfig {
                    field,
                    value: 0.0,
                    requirement: "at least 1",
                });
            }
        }
        let bound = default_bound(in_features);
        Ok(Self {
            weight: Param::new(
                format!("{prefix}.weight"),
                vec![out_features, in_features],
                ParamInit::Uniform(bound),
                rng,
            ),
            bias: Param::new(
                format!("{prefix}.bias"),
                vec![out_features],
                ParamInit::Uniform(bound),
                rng,
            ),
            in_features,
            out_features,
            input: Vec::new(),
            shape: None,
        })
    }

    /// Input channels.
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Output channels.
    pub fn out_features(&self) -> usize {
        self.out_features
    }
}

impl<F: NnFloat> Layer<F> for Linear<F> {
    fn forward(&mut self, input: &Batch<F>, _mode: Mode) -> Result<Batch<F>, NnError> {
        let (b, t, c) = input.shape();
        check_channels("linear input channels", self.in_features, c)?;
        masked_copy(&mut self.input, input.data(), t, c, input.lengths());
        let rows = b * t;
        let mut out = vec![F::ZERO; rows * self.out_features];
        fill_rows(&mut out, self.bias.value(), self.out_features);
        matmul_par(
            true,
            View::rm(&self.input, rows, c),
            View::tr(self.weight.value(), self.out_features, c),
            &mut out,
            self.out_features,
        );
        zero_padded_rows(&mut out, t, self.out_features, input.lengths());
        self.shape = Some((b, t, input.lengths().to_vec()));
        Ok(Batch::from_parts(
            out,
            b,
            t,
            self.out_features,
            input.lengths().to_vec(),
        ))
    }

    fn backward(&mut self, grad_output: &[F]) -> Result<Vec<F>, NnError> {
        let (b, t, lengths) = self
            .shape
            .as_ref()
            .ok_or(NnError::NoForwardCache { layer: "Linear" })?;
        let (b, t) = (*b, *t);
        let rows = b * t;
        check_grad_len(
            "linear grad_output length",
            rows * self.out_features,
            grad_output.len(),
        )?;
        let mut g = Vec::new();
        masked_copy(&mut g, grad_output, t, self.out_features, lengths);
        // dW (out, in) += g^T (out, rows) x input (rows, in)
        let (o, i) = (self.out_features, self.in_features);
        matmul_par(
            true,
            View::tr(&g, rows, o),
            View::rm(&self.input, rows, i),
            self.weight.grad_mut(),
            i,
        );
        add_col_sums(self.bias.grad_mut(), &g, o);
        let mut gin = vec![F::ZERO; rows * i];
        matmul_par(
            false,
            View::rm(&g, rows, o),
            View::rm(self.weight.value(), o, i),
            &mut gin,
            i,
        );
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
