//! Shared test helpers: a seeded generator, random CTC problems, and adapters to the f64 reference.
#![allow(dead_code)]

use fastctc::loss::reference;
use fastctc::{ActsView, ActsViewMut, CtcOptions, InputKind, Targets};

/// SplitMix64: small, seedable, and the same on every platform, so a failing seed reproduces.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    /// `len` labels uniform over the `v - 1` classes other than `blank` (same draws as before the
    /// helper existed, so seeded tests see the same problems).
    pub fn labels(&mut self, len: usize, v: usize, blank: usize) -> Vec<usize> {
        (0..len)
            .map(|_| {
                let x = self.below(v - 1);
                if x >= blank {
                    x + 1
                } else {
                    x
                }
            })
            .collect()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.uniform(0.0, 1.0)
    }
    /// `t` rows of `v` log-probabilities from logits uniform in `[-scale, scale)`; `scale` sets how
    /// peaked they are.
    pub fn log_probs(&mut self, t: usize, v: usize, scale: f64) -> Vec<Vec<f64>> {
        let logits: Vec<Vec<f64>> =
            (0..t).map(|_| (0..v).map(|_| scale * (self.unit() * 2.0 - 1.0)).collect()).collect();
        reference::log_softmax(&logits)
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform(f64::MIN_POSITIVE, 1.0);
        let u2 = self.uniform(0.0, 1.0);
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A batch: time-major `(T, B, V)` activations in f64, lengths and targets.
#[derive(Clone, Debug)]
pub struct Problem {
    pub max_time: usize,
    pub classes: usize,
    pub blank: usize,
    pub input_lengths: Vec<usize>,
    pub targets: Vec<Vec<usize>>,
    /// Time-major `(T, B, V)`.
    pub acts: Vec<f64>,
}

impl Problem {
    pub fn batch(&self) -> usize {
        self.input_lengths.len()
    }

    /// Random problem. `scale` is the logits' standard deviation (large = peaked). Targets may be
    /// infeasible when `allow_infeasible`; labels repeat often when `v` is small.
    pub fn random(
        rng: &mut Rng,
        batch: usize,
        max_time: usize,
        max_label: usize,
        v: usize,
        scale: f64,
    ) -> Self {
        let blank = rng.below(v);
        let mut input_lengths = Vec::new();
        let mut targets = Vec::new();
        for _ in 0..batch {
            let t = rng.below(max_time + 1);
            let l = rng.below(max_label + 1);
            let labels = rng.labels(l, v, blank);
            input_lengths.push(t);
            targets.push(labels);
        }
        let acts = (0..max_time * batch * v).map(|_| rng.normal() * scale).collect();
        Problem { max_time, classes: v, blank, input_lengths, targets, acts }
    }

    /// Random problem whose sequences share a few `(T, L)` shapes, 1 to 12 sequences each, in shuffled
    /// batch order: the kernel runs runs of equal lengths interleaved in vector lanes (groups of 8
    /// `f32` or 4 `f64`), so this exercises full groups, leftovers run alone, groups whose members are
    /// far apart in the batch, and (with `T` near `L`) infeasible members next to feasible ones.
    pub fn grouped(
        rng: &mut Rng,
        shapes: usize,
        max_time: usize,
        max_label: usize,
        v: usize,
        scale: f64,
    ) -> Self {
        let blank = rng.below(v);
        let mut seqs: Vec<(usize, Vec<usize>)> = Vec::new();
        for _ in 0..shapes {
            let t = 1 + rng.below(max_time);
            let l = 1 + rng.below(max_label);
            for _ in 0..1 + rng.below(12) {
                seqs.push((t, rng.labels(l, v, blank)));
            }
        }
        for i in (1..seqs.len()).rev() {
            seqs.swap(i, rng.below(i + 1));
        }
        let batch = seqs.len();
        let acts = (0..max_time * batch * v).map(|_| rng.normal() * scale).collect();
        let (input_lengths, targets) = seqs.into_iter().unzip();
        Problem { max_time, classes: v, blank, input_lengths, targets, acts }
    }

    /// The frames of sequence `b` as reference rows (only its first `T_b` frames).
    pub fn rows(&self, b: usize) -> Vec<Vec<f64>> {
        let (bsz, v) = (self.batch(), self.classes);
        (0..self.input_lengths[b])
            .map(|t| self.acts[(t * bsz + b) * v..(t * bsz + b + 1) * v].to_vec())
            .collect()
    }

    /// Reference log-probs of sequence `b` given how the activations are to be read.
    pub fn ref_log_probs(&self, b: usize, kind: InputKind) -> Vec<Vec<f64>> {
        match kind {
            InputKind::Logits => reference::log_softmax(&self.rows(b)),
            InputKind::LogProbs => self.rows(b),
        }
    }

    /// Replaces the activations by their log-softmax, so that they are valid log-probs.
    pub fn normalise(&mut self) {
        let v = self.classes;
        for row in self.acts.chunks_mut(v) {
            let z = reference::logsumexp(row);
            row.iter_mut().for_each(|x| *x -= z);
        }
    }

    pub fn concat_labels(&self) -> (Vec<u32>, Vec<u32>) {
        let labels = self.targets.iter().flatten().map(|&x| x as u32).collect();
        let lengths = self.targets.iter().map(|t| t.len() as u32).collect();
        (labels, lengths)
    }

    pub fn lengths_u32(&self) -> Vec<u32> {
        self.input_lengths.iter().map(|&x| x as u32).collect()
    }

    /// Runs the kernel in `F` (time-major, concatenated targets) and returns losses, reduced value and
    /// the time-major output, all widened to f64.
    pub fn run<F: fastctc::Float>(
        &self,
        opts: &CtcOptions,
    ) -> Result<(Vec<f64>, f64, Vec<f64>), fastctc::CtcError> {
        let acts: Vec<F> = self.acts.iter().map(|&x| F::from_f64(x)).collect();
        let (labels, lengths) = self.concat_labels();
        let il = self.lengths_u32();
        let view = ActsView::time_major(&acts, self.max_time, self.batch(), self.classes)?;
        let mut grad = vec![F::from_f64(f64::NAN); acts.len()];
        let mut gview = ActsViewMut::time_major(&mut grad, self.max_time, self.batch(), self.classes)?;
        let out = fastctc::ctc_loss_and_grad(
            &view,
            &Targets::Concatenated { labels: &labels, lengths: &lengths },
            &il,
            &mut gview,
            opts,
        )?;
        Ok((
            out.losses.iter().map(|x| x.to_f64()).collect(),
            out.reduced.to_f64(),
            grad.iter().map(|x| x.to_f64()).collect(),
        ))
    }
}

/// `|a - b| <= tol * max(1, |a|, |b|)`, with equal infinities accepted.
pub fn close(a: f64, b: f64, tol: f64) -> bool {
    if a == b {
        return true;
    }
    (a - b).abs() <= tol * 1f64.max(a.abs()).max(b.abs())
}

/// Number of label repeats `l_i == l_{i+1}`: each forces a blank frame between them.
pub fn repeats(labels: &[usize]) -> usize {
    labels.windows(2).filter(|w| w[0] == w[1]).count()
}
