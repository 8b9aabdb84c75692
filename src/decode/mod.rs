//! Turning CTC log-probabilities into text and time: greedy (best path) decoding, prefix beam search
//! with an optional word-level n-gram language model and hotword boosting, and the vocabulary that maps
//! class indices to strings.
//!
//! Inputs are the kernel's own views: log-probabilities as an [`ActsView`] indexed `(t, b, v)` (frame,
//! sequence, class; element at `data[t * stride_t + b * stride_b + v * stride_v]`), natural-log
//! probabilities (e.g. the output of a log-softmax), plus per-sequence input lengths. Frames
//! `t >= input_lengths[b]` are never read. Sequences of a batch are decoded in parallel with rayon.
//!
//! Log-probabilities may be `-inf` (probability exactly zero); NaN and `+inf` are rejected with
//! [`DecodeError::NonFinite`] before any decoding starts.
//!
//! Times are frame indices: a token emitted over frames `start..end` (half-open: `start` is its first
//! frame, `end - 1` its last) lasts from `start * frame_shift` to `end * frame_shift` seconds, where
//! `frame_shift` is the model's output frame period in seconds (e.g. 0.04 for 10 ms features subsampled
//! 4x).

use core::fmt;

use crate::buffer::{ActsView, Index};
use crate::error::CtcError;
use crate::float::Float;

mod beam;
mod estimate;
mod greedy;
mod lm;
mod vocab;

pub use beam::{beam_search, BeamOptions, Hotword, LmOptions, OovPolicy};
pub use estimate::{estimate_ngram, estimate_ngram_file, EstimateOptions};
pub use greedy::greedy_decode;
pub use lm::{Lexicon, NgramModel, WordId, MAX_ORDER};
pub use vocab::{Vocabulary, WORD_START};

