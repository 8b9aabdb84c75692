//! Viterbi forced alignment: the single most probable frame-level path that spells a known transcript,
//! and the token and word timings it implies.
//!
//! The lattice is CTC's: the transcript `l_1..l_L` is expanded to `2L + 1` states (blanks at even
//! states, `l_i` at state `2i - 1`); a path stays in its state, moves to the next one, or skips a blank
//! between two *different* labels (the blank between repeats is mandatory). It starts in state 0 or 1 and
//! ends in state `2L` or `2L - 1`. The best path maximises the sum of log-probabilities along it.
//!
//! Confidence of a token is the mean, over the frames the best path spends on that token, of the frame's
//! probability of that token, `exp(lp[t][token])` (not a posterior from forward-backward: cheaper, and
//! what torchaudio's `forced_align` scores report per frame). A word's confidence is the same mean over
//! all frames of its tokens.
//!
//! Times are frames, half-open `[start, end)`; seconds are frames times the model's frame period.

use core::fmt;
use std::fmt::Write as _;

use rayon::prelude::*;

use crate::buffer::{ActsView, Index};
use crate::decode::{validate_batch, DecodeError, SeqView, Vocabulary};
use crate::float::Float;

/// What can go wrong in a forced alignment.
#[derive(Debug)]
#[non_exhaustive]
pub enum AlignError {
    /// The log-probabilities, lengths or vocabulary are inconsistent, or a value is NaN/`+inf` (the
    /// decoder's input checks, shared).
    Input(DecodeError),
    /// The number of transcripts differs from the batch size.
    TranscriptsMismatch {
        /// Sequences in the view.
        batch: usize,
        /// Transcripts given.
        got: usize,
    },
    /// A transcript token is the blank or not below `V`.
    InvalidToken {
        /// The sequence.
        sequence: usize,
        /// Index within its transcript.
        position: usize,
        /// The token.
        token: usize,
        /// `V`.
        classes: usize,
    },
    /// The transcript needs more frames than the sequence has: `L` plus one per adjacent repeat.
    TooLong {
        /// The sequence.
        sequence: usize,
        /// Tokens in the transcript, `L`.
        tokens: usize,
        /// Frames required, `L + repeats`.
        required: usize,
        /// The sequence's input length.
        frames: usize,
    },
    /// Every path that spells the transcript has probability zero (`-inf` log-probabilities in the way).
    NoPath {
        /// The sequence.
        sequence: usize,
    },
    /// A transcript's text has characters no vocabulary token spells.
    UnknownToken {
        /// The sequence.
        sequence: usize,
        /// The text.
        text: String,
        /// Byte offset of the first unmatched character.
        byte_offset: usize,
    },
}

impl fmt::Display for AlignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlignError::Input(e) => write!(f, "{e}"),
            AlignError::TranscriptsMismatch { batch, got } => {
                write!(f, "{got} transcripts given for a batch of {batch} sequences")
            }
            AlignError::InvalidToken { sequence, position, token, classes } => write!(
                f,
                "token {token} at position {position} of transcript {sequence} is the blank or not below \
                 {classes}"
            ),
            AlignError::TooLong { sequence, tokens, required, frames } => write!(
                f,
                "transcript {sequence} has {tokens} tokens needing {required} frames, but the input has \
                 {frames}"
            ),
            AlignError::NoPath { sequence } => {
                write!(f, "no path of non-zero probability spells transcript {sequence}")
            }
            AlignError::UnknownToken { sequence, text, byte_offset } => write!(
                f,
                "transcript {sequence} {text:?}: no vocabulary token matches at byte offset {byte_offset}"
            ),
        }
    }
}

impl std::error::Error for AlignError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AlignError::Input(e) => Some(e),
            _ => None,
        }
    }
}

impl From<DecodeError> for AlignError {
    fn from(e: DecodeError) -> Self {
        AlignError::Input(e)
    }
}

/// One transcript token on the best path.
#[derive(Clone, Debug, PartialEq)]
pub struct AlignedToken {
    /// Class index.
    pub token: usize,
    /// First frame (inclusive).
    pub start: usize,
    /// One past the last frame (exclusive); `end > start`.
    pub end: usize,
    /// Mean of `exp(lp[t][token])` over `start..end`, in `[0, 1]`.
    pub confidence: f64,
}

/// One word (a maximal run of non-separator tokens) on the best path.
#[derive(Clone, Debug, PartialEq)]
pub struct AlignedWord {
    /// The word's text.
    pub word: String,
    /// First frame of its first token.
    pub start: usize,
    /// One past the last frame of its last token.
    pub end: usize,
    /// Mean frame probability over all frames of its tokens, in `[0, 1]`.
    pub confidence: f64,
}

/// The forced alignment of one sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Alignment {
    /// Log-probability (natural log) of the best path.
    pub score: f64,
    /// Frames of the input that were aligned (its input length).
    pub frames: usize,
    /// Every transcript token, separators included, in order.
    pub tokens: Vec<AlignedToken>,
    /// The words, separators excluded.
    pub words: Vec<AlignedWord>,
}

