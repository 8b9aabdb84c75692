//! Best-path decoding: the most probable class at every frame, repeats merged, blanks dropped.

use rayon::prelude::*;

use super::{validate_batch, words_from_spans, DecodeError, Hypothesis, SeqView, TokenSpan, Vocabulary};
use crate::buffer::{ActsView, Index};
use crate::float::Float;

/// Greedy (best path) decoding of every sequence of a batch.
///
/// `log_probs` is a `(T, B, V)` view of natural-log probabilities with `V == vocab.len()`;
/// `input_lengths[b] <= T` frames of sequence `b` are read. At each frame the class with the largest
/// log-probability wins (ties go to the lowest class index); runs of the same class emit one token,
/// blanks emit none. Each token's span is its run of frames: `start` is the run's first frame, `end` one
/// past its last. `acoustic` (and `total`) is the sum of the per-frame maxima, the log-probability of
/// the best path. Returns `B` hypotheses in batch order; sequences run in parallel.
pub fn greedy_decode<F: Float, L: Index>(
    log_probs: &ActsView<'_, F>,
    input_lengths: &[L],
    vocab: &Vocabulary,
) -> Result<Vec<Hypothesis>, DecodeError> {
    let seqs = validate_batch(log_probs, input_lengths, vocab.len())?;
    Ok(seqs.par_iter().map(|s| greedy_one(s, vocab)).collect())
}

fn argmax<F: Float>(seq: &SeqView<'_, F>, t: usize) -> (usize, f64) {
    let mut best = (0, f64::NEG_INFINITY);
    match seq.row(t) {
        Some(row) => {
            for (v, &x) in row.iter().enumerate() {
                let x = x.to_f64();
                // Strict `>` keeps the lowest index on ties; `v == 0` admits an all -inf row.
                if x > best.1 || v == 0 {
                    best = (v, x);
                }
            }
        }
        None => {
            for v in 0..seq.classes {
                let x = seq.at(t, v);
                if x > best.1 || v == 0 {
                    best = (v, x);
                }
            }
        }
    }
    best
}

pub(crate) fn greedy_one<F: Float>(seq: &SeqView<'_, F>, vocab: &Vocabulary) -> Hypothesis {
    let blank = vocab.blank();
    let mut score = 0.0;
    let mut spans: Vec<TokenSpan> = Vec::new();
    let mut prev: Option<usize> = None;
    for t in 0..seq.len {
        let (k, x) = argmax(seq, t);
        score += x;
        if Some(k) == prev {
            if k != blank {
                if let Some(last) = spans.last_mut() {
                    last.end = t + 1;
                }
            }
        } else if k != blank {
            spans.push(TokenSpan { token: k, start: t, end: t + 1 });
        }
        prev = Some(k);
    }
    let tokens: Vec<usize> = spans.iter().map(|s| s.token).collect();
    Hypothesis {
        text: vocab.decode_text(&tokens),
        word_spans: words_from_spans(vocab, &spans),
        tokens,
        token_spans: spans,
        acoustic: score,
        lm: 0.0,
        bonus: 0.0,
        total: score,
    }
}