/// Everything that can go wrong while decoding, reading or estimating a language model.
#[derive(Debug)]
#[non_exhaustive]
pub enum DecodeError {
    /// The activations view itself is invalid (reported by the kernel's view checks).
    Input(CtcError),
    /// The view's class dimension `V` differs from the vocabulary size.
    VocabSizeMismatch {
        /// `V` of the log-probabilities view.
        classes: usize,
        /// Entries of the [`Vocabulary`].
        vocabulary: usize,
    },
    /// The number of input lengths differs from the batch size `B` of the view.
    LengthsMismatch {
        /// `B` of the view.
        batch: usize,
        /// `input_lengths.len()`.
        got: usize,
    },
    /// An input length is negative, does not fit `usize`, or exceeds the view's `T`.
    InvalidLength {
        /// The sequence in the batch.
        sequence: usize,
        /// The length, widened.
        value: i128,
        /// The view's `T`.
        max_time: usize,
    },
    /// A log-probability inside a sequence's input length is NaN or `+inf`.
    NonFinite {
        /// The sequence in the batch.
        sequence: usize,
        /// The frame.
        frame: usize,
        /// The class.
        class: usize,
        /// The value, as `f64`.
        value: f64,
    },
    /// A search option is out of its range (beam width 0, N-best 0, a NaN weight, …).
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// Why it is rejected.
        reason: String,
    },
    /// A vocabulary is malformed (duplicate token, blank or separator out of range, empty token).
    InvalidVocabulary {
        /// What is wrong, naming the token index.
        reason: String,
    },
    /// Text contains a character sequence that no vocabulary token matches.
    UnknownToken {
        /// The text being encoded.
        text: String,
        /// Byte offset of the first character that could not be matched.
        byte_offset: usize,
    },
    /// A malformed ARPA file.
    Arpa {
        /// The file (or `"<string>"` when parsed from memory).
        source: String,
        /// 1-based line number of the fault.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A word that the language model or lexicon was asked about is not in its vocabulary, or a
    /// hotword/lexicon word contains characters the acoustic vocabulary cannot spell.
    UnknownWord {
        /// The word.
        word: String,
        /// Where it was used (`"hotword"`, `"lexicon"`, `"score"`).
        context: &'static str,
    },
    /// The estimator got unusable input (empty corpus, order outside 1..=3).
    Estimate {
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Input(e) => write!(f, "invalid log-probabilities view: {e}"),
            DecodeError::VocabSizeMismatch { classes, vocabulary } => write!(
                f,
                "log-probabilities have {classes} classes but the vocabulary has {vocabulary} entries"
            ),
            DecodeError::LengthsMismatch { batch, got } => {
                write!(f, "{got} input lengths given for a batch of {batch} sequences")
            }
            DecodeError::InvalidLength { sequence, value, max_time } => write!(
                f,
                "input length {value} of sequence {sequence} is negative or exceeds the {max_time} frames of \
                 the view"
            ),
            DecodeError::NonFinite { sequence, frame, class, value } => write!(
                f,
                "log-probability {value} at sequence {sequence}, frame {frame}, class {class} is NaN or +inf"
            ),
            DecodeError::InvalidOption { option, reason } => write!(f, "invalid option `{option}`: {reason}"),
            DecodeError::InvalidVocabulary { reason } => write!(f, "invalid vocabulary: {reason}"),
            DecodeError::UnknownToken { text, byte_offset } => {
                write!(f, "no vocabulary token matches {text:?} at byte offset {byte_offset}")
            }
            DecodeError::Arpa { source, line, reason } => {
                write!(f, "malformed ARPA file {source}, line {line}: {reason}")
            }
            DecodeError::UnknownWord { word, context } => write!(f, "unknown word {word:?} ({context})"),
            DecodeError::Estimate { reason } => write!(f, "cannot estimate a language model: {reason}"),
            DecodeError::Io { path, source } => write!(f, "{path}: {source}"),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeError::Input(e) => Some(e),
            DecodeError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<CtcError> for DecodeError {
    fn from(e: CtcError) -> Self {
        DecodeError::Input(e)
    }
}

/// One emitted token and the frames it occupies.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenSpan {
    /// The class index in the [`Vocabulary`].
    pub token: usize,
    /// First frame of the token (inclusive).
    pub start: usize,
    /// One past its last frame (exclusive); `end > start`.
    pub end: usize,
}

impl TokenSpan {
    /// `(start, end)` in seconds given the frame period `frame_shift` in seconds.
    pub fn seconds(&self, frame_shift: f64) -> (f64, f64) {
        (self.start as f64 * frame_shift, self.end as f64 * frame_shift)
    }
}

/// One word (a maximal run of non-separator tokens, or a word-start token and the ordinary tokens
/// after it) and its frames.
#[derive(Clone, Debug, PartialEq)]
pub struct WordSpan {
    /// The word's text (its tokens' strings joined, without a word-start marker).
    pub word: String,
    /// First frame of its first token (inclusive).
    pub start: usize,
    /// One past the last frame of its last token (exclusive).
    pub end: usize,
}

impl WordSpan {
    /// `(start, end)` in seconds given the frame period `frame_shift` in seconds.
    pub fn seconds(&self, frame_shift: f64) -> (f64, f64) {
        (self.start as f64 * frame_shift, self.end as f64 * frame_shift)
    }
}

/// A decoded hypothesis: the labelling, its text, its timing and its scores.
///
/// All scores are natural logarithms. `total = acoustic + lm + bonus`.
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    /// The labelling (class indices, blanks removed, repeats merged), in order.
    pub tokens: Vec<usize>,
    /// The tokens' strings joined; the separator token is written as a single space, and leading,
    /// trailing and repeated separators are dropped from the text (not from `tokens`); a word-start
    /// token is written as a space (none at the start) and its string less the marker.
    pub text: String,
    /// One span per entry of `tokens`.
    pub token_spans: Vec<TokenSpan>,
    /// The words of `text` with their frames.
    pub word_spans: Vec<WordSpan>,
    /// Acoustic score. Greedy: the log-probability of the best path. Beam search: the log-probability of
    /// the labelling summed over the alignments the beam kept (equal to the full sum when nothing was
    /// pruned).
    pub acoustic: f64,
    /// `alpha * ln P_LM(words, </s>)` when a language model is used, otherwise 0.
    pub lm: f64,
    /// Word insertion bonuses (`beta` per word), hotword boosts and out-of-lexicon penalties.
    pub bonus: f64,
    /// `acoustic + lm + bonus`: the quantity the beam ranks by.
    pub total: f64,
}

/// Word spans from token spans: split at `separator` tokens and before word-start tokens.
pub(crate) fn words_from_spans(vocab: &Vocabulary, spans: &[TokenSpan]) -> Vec<WordSpan> {
    let mut words = Vec::new();
    let mut current: Option<WordSpan> = None;
    for s in spans {
        if Some(s.token) == vocab.separator() || vocab.is_word_start(s.token) {
            words.extend(current.take().filter(|w| !w.word.is_empty()));
            if Some(s.token) == vocab.separator() {
                continue;
            }
        }
        match current.as_mut() {
            Some(w) => {
                w.word.push_str(vocab.text_of(s.token));
                w.end = s.end;
            }
            None => {
                current =
                    Some(WordSpan { word: vocab.text_of(s.token).to_string(), start: s.start, end: s.end })
            }
        }
    }
    words.extend(current.filter(|w| !w.word.is_empty()));
    words
}