impl Alignment {
    /// A JSON object `{"utterance", "score", "frames", "frame_shift", "tokens": [{"token", "text",
    /// "start_frame", "end_frame", "start", "end", "confidence"}], "words": [{"word", "start_frame",
    /// "end_frame", "start", "end", "confidence"}]}`; `start`/`end` in seconds (`frame *
    /// frame_shift`), end frames exclusive.
    pub fn to_json(&self, utterance: &str, vocab: &Vocabulary, frame_shift: f64) -> serde_json::Value {
        let tokens: Vec<serde_json::Value> = self
            .tokens
            .iter()
            .map(|t| {
                serde_json::json!({
                    "token": t.token,
                    "text": vocab.tokens().get(t.token).map_or("", String::as_str),
                    "start_frame": t.start,
                    "end_frame": t.end,
                    "start": t.start as f64 * frame_shift,
                    "end": t.end as f64 * frame_shift,
                    "confidence": t.confidence,
                })
            })
            .collect();
        let words: Vec<serde_json::Value> = self
            .words
            .iter()
            .map(|w| {
                serde_json::json!({
                    "word": w.word,
                    "start_frame": w.start,
                    "end_frame": w.end,
                    "start": w.start as f64 * frame_shift,
                    "end": w.end as f64 * frame_shift,
                    "confidence": w.confidence,
                })
            })
            .collect();
        serde_json::json!({
            "utterance": utterance,
            "score": self.score,
            "frames": self.frames,
            "frame_shift": frame_shift,
            "tokens": tokens,
            "words": words,
        })
    }

    /// Appends the words as NIST CTM lines, `utterance channel start duration word confidence`, times in
    /// seconds with millisecond precision. `utterance` must not contain whitespace (CTM is
    /// space-separated); whitespace in it is replaced by `_`.
    pub fn write_ctm(&self, out: &mut String, utterance: &str, channel: &str, frame_shift: f64) {
        let utt: String = utterance.chars().map(|c| if c.is_whitespace() { '_' } else { c }).collect();
        for w in &self.words {
            let start = w.start as f64 * frame_shift;
            let dur = (w.end - w.start) as f64 * frame_shift;
            let _ = writeln!(out, "{utt} {channel} {start:.3} {dur:.3} {} {:.4}", w.word, w.confidence);
        }
    }
}

/// Viterbi forced alignment of every sequence of a batch to its transcript (token ids, separators
/// included where words break).
///
/// `log_probs`: `(T, B, V)` natural-log probabilities, `V == vocab.len()`; `input_lengths[b] <= T`;
/// `transcripts[b]`: the tokens of sequence `b`, none of them the blank. Sequences run in parallel.
/// Each sequence keeps one byte of back-pointer per lattice cell, `T_b × (2 L_b + 1)` bytes, plus two
/// rows of scores.
pub fn forced_align<F: Float, L: Index, S: AsRef<[usize]> + Sync>(
    log_probs: &ActsView<'_, F>,
    input_lengths: &[L],
    transcripts: &[S],
    vocab: &Vocabulary,
) -> Result<Vec<Alignment>, AlignError> {
    let seqs = validate_batch(log_probs, input_lengths, vocab.len())?;
    if transcripts.len() != seqs.len() {
        return Err(AlignError::TranscriptsMismatch { batch: seqs.len(), got: transcripts.len() });
    }
    seqs.par_iter()
        .zip(transcripts.par_iter())
        .enumerate()
        .map(|(b, (seq, tr))| align_one(seq, tr.as_ref(), vocab, b))
        .collect()
}

/// [`forced_align`] for transcripts given as text, spelled with [`Vocabulary::encode`] (whitespace
/// becomes the separator token).
pub fn align_text<F: Float, L: Index, S: AsRef<str>>(
    log_probs: &ActsView<'_, F>,
    input_lengths: &[L],
    texts: &[S],
    vocab: &Vocabulary,
) -> Result<Vec<Alignment>, AlignError> {
    let mut ids = Vec::with_capacity(texts.len());
    for (b, t) in texts.iter().enumerate() {
        match vocab.encode(t.as_ref()) {
            Ok(v) => ids.push(v),
            Err(DecodeError::UnknownToken { text, byte_offset }) => {
                return Err(AlignError::UnknownToken { sequence: b, text, byte_offset })
            }
            Err(e) => return Err(AlignError::Input(e)),
        }
    }
    forced_align(log_probs, input_lengths, &ids, vocab)
}

