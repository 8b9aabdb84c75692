//! An output layer that emits several frames per input frame: a higher CTC frame rate at no
//! recurrent cost.

use rand::rngs::Xoshiro256PlusPlus;

use super::{check_grad_len, Batch, Layer, Linear, Mode, NnError, NnFloat, Param};

/// `factor` output frames of `out` logits for every input frame: `(B, T, in)` in,
/// `(B, factor * T, out)` out, lengths multiplied by `factor`.
///
/// Output frame `factor * t + j` of sequence `b` is `(W + D_j) x[b, t] + (bias + d_j)`: a shared linear
/// map (`W`, `bias`, parameters `prefix.weight` `(out, in)` and `prefix.bias` `(out)`, initialised like
/// [`Linear`]) plus a per-sub-frame offset (`D_j`, `d_j`, stacked as `prefix.subframe.weight`
/// `(factor * out, in)` and `prefix.subframe.bias` `(factor * out)`, rows `j * out .. (j + 1) * out`
/// for sub-frame `j`), initialised to zero. Padded input frames (`t >= lengths[b]`) give the padded
/// output frames (`>= factor * lengths[b]`), which are zero.
///
/// Why: a recognizer that subsamples its features by 4 gives CTC one frame per 40 ms, and fast speech
/// needs more than one label per 40 ms (plus a blank between doubled letters), which CTC cannot emit:
/// it drops characters. This layer gives CTC `factor` frames per recurrent step while the recurrent
/// layers, which cost nearly all of a training step, keep running at 40 ms.
///
/// Why shared plus offsets rather than `factor` independent maps (the same set of functions): under
/// Adam, each independent map would learn every label only from the events that fall on its own
/// sub-frame; the shared map learns from all of them, as the output layer of a model without the
/// split does, and the offsets (zero at first, so training starts from "each frame twice") only learn
/// which sub-frame a label falls on. Weight decay on the offsets pulls the sub-frames together.
///
/// With the split switched off ([`SubframeLinear::set_split`]) the layer is the shared map alone,
/// `(B, T, in)` to `(B, T, out)`, and the offsets get no gradient. A trainer can start that way: CTC
/// over 20 ms frames escapes its first all-blank plateau more slowly than over 40 ms frames, and since
/// the offsets start at zero, switching the split on later gives each 40 ms frame's logits to both of
/// its sub-frames, which greedy decoding reads exactly as before (a label on two consecutive frames
/// collapses to one, a blank stays a blank).
#[derive(Clone, Debug)]
pub struct SubframeLinear<F> {
    shared: Linear<F>,
    offsets: Linear<F>,
    factor: usize,
    split: bool,
    /// `(B, T)` of the last forward's input and whether it was split.
    shape: Option<(usize, usize, bool)>,
}

impl<F: NnFloat> SubframeLinear<F> {
    /// A layer named `prefix` with `factor` sub-frames of `out_features` logits each, shared part
    /// initialised from `rng`.
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] if a size is zero or `factor * out_features` overflows.
    pub fn new(
        prefix: &str,
        in_features: usize,
        out_features: usize,
        factor: usize,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Result<Self, NnError> {
        if factor == 0 {
            return Err(NnError::InvalidConfig { field: "factor", value: 0.0, requirement: "at least 1" });
        }
        let stacked = factor.checked_mul(out_features).ok_or(NnError::InvalidConfig {
            field: "factor",
            value: factor as f64,
            requirement: "factor * out_features must fit in usize",
        })?;
        let shared = Linear::new(prefix, in_features, out_features, rng)?;
        let mut offsets = Linear::new(&format!("{prefix}.subframe"), in_features, stacked, rng)?;
        offsets.visit_params_mut(&mut |p| p.value_mut().fill(F::ZERO));
        Ok(Self { shared, offsets, factor, split: true, shape: None })
    }

    /// Logits per output frame.
    pub fn out_features(&self) -> usize {
        self.shared.out_features()
    }

    /// Output frames per input frame when split (the configured factor, whatever the switch).
    pub fn factor(&self) -> usize {
        self.factor
    }

    /// Switches the split on (the default: `factor` frames per input frame) or off (one frame per
    /// input frame, from the shared map). Takes effect at the next forward pass.
    pub fn set_split(&mut self, on: bool) {
        self.split = on;
    }

    /// Whether the next forward pass splits frames.
    pub fn is_split(&self) -> bool {
        self.split
    }
}

impl<F: NnFloat> Layer<F> for SubframeLinear<F> {
    fn forward(&mut self, input: &Batch<F>, mode: Mode) -> Result<Batch<F>, NnError> {
        let (b, t, _) = input.shape();
        let shared = self.shared.forward(input, mode)?;
        if !self.split {
            self.shape = Some((b, t, false));
            return Ok(shared);
        }
        // (B, T, factor * out) row-major is (B, factor * T, out): add the shared logits to each
        // sub-frame's offsets in place.
        let mut out = self.offsets.forward(input, mode)?.into_data();
        let v = self.shared.out_features();
        for (frame, base) in out.chunks_exact_mut(self.factor * v).zip(shared.data().chunks_exact(v)) {
            for sub in frame.chunks_exact_mut(v) {
                for (o, &s) in sub.iter_mut().zip(base) {
                    *o += s;
                }
            }
        }
        let lengths: Vec<usize> = input.lengths().iter().map(|&l| l * self.factor).collect();
        self.shape = Some((b, t, true));
        Ok(Batch::from_parts(out, b, self.factor * t, v, lengths))
    }

