//! The oracle: obviously-correct scalar `f64` CTC, written straight from the recurrences on the
//! extended label sequence, plus a brute-force sum over every alignment for tiny problems.
//!
//! Nothing here is fast or clever, on purpose: it is what the fast kernel, the fuzz target and the
//! decoders' tests are checked against. Log-probabilities are given as `T` rows of `V` values.

/// `ln(sum(exp(xs)))`, `-inf` for an empty slice or one of only `-inf`.
pub fn logsumexp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    if m == f64::INFINITY {
        return f64::INFINITY;
    }
    m + xs.iter().map(|&x| (x - m).exp()).sum::<f64>().ln()
}

/// Row-wise log-softmax of `T` rows of logits.
pub fn log_softmax(logits: &[Vec<f64>]) -> Vec<Vec<f64>> {
    logits
        .iter()
        .map(|row| {
            let z = logsumexp(row);
            row.iter().map(|&x| x - z).collect()
        })
        .collect()
}

/// The extended sequence `b, l_1, b, l_2, …, l_L, b` of `2L + 1` states.
pub fn extend(labels: &[usize], blank: usize) -> Vec<usize> {
    let mut ext = Vec::with_capacity(2 * labels.len() + 1);
    ext.push(blank);
    for &l in labels {
        ext.push(l);
        ext.push(blank);
    }
    ext
}

/// Everything the forward-backward pass computes for one sequence.
#[derive(Clone, Debug)]
pub struct Lattice {
    /// `ln p(labels | log_probs)`, `-inf` if no alignment has positive probability.
    pub log_likelihood: f64,
    /// `alpha[t][s]`: log-mass of path prefixes ending in state `s` at frame `t`, emission at `t`
    /// included. `T` rows of `2L + 1`.
    pub alpha: Vec<Vec<f64>>,
    /// `beta[t][s]`: log-mass of path suffixes from state `s` at frame `t` to the end, emission at `t`
    /// excluded, so that `alpha[t][s] + beta[t][s]` is the log-mass of all paths through `(t, s)`.
    pub beta: Vec<Vec<f64>>,
    /// `gamma[t][k]`: posterior probability that frame `t` emits class `k`. `T` rows of `V`; all zero if
    /// the likelihood is zero.
    pub posterior: Vec<Vec<f64>>,
}

/// Forward-backward on one sequence of log-probabilities (`T` rows of `V`).
///
/// # Panics
/// If a label or the blank is not below `V` (the reference trusts its caller; the kernel does not).
pub fn forward_backward(log_probs: &[Vec<f64>], labels: &[usize], blank: usize) -> Lattice {
    let t_len = log_probs.len();
    let v = log_probs.first().map_or(blank + 1, Vec::len);
    let ext = extend(labels, blank);
    let s_len = ext.len();
    let ninf = f64::NEG_INFINITY;
    // A state may be entered from two states back only if it holds a label that differs from the label
    // two states back (otherwise the blank between them is mandatory).
    let can_skip = |s: usize| s >= 2 && ext[s] != blank && ext[s] != ext[s - 2];

    let mut alpha = vec![vec![ninf; s_len]; t_len];
    if t_len > 0 {
        alpha[0][0] = log_probs[0][ext[0]];
        if s_len > 1 {
            alpha[0][1] = log_probs[0][ext[1]];
        }
        for t in 1..t_len {
            for s in 0..s_len {
                let mut terms = vec![alpha[t - 1][s]];
                if s >= 1 {
                    terms.push(alpha[t - 1][s - 1]);
                }
                if can_skip(s) {
                    terms.push(alpha[t - 1][s - 2]);
                }
                alpha[t][s] = log_probs[t][ext[s]] + logsumexp(&terms);
            }
        }
    }

    let mut beta = vec![vec![ninf; s_len]; t_len];
    if t_len > 0 {
        beta[t_len - 1][s_len - 1] = 0.0;
        if s_len > 1 {
            beta[t_len - 1][s_len - 2] = 0.0;
        }
        for t in (0..t_len - 1).rev() {
            for s in 0..s_len {
                let mut terms = vec![beta[t + 1][s] + log_probs[t + 1][ext[s]]];
                if s + 1 < s_len {
                    terms.push(beta[t + 1][s + 1] + log_probs[t + 1][ext[s + 1]]);
                }
                if s + 2 < s_len && can_skip(s + 2) {
                    terms.push(beta[t + 1][s + 2] + log_probs[t + 1][ext[s + 2]]);
                }
                beta[t][s] = logsumexp(&terms);
            }
        }
    }

    let log_likelihood = if t_len == 0 {
        if labels.is_empty() {
            0.0
        } else {
            ninf
        }
    } else {
        let last = &alpha[t_len - 1];
        let mut ends = vec![last[s_len - 1]];
        if s_len > 1 {
            ends.push(last[s_len - 2]);
        }
        logsumexp(&ends)
    };

    let mut posterior = vec![vec![0.0; v]; t_len];
    if log_likelihood > ninf {
        for t in 0..t_len {
            for s in 0..s_len {
                let lg = alpha[t][s] + beta[t][s] - log_likelihood;
                if lg > ninf {
                    posterior[t][ext[s]] += lg.exp();
                }
            }
        }
    }
    Lattice { log_likelihood, alpha, beta, posterior }
}

