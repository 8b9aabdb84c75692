//! Edit distance, character error rate (CER) and word error rate (WER).
//!
//! Rates are pooled over a corpus the way jiwer and NIST sclite pool them: total edits (substitutions +
//! deletions + insertions) over the total number of reference tokens, not the mean of per-utterance
//! rates. Per-utterance counts are returned too.
//!
//! Empty references (jiwer raises on them; we define them): an utterance whose reference is empty
//! contributes its insertions to the edits and nothing to the reference length. A rate whose reference
//! length is zero is `0.0` when there are no edits and `f64::INFINITY` otherwise — every hypothesis token
//! is an error, and there is nothing to divide by.
//!
//! Tokenisation: WER splits on Unicode whitespace; CER compares Unicode scalar values (`char`s) after
//! trimming the ends and collapsing each whitespace run to one space (so a space between words is one
//! character). No other normalisation (case, punctuation) is applied: do it before calling.

use core::fmt;

/// One step of an alignment of a reference to a hypothesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditOp {
    /// Reference token `ref_index` equals hypothesis token `hyp_index`.
    Match {
        /// Index in the reference.
        ref_index: usize,
        /// Index in the hypothesis.
        hyp_index: usize,
    },
    /// Reference token `ref_index` was recognised as hypothesis token `hyp_index`.
    Substitute {
        /// Index in the reference.
        ref_index: usize,
        /// Index in the hypothesis.
        hyp_index: usize,
    },
    /// Reference token `ref_index` is missing from the hypothesis.
    Delete {
        /// Index in the reference.
        ref_index: usize,
    },
    /// Hypothesis token `hyp_index` has no reference counterpart.
    Insert {
        /// Index in the hypothesis.
        hyp_index: usize,
    },
}

/// Counts of one alignment, or their sum over a corpus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EditCounts {
    /// Tokens that match.
    pub hits: usize,
    /// Substituted tokens.
    pub substitutions: usize,
    /// Deleted reference tokens.
    pub deletions: usize,
    /// Inserted hypothesis tokens.
    pub insertions: usize,
    /// Reference length (`hits + substitutions + deletions`).
    pub reference_len: usize,
    /// Hypothesis length (`hits + substitutions + insertions`).
    pub hypothesis_len: usize,
}

impl EditCounts {
    /// `substitutions + deletions + insertions`: the edit distance.
    pub fn errors(&self) -> usize {
        self.substitutions + self.deletions + self.insertions
    }

    /// `errors / reference_len`; see the module docs for an empty reference.
    pub fn rate(&self) -> f64 {
        if self.reference_len == 0 {
            if self.errors() == 0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            self.errors() as f64 / self.reference_len as f64
        }
    }

    fn add(&mut self, o: &EditCounts) {
        self.hits += o.hits;
        self.substitutions += o.substitutions;
        self.deletions += o.deletions;
        self.insertions += o.insertions;
        self.reference_len += o.reference_len;
        self.hypothesis_len += o.hypothesis_len;
    }
}

/// A minimum-cost alignment (unit costs) of `reference` to `hypothesis`, its counts and its operations
/// in order. Among alignments of equal cost, the backtrace (from the end) prefers a match or
/// substitution, then a deletion, then an insertion. Time and memory `O(len(ref) * len(hyp))`.
pub fn levenshtein<T: PartialEq>(reference: &[T], hypothesis: &[T]) -> (EditCounts, Vec<EditOp>) {
    let (n, m) = (reference.len(), hypothesis.len());
    let w = m + 1;
    // d[i * w + j]: distance between reference[..i] and hypothesis[..j].
    let mut d = vec![0usize; (n + 1) * w];
    for j in 0..=m {
        d[j] = j;
    }
    for i in 1..=n {
        d[i * w] = i;
        for j in 1..=m {
            let diag = d[(i - 1) * w + j - 1] + usize::from(reference[i - 1] != hypothesis[j - 1]);
            d[i * w + j] = diag.min(d[(i - 1) * w + j] + 1).min(d[i * w + j - 1] + 1);
        }
    }
    let mut ops = Vec::with_capacity(n.max(m));
    let mut counts = EditCounts { reference_len: n, hypothesis_len: m, ..EditCounts::default() };
    let (mut i, mut j) = (n, m);
    while i > 0 || j > 0 {
        let here = d[i * w + j];
        if i > 0 && j > 0 {
            let same = reference[i - 1] == hypothesis[j - 1];
            if here == d[(i - 1) * w + j - 1] + usize::from(!same) {
                i -= 1;
                j -= 1;
                if same {
                    counts.hits += 1;
                    ops.push(EditOp::Match { ref_index: i, hyp_index: j });
                } else {
                    counts.substitutions += 1;
                    ops.push(EditOp::Substitute { ref_index: i, hyp_index: j });
                }
                continue;
            }
        }
        if i > 0 && here == d[(i - 1) * w + j] + 1 {
            i -= 1;
            counts.deletions += 1;
            ops.push(EditOp::Delete { ref_index: i });
        } else {
            j -= 1;
            counts.insertions += 1;
            ops.push(EditOp::Insert { hyp_index: j });
        }
    }
    ops.reverse();
    (counts, ops)
}

/// Corpus-level error rate with per-utterance detail.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorRate {
    /// Counts summed over the corpus.
    pub total: EditCounts,
    /// `total.rate()`: pooled edits over pooled reference length.
    pub rate: f64,
    /// Counts per utterance, in input order.
    pub per_utterance: Vec<EditCounts>,
}

/// Reference and hypothesis lists of different lengths.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricsError {
    /// `references.len() != hypotheses.len()`.
    LengthMismatch {
        /// Number of references.
        references: usize,
        /// Number of hypotheses.
        hypotheses: usize,
    },
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsError::LengthMismatch { references, hypotheses } => {
                write!(f, "{references} references but {hypotheses} hypotheses")
            }
        }
    }
}

impl std::error::Error for MetricsError {}

fn pooled<S: AsRef<str>>(
    references: &[S],
    hypotheses: &[S],
    count: impl Fn(&str, &str) -> EditCounts,
) -> Result<ErrorRate, MetricsError> {
    if references.len() != hypotheses.len() {
        return Err(MetricsError::LengthMismatch { references: references.len(), hypotheses: hypotheses.len() });
    }
    let mut total = EditCounts::default();
    let per_utterance: Vec<EditCounts> = references
        .iter()
        .zip(hypotheses)
        .map(|(r, h)| {
            let c = count(r.as_ref(), h.as_ref());
            total.add(&c);
            c
        })
        .collect();
    Ok(ErrorRate { total, rate: total.rate(), per_utterance })
}

/// The words of `text`: split on whitespace.
pub fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

/// The characters of `text` as CER counts them: ends trimmed, whitespace runs collapsed to one space.
pub fn chars(text: &str) -> Vec<char> {
    let mut out = Vec::with_capacity(text.len());
    for (i, w) in text.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.extend(w.chars());
    }
    out
}

/// Word error rate pooled over a corpus of `(reference, hypothesis)` pairs.
pub fn wer<S: AsRef<str>>(references: &[S], hypotheses: &[S]) -> Result<ErrorRate, MetricsError> {
    pooled(references, hypotheses, |r, h| levenshtein(&words(r), &words(h)).0)
}

/// Character error rate pooled over a corpus of `(reference, hypothesis)` pairs.
pub fn cer<S: AsRef<str>>(references: &[S], hypotheses: &[S]) -> Result<ErrorRate, MetricsError> {
    pooled(references, hypotheses, |r, h| levenshtein(&chars(r), &chars(h)).0)
}