    fn backward(&mut self, grad_output: &[F]) -> Result<Vec<F>, NnError> {
        let (b, t, split) = self.shape.ok_or(NnError::NoForwardCache { layer: "SubframeLinear" })?;
        if !split {
            return self.shared.backward(grad_output);
        }
        let v = self.shared.out_features();
        check_grad_len("subframe linear grad_output length", b * t * self.factor * v, grad_output.len())?;
        let mut summed = vec![F::ZERO; b * t * v];
        for (frame, s) in grad_output.chunks_exact(self.factor * v).zip(summed.chunks_exact_mut(v)) {
            for sub in frame.chunks_exact(v) {
                for (acc, &g) in s.iter_mut().zip(sub) {
                    *acc += g;
                }
            }
        }
        let mut gin = self.shared.backward(&summed)?;
        for (a, d) in gin.iter_mut().zip(self.offsets.backward(grad_output)?) {
            *a += d;
        }
        Ok(gin)
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(&'a Param<F>)) {
        self.shared.visit_params(f);
        self.offsets.visit_params(f);
    }

    fn visit_params_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<F>)) {
        self.shared.visit_params_mut(f);
        self.offsets.visit_params_mut(f);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn sub_frames_are_the_shared_map_plus_their_offsets() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let mut layer = SubframeLinear::<f64>::new("out", 2, 3, 2, &mut rng).unwrap();
        let names: Vec<&str> = {
            let mut v = Vec::new();
            layer.visit_params(&mut |p| v.push(p.name()));
            v
        };
        assert_eq!(names, ["out.weight", "out.bias", "out.subframe.weight", "out.subframe.bias"]);
        // Offsets start at zero: both sub-frames equal the shared map.
        let mut seen = Vec::new();
        layer.visit_params(&mut |p| seen.push(p.value().to_vec()));
        assert!(seen[2].iter().chain(&seen[3]).all(|&v| v == 0.0));
        // Give sub-frame 1 an offset bias of 10 on logit 2.
        layer.visit_params_mut(&mut |p| {
            if p.name() == "out.subframe.bias" {
                p.value_mut()[3 + 2] = 10.0;
            }
        });
        // B = 2, T = 2, the second sequence has one valid frame and NaN padding.
        let x =
            Batch::new(vec![1.0, 2.0, -1.0, 0.5, 3.0, 4.0, f64::NAN, f64::NAN], 2, 2, 2, vec![2, 1]).unwrap();
        let y = layer.forward(&x, Mode::Train).unwrap();
        assert_eq!(y.shape(), (2, 4, 3));
        assert_eq!(y.lengths(), &[4, 2]);
        let (w, bias) = (&seen[0], &seen[1]);
        let shared = |x0: f64, x1: f64, k: usize| w[k * 2] * x0 + w[k * 2 + 1] * x1 + bias[k];
        for (frame, x0, x1) in [(0, 1.0, 2.0), (2, -1.0, 0.5), (4, 3.0, 4.0)] {
            for k in 0..3 {
                let want = shared(x0, x1, k);
                assert!((y.data()[frame * 3 + k] - want).abs() < 1e-12);
                let plus = if k == 2 { 10.0 } else { 0.0 };
                assert!((y.data()[(frame + 1) * 3 + k] - want - plus).abs() < 1e-12);
            }
        }
        assert!(y.data()[18..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn unsplit_it_is_the_shared_map_and_leaves_the_offsets_alone() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let mut layer = SubframeLinear::<f64>::new("out", 2, 3, 2, &mut rng).unwrap();
        let mut plain = Linear::<f64>::new("out", 2, 3, &mut Xoshiro256PlusPlus::seed_from_u64(5)).unwrap();
        layer.set_split(false);
        assert!(!layer.is_split());
        let x = Batch::new(vec![1.0, 2.0, -1.0, 0.5], 1, 2, 2, vec![2]).unwrap();
        let y = layer.forward(&x, Mode::Train).unwrap();
        assert_eq!(y, plain.forward(&x, Mode::Train).unwrap());
        let g = [0.5, -1.0, 2.0, 0.25, 1.0, -0.5];
        assert_eq!(layer.backward(&g).unwrap(), plain.backward(&g).unwrap());
        let mut grads = Vec::new();
        layer.visit_params(&mut |p| grads.push(p.grad().to_vec()));
        let mut want = Vec::new();
        plain.visit_params(&mut |p| want.push(p.grad().to_vec()));
        assert_eq!(&grads[..2], &want[..]);
        assert!(grads[2..].iter().flatten().all(|&v| v == 0.0));
        layer.set_split(true);
        assert_eq!(layer.forward(&x, Mode::Train).unwrap().shape(), (1, 4, 3));
    }

    #[test]
    fn wrong_sizes_and_gradients_are_errors() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
        assert!(SubframeLinear::<f32>::new("o", 2, 3, 0, &mut rng).is_err());
        assert!(SubframeLinear::<f32>::new("o", 0, 3, 2, &mut rng).is_err());
        assert!(SubframeLinear::<f32>::new("o", 2, usize::MAX, 2, &mut rng).is_err());
        let mut layer = SubframeLinear::<f32>::new("o", 2, 3, 2, &mut rng).unwrap();
        assert!(matches!(layer.backward(&[0.0; 12]), Err(NnError::NoForwardCache { .. })));
        let x = Batch::<f32>::zeros(1, 2, 5, vec![2]).unwrap();
        assert!(matches!(layer.forward(&x, Mode::Eval), Err(NnError::ShapeMismatch { .. })));
        let x = Batch::<f32>::zeros(1, 2, 2, vec![2]).unwrap();
        layer.forward(&x, Mode::Eval).unwrap();
        assert!(matches!(layer.backward(&[0.0; 11]), Err(NnError::ShapeMismatch { .. })));
    }
}