/// Negative log-likelihood and its gradient with respect to the logits (`softmax - gamma`), one
/// sequence. The gradient is all zero when the loss is infinite.
pub fn loss_and_logits_grad(logits: &[Vec<f64>], labels: &[usize], blank: usize) -> (f64, Vec<Vec<f64>>) {
    let lp = log_softmax(logits);
    let lat = forward_backward(&lp, labels, blank);
    let feasible = lat.log_likelihood > f64::NEG_INFINITY;
    let grad = lp
        .iter()
        .zip(&lat.posterior)
        .map(|(row, gamma)| {
            row.iter().zip(gamma).map(|(&x, &g)| if feasible { x.exp() - g } else { 0.0 }).collect()
        })
        .collect();
    (-lat.log_likelihood, grad)
}

/// Merges repeats, then drops blanks: the CTC collapsing map from a frame-level path to a labelling.
pub fn collapse(path: &[usize], blank: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut prev = None;
    for &k in path {
        if Some(k) != prev && k != blank {
            out.push(k);
        }
        prev = Some(k);
    }
    out
}

/// `ln p(labels)` by summing over every one of the `V^T` frame-level paths that collapse to `labels`.
///
/// Exponential: for `V^T` up to a few hundred thousand. Returns `None` if `V^T > 2^22`.
pub fn brute_force_log_likelihood(log_probs: &[Vec<f64>], labels: &[usize], blank: usize) -> Option<f64> {
    let t_len = log_probs.len();
    let v = log_probs.first().map_or(1, Vec::len);
    let count = (v as u64).checked_pow(t_len as u32).filter(|&c| c <= 1 << 22)?;
    let mut path = vec![0usize; t_len];
    let mut terms = Vec::new();
    for mut code in 0..count {
        for p in path.iter_mut() {
            *p = (code % v as u64) as usize;
            code /= v as u64;
        }
        if collapse(&path, blank) == labels {
            terms.push(path.iter().enumerate().map(|(t, &k)| log_probs[t][k]).sum::<f64>());
        }
    }
    Some(logsumexp(&terms))
}

/// Number of frame-level paths of length `t_len` that collapse to `labels`, as `f64` (exact below
/// 2^53). With uniform log-probs `-ln V` the loss is `-ln(count) + T ln V`, a closed form.
pub fn count_alignments(t_len: usize, labels: &[usize], blank: usize) -> f64 {
    let ext = extend(labels, blank);
    let s_len = ext.len();
    if t_len == 0 {
        return if labels.is_empty() { 1.0 } else { 0.0 };
    }
    let mut n = vec![0.0f64; s_len];
    n[0] = 1.0;
    if s_len > 1 {
        n[1] = 1.0;
    }
    for _ in 1..t_len {
        let prev = n.clone();
        for s in 0..s_len {
            let mut x = prev[s];
            if s >= 1 {
                x += prev[s - 1];
            }
            if s >= 2 && ext[s] != blank && ext[s] != ext[s - 2] {
                x += prev[s - 2];
            }
            n[s] = x;
        }
    }
    n[s_len - 1] + if s_len > 1 { n[s_len - 2] } else { 0.0 }
}