fn align_one<F: Float>(
    seq: &SeqView<'_, F>,
    tokens: &[usize],
    vocab: &Vocabulary,
    sequence: usize,
) -> Result<Alignment, AlignError> {
    for (position, &token) in tokens.iter().enumerate() {
        if token == vocab.blank() || token >= vocab.len() {
            return Err(AlignError::InvalidToken { sequence, position, token, classes: vocab.len() });
        }
    }
    let (score, spans) = match viterbi(seq, tokens, vocab.blank()) {
        Ok(x) => x,
        Err(ViterbiFailure::TooLong { required }) => {
            return Err(AlignError::TooLong { sequence, tokens: tokens.len(), required, frames: seq.len })
        }
        Err(ViterbiFailure::NoPath) => return Err(AlignError::NoPath { sequence }),
    };
    let frame_prob_sum = |tok: usize, s: usize, e: usize| (s..e).map(|t| seq.at(t, tok).exp()).sum::<f64>();
    let aligned: Vec<AlignedToken> = tokens
        .iter()
        .zip(&spans)
        .map(|(&token, &(start, end))| AlignedToken {
            token,
            start,
            end,
            confidence: frame_prob_sum(token, start, end) / (end - start) as f64,
        })
        .collect();
    let mut words = Vec::new();
    let mut cur: Option<(AlignedWord, f64, usize)> = None; // word, probability sum, frames
    for t in &aligned {
        let separator = Some(t.token) == vocab.separator();
        if separator || vocab.is_word_start(t.token) {
            if let Some((w, sum, n)) = cur.take() {
                words.push(AlignedWord { confidence: sum / n as f64, ..w });
            }
            if separator {
                continue;
            }
        }
        let sum = t.confidence * (t.end - t.start) as f64;
        match cur.as_mut() {
            Some((w, s, n)) => {
                w.word.push_str(vocab.text_of(t.token));
                w.end = t.end;
                *s += sum;
                *n += t.end - t.start;
            }
            None => {
                cur = Some((
                    AlignedWord {
                        word: vocab.text_of(t.token).to_string(),
                        start: t.start,
                        end: t.end,
                        confidence: 0.0,
                    },
                    sum,
                    t.end - t.start,
                ))
            }
        }
    }
    if let Some((w, sum, n)) = cur {
        words.push(AlignedWord { confidence: sum / n as f64, ..w });
    }
    Ok(Alignment { score, frames: seq.len, tokens: aligned, words })
}

pub(crate) enum ViterbiFailure {
    TooLong { required: usize },
    NoPath,
}

/// Frames a transcript needs: one per token plus one per adjacent repeat (the blank between them).
pub(crate) fn required_frames(tokens: &[usize]) -> usize {
    tokens.len() + tokens.windows(2).filter(|w| w[0] == w[1]).count()
}

/// The best path's score and, per token, its half-open frame span. Tokens must be valid non-blank ids.
pub(crate) fn viterbi<F: Float>(
    seq: &SeqView<'_, F>,
    tokens: &[usize],
    blank: usize,
) -> Result<(f64, Vec<(usize, usize)>), ViterbiFailure> {
    let t_len = seq.len;
    let required = required_frames(tokens);
    if required > t_len {
        return Err(ViterbiFailure::TooLong { required });
    }
    if t_len == 0 {
        return Ok((0.0, Vec::new()));
    }
    let s_len = 2 * tokens.len() + 1;
    let label = |s: usize| if s % 2 == 0 { blank } else { tokens[s / 2] };
    let can_skip = |s: usize| s % 2 == 1 && s >= 3 && tokens[s / 2] != tokens[s / 2 - 1];
    let ninf = f64::NEG_INFINITY;
    // back[t * s_len + s]: how state s at frame t was entered (0 stay, 1 from s-1, 2 from s-2).
    let mut back = vec![0u8; t_len * s_len];
    let mut prev = vec![ninf; s_len];
    let mut cur = vec![ninf; s_len];
    prev[0] = seq.at(0, blank);
    if s_len > 1 {
        prev[1] = seq.at(0, tokens[0]);
    }
    for t in 1..t_len {
        // States that cannot reach the end in the frames left, or be reached yet, stay -inf anyway; the
        // full sweep keeps the recurrence obviously identical to the definition.
        for s in 0..s_len {
            let mut best = prev[s];
            let mut how = 0u8;
            if s >= 1 && prev[s - 1] > best {
                best = prev[s - 1];
                how = 1;
            }
            if can_skip(s) && prev[s - 2] > best {
                best = prev[s - 2];
                how = 2;
            }
            cur[s] = if best == ninf { ninf } else { best + seq.at(t, label(s)) };
            back[t * s_len + s] = how;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let mut s = s_len - 1;
    if s_len > 1 && prev[s_len - 2] > prev[s_len - 1] {
        s = s_len - 2;
    }
    let score = prev[s];
    if score == ninf {
        return Err(ViterbiFailure::NoPath);
    }
    let mut spans = vec![(usize::MAX, 0usize); tokens.len()];
    for t in (0..t_len).rev() {
        if s % 2 == 1 {
            let sp = &mut spans[s / 2];
            if sp.1 == 0 {
                sp.1 = t + 1;
            }
            sp.0 = t;
        }
        if t > 0 {
            s -= back[t * s_len + s] as usize;
        }
    }
    Ok((score, spans))
}
