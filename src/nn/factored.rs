//! Word-start classes as a letter plus a word boundary: the output map of a factored word-start model.

use super::{check_channels, check_grad_len, Batch, Layer, Mode, NnError, NnFloat, Param};

/// Expands `K + 2` logits per frame (blank, `K` symbols, a word-boundary logit) to the `2 K + 1`
/// classes of a word-start vocabulary (blank, the `K` symbols inside a word, the same `K` symbols
/// beginning a word, in that order): `(B, T, K + 2)` in, `(B, T, 2 K + 1)` out, same lengths.
///
/// Class logits: blank `z[0]`; symbol `k` inside a word `z[1 + k]`; symbol `k` beginning a word
/// `z[1 + k] + z[K + 1]`. No parameters; padded frames are zero.
///
/// Why: a word-start vocabulary learned as `2 K + 1` independent classes splits every letter's
/// training examples between its two classes, and the letter inside a word learns nothing from the
/// same letter beginning one. Under this map both classes of a letter share its logit (so after the
/// softmax the letter's total probability is learned from every occurrence), and whether it begins a
/// word is one logit per frame that every letter shares: the boundary costs no output frame of its
/// own, as with any word-start vocabulary, and no letter sees fewer examples than in a vocabulary
/// with a space class. The output layer before it has as many logits as the character model's
/// (blank, space, apostrophe, a-z: 29), the boundary logit in the space's place.
#[derive(Clone, Debug)]
pub struct WordStartExpand {
    symbols: usize,
    /// `(B, T, lengths)` of the last forward pass.
    shape: Option<(usize, usize, Vec<usize>)>,
}

impl WordStartExpand {
    /// The map for `classes = 2 K + 1` output classes (odd, at least 3).
    ///
    /// # Errors
    /// [`NnError::InvalidConfig`] if `classes` is even or below 3.
    pub fn new(classes: usize) -> Result<Self, NnError> {
        if classes < 3 || classes % 2 == 0 {
            return Err(NnError::InvalidConfig {
                field: "vocab",
                value: classes as f64,
                requirement: "odd and at least 3 for a factored word-start output (blank + 2 K classes)",
            });
        }
        Ok(Self { symbols: (classes - 1) / 2, shape: None })
    }

    /// Logits per frame it reads: `K + 2`.
    pub fn in_features(&self) -> usize {
        self.symbols + 2
    }

    /// Classes per frame it writes: `2 K + 1`.
    pub fn out_features(&self) -> usize {
        2 * self.symbols + 1
    }
}

impl<F: NnFloat> Layer<F> for WordStartExpand {
    fn forward(&mut self, input: &Batch<F>, _mode: Mode) -> Result<Batch<F>, NnError> {
        check_channels("word-start expansion input channels", self.in_features(), input.channels())?;
        let (b, t, _) = input.shape();
        let (k, v) = (self.symbols, self.out_features());
        let mut out = vec![F::ZERO; b * t * v];
        for (r, (o, z)) in out.chunks_exact_mut(v).zip(input.data().chunks_exact(k + 2)).enumerate() {
            if r % t >= input.lengths()[r / t] {
                continue;
            }
            let boundary = z[k + 1];
            o[0] = z[0];
            let (inside, start) = o[1..].split_at_mut(k);
            for ((i, s), &a) in inside.iter_mut().zip(start).zip(&z[1..=k]) {
                *i = a;
                *s = a + boundary;
            }
        }
        self.shape = Some((b, t, input.lengths().to_vec()));
        Ok(Batch::from_parts(out, b, t, v, input.lengths().to_vec()))
    }

    fn backward(&mut self, grad_output: &[F]) -> Result<Vec<F>, NnError> {
        let (b, t, lengths) =
            self.shape.as_ref().ok_or(NnError::NoForwardCache { layer: "WordStartExpand" })?;
        let (k, v) = (self.symbols, self.out_features());
        check_grad_len("word-start expansion grad_output length", b * t * v, grad_output.len())?;
        let mut gin = vec![F::ZERO; b * t * (k + 2)];
        for (r, (gi, g)) in gin.chunks_exact_mut(k + 2).zip(grad_output.chunks_exact(v)).enumerate() {
            if r % t >= lengths[r / t] {
                continue;
            }
            gi[0] = g[0];
            let (inside, start) = g[1..].split_at(k);
            let mut boundary = F::ZERO;
            for ((d, &i), &s) in gi[1..=k].iter_mut().zip(inside).zip(start) {
                *d = i + s;
                boundary += s;
            }
            gi[k + 1] = boundary;
        }
        Ok(gin)
    }

    fn visit_params<'a>(&'a self, _f: &mut dyn FnMut(&'a Param<F>)) {}

    fn visit_params_mut<'a>(&'a mut self, _f: &mut dyn FnMut(&'a mut Param<F>)) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_start_classes_add_the_boundary_logit() {
        let mut map = WordStartExpand::new(5).unwrap();
        assert_eq!((map.in_features(), map.out_features()), (4, 5));
        // B = 2, T = 2: the second sequence has one valid frame and NaN padding.
        let rows = [
            [0.5, 1.0, 2.0, -3.0],
            [0.0, 4.0, 5.0, 0.25],
            [-1.0, 2.0, 3.0, 10.0],
            [f64::NAN, f64::NAN, 1.0, 1.0],
        ];
        let x = Batch::new(rows.concat(), 2, 2, 4, vec![2, 1]).unwrap();
        let y = map.forward(&x, Mode::Train).unwrap();
        assert_eq!((y.shape(), y.lengths()), ((2, 2, 5), &[2, 1][..]));
        let want = [
            0.5, 1.0, 2.0, -2.0, -1.0, //
            0.0, 4.0, 5.0, 4.25, 5.25, //
            -1.0, 2.0, 3.0, 12.0, 13.0, //
            0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        assert_eq!(y.data(), &want);
        let g: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let gin = map.backward(&g).unwrap();
        // Per frame: blank, symbol k = inside + start, boundary = sum of starts; padding zero.
        assert_eq!(
            gin,
            [0.0, 4.0, 6.0, 7.0, 5.0, 14.0, 16.0, 17.0, 10.0, 24.0, 26.0, 27.0, 0.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn wrong_sizes_are_errors() {
        assert!(WordStartExpand::new(4).is_err());
        assert!(WordStartExpand::new(1).is_err());
        let mut map = WordStartExpand::new(55).unwrap();
        assert!(matches!(Layer::<f32>::backward(&mut map, &[0.0; 55]), Err(NnError::NoForwardCache { .. })));
        let x = Batch::<f32>::zeros(1, 2, 55, vec![2]).unwrap();
        assert!(matches!(map.forward(&x, Mode::Eval), Err(NnError::ShapeMismatch { .. })));
        let x = Batch::<f32>::zeros(1, 2, 29, vec![2]).unwrap();
        assert_eq!(map.forward(&x, Mode::Eval).unwrap().shape(), (1, 2, 55));
        assert!(matches!(map.backward(&[0.0; 109]), Err(NnError::ShapeMismatch { .. })));
    }
}