/// One sequence of a validated view: `at(t, v)` reads `lp[t, b, v]` for `t < len`, `v < classes`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeqView<'a, F> {
    data: &'a [F],
    base: usize,
    stride_t: usize,
    stride_v: usize,
    /// The sequence's input length.
    pub len: usize,
    /// `V`.
    pub classes: usize,
}

impl<F: Float> SeqView<'_, F> {
    /// `lp[t, b, v]` as `f64`. Indices come from loops bounded by `len` and `classes`, which the view
    /// validation proved addressable.
    #[inline(always)]
    pub fn at(&self, t: usize, v: usize) -> f64 {
        self.data[self.base + t * self.stride_t + v * self.stride_v].to_f64()
    }

    /// Frame `t` as a contiguous slice when the class stride is 1.
    #[inline(always)]
    pub fn row(&self, t: usize) -> Option<&[F]> {
        if self.stride_v == 1 {
            let o = self.base + t * self.stride_t;
            Some(&self.data[o..o + self.classes])
        } else {
            None
        }
    }
}

/// Checks lengths, class count and values of a batch, returning one [`SeqView`] per sequence.
pub(crate) fn validate_batch<'a, F: Float, L: Index>(
    log_probs: &ActsView<'a, F>,
    input_lengths: &[L],
    classes: usize,
) -> Result<Vec<SeqView<'a, F>>, DecodeError> {
    let layout = log_probs.layout();
    if layout.classes != classes {
        return Err(DecodeError::VocabSizeMismatch { classes: layout.classes, vocabulary: classes });
    }
    if input_lengths.len() != layout.batch {
        return Err(DecodeError::LengthsMismatch { batch: layout.batch, got: input_lengths.len() });
    }
    let mut seqs = Vec::with_capacity(layout.batch);
    for (b, &l) in input_lengths.iter().enumerate() {
        let len = match l.to_usize() {
            Some(n) if n <= layout.max_time => n,
            _ => {
                return Err(DecodeError::InvalidLength {
                    sequence: b,
                    value: l.to_i128(),
                    max_time: layout.max_time,
                })
            }
        };
        let seq = SeqView {
            data: log_probs.data(),
            // In range: b < batch of a view whose largest offset was checked against the slice.
            base: if len == 0 { 0 } else { layout.offset(0, b, 0) },
            stride_t: layout.stride_t,
            stride_v: layout.stride_v,
            len,
            classes,
        };
        check_finite(&seq, b)?;
        seqs.push(seq);
    }
    Ok(seqs)
}

fn check_finite<F: Float>(seq: &SeqView<'_, F>, b: usize) -> Result<(), DecodeError> {
    for t in 0..seq.len {
        for v in 0..seq.classes {
            let x = seq.at(t, v);
            // -inf is a legitimate log of zero; NaN and +inf are not log-probabilities.
            if x.is_nan() || x == f64::INFINITY {
                return Err(non_finite(b, t, v, x));
            }
        }
    }
    Ok(())
}

#[cold]
fn non_finite(sequence: usize, frame: usize, class: usize, value: f64) -> DecodeError {
    DecodeError::NonFinite { sequence, frame, class, value }
}

/// `ln(e^a + e^b)` with `-inf` handled by selection, never by `-inf - -inf`.
#[inline(always)]
pub(crate) fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        hi
    } else {
        hi + (lo - hi).exp().ln_1p()
    }
}

/// Multiplicative hashing for the small integer keys of the search's maps (arena children, lexicon
/// trie, n-gram tables): they are the hottest lookups and need no protection against adversarial keys,
/// which is what the standard library's SipHash pays for.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

const HASH_MUL: u64 = 0x9e37_79b9_7f4a_7c15;

impl IdHasher {
    #[inline(always)]
    fn mix(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(26) ^ x).wrapping_mul(HASH_MUL);
    }
}

impl core::hash::Hasher for IdHasher {
    #[inline(always)]
    fn finish(&self) -> u64 {
        // Fold the high bits down: hashbrown takes its bucket index from the low bits.
        self.0 ^ (self.0 >> 29)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w));
        }
    }
    #[inline(always)]
    fn write_u32(&mut self, x: u32) {
        self.mix(x as u64);
    }
    #[inline(always)]
    fn write_u64(&mut self, x: u64) {
        self.mix(x);
    }
    #[inline(always)]
    fn write_usize(&mut self, x: usize) {
        self.mix(x as u64);
    }
}

/// A hash map with [`IdHasher`].
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, core::hash::BuildHasherDefault<IdHasher>>;
