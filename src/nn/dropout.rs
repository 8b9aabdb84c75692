//! Inverted dropout with a seeded generator.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, SeedableRng};

use super::{check_grad_len, zero_padded_rows, Batch, Layer, Mode, NnError, NnFloat, Param};

/// Inverted dropout: in [`Mode::Train`] each element is zeroed with probability `p` and the survivors
/// are scaled by `1 / (1 - p)`, so the expected output equals the input; in [`Mode::Eval`] it is the
/// identity. Shapes: `(B, T, C)` in and out, same lengths; padded frames are zero.
///
/// The masks come from a Xoshiro256++ generator seeded at construction, so a run is reproducible from
/// its seed (and the sequence of batch shapes).
#[derive(Clone, Debug)]
pub struct Dropout<F> {
    p: f64,
    rng: Xoshiro256PlusPlus,
    /// Per-element multiplier of the last training forward (`0` or `1 / (1 - p)`), `(B, T, C)`; empty
    /// after an evaluation forward, meaning "identity".
    mask: Vec<F>,
    shape: Option<(usize, usize, Vec<usize>, usize)>,
}

impl<F: NnFloat> Dropout<F> {
    /// Dropout with drop probability `p` in `[0, 1)`, masks drawn from a generator seeded with `seed`.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] if `p` is not in `[0, 1)`.
    pub fn new(p: f64, seed: u64) -> Result<Self, NnError> {
        if !(0.0..1.0).contains(&p) {
            return Err(NnError::InvalidConfig { field: "dropout", value: p, requirement: "in [0, 1)" });
        }
        Ok(Self { p, rng: Xoshiro256PlusPlus::seed_from_u64(seed), mask: Vec::new(), shape: None })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }
}

impl<F: NnFloat> Layer<F> for Dropout<F> {
    fn forward(&mut self, input: &Batch<F>, mode: Mode) -> Result<Batch<F>, NnError> {
        let (b, t, c) = input.shape();
        let mut out = input.data().to_vec();
        self.mask.clear();
        if mode == Mode::Train && self.p > 0.0 {
            let scale = F::from_f64(1.0 / (1.0 - self.p));
            // An element is dropped when a uniform 32-bit draw is below p 2^32 (p exact to 2^-32): two
            // draws per generator output instead of one `f64` each, since drawing the masks was most
            // of this layer's time (the default model's four dropout layers took about 4 % of a step).
            let threshold = (self.p * 4_294_967_296.0) as u64;
            self.mask.resize(out.len(), F::ZERO);
            for (o, m) in out.chunks_mut(2).zip(self.mask.chunks_mut(2)) {
                let bits = self.rng.next_u64();
                for (k, (o, m)) in o.iter_mut().zip(m).enumerate() {
                    let draw = (bits >> (32 * k)) & 0xFFFF_FFFF;
                    *m = if draw < threshold { F::ZERO } else { scale };
                    *o *= *m;
                }
            }
        }
        zero_padded_rows(&mut out, t, c, input.lengths());
        self.shape = Some((t, c, input.lengths().to_vec(), out.len()));
        Ok(Batch::from_parts(out, b, t, c, input.lengths().to_vec()))
    }

    fn backward(&mut self, grad_output: &[F]) -> Result<Vec<F>, NnError> {
        let (t, c, lengths, n) = self.shape.as_ref().ok_or(NnError::NoForwardCache { layer: "Dropout" })?;
        check_grad_len("dropout grad_output length", *n, grad_output.len())?;
        let mut gin = grad_output.to_vec();
        if !self.mask.is_empty() {
            for (g, &m) in gin.iter_mut().zip(&self.mask) {
                *g *= m;
            }
        }
        zero_padded_rows(&mut gin, *t, *c, lengths);
        Ok(gin)
    }

    fn visit_params<'a>(&'a self, _f: &mut dyn FnMut(&'a Param<F>)) {}

    fn visit_params_mut<'a>(&'a mut self, _f: &mut dyn FnMut(&'a mut Param<F>)) {}
}
