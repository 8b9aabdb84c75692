//! Class indices to strings and back.

use std::collections::HashMap;

use super::DecodeError;

/// The output alphabet of an acoustic model: class `i` is written `tokens[i]`.
///
/// One class is the CTC blank (never written), and optionally one is the word separator (written as a
/// space in text; its own string may be `" "` or a visible marker such as `"|"`, wav2vec 2.0's). Tokens
/// are usually single characters but may be longer strings (sub-words); [`Vocabulary::encode`] then
/// matches the longest token at each position.
#[derive(Clone, Debug)]
pub struct Vocabulary {
    tokens: Vec<String>,
    blank: usize,
    separator: Option<usize>,
    lookup: HashMap<String, usize>,
    /// Length in chars of the longest non-blank token.
    max_chars: usize,
}

impl Vocabulary {
    /// A vocabulary of `tokens.len()` classes, the blank at `blank`, the word separator at `separator`.
    ///
    /// Errors: blank or separator out of range, blank equal to the separator, an empty non-blank token, or
    /// two non-blank tokens with the same string.
    pub fn new(tokens: Vec<String>, blank: usize, separator: Option<usize>) -> Result<Self, DecodeError> {
        let n = tokens.len();
        if blank >= n {
            return Err(DecodeError::InvalidVocabulary {
                reason: format!("blank index {blank} is not below the {n} tokens"),
            });
        }
        if let Some(s) = separator {
            if s >= n || s == blank {
                return Err(DecodeError::InvalidVocabulary {
                    reason: format!("separator index {s} is out of range or equal to the blank {blank}"),
                });
            }
        }
        let mut lookup = HashMap::with_capacity(n);
        let mut max_chars = 0;
        for (i, t) in tokens.iter().enumerate() {
            if i == blank {
                continue;
            }
            if t.is_empty() {
                return Err(DecodeError::InvalidVocabulary { reason: format!("token {i} is empty") });
            }
            if let Some(j) = lookup.insert(t.clone(), i) {
                return Err(DecodeError::InvalidVocabulary {
                    reason: format!("tokens {j} and {i} are both {t:?}"),
                });
            }
            max_chars = max_chars.max(t.chars().count());
        }
        Ok(Vocabulary { tokens, blank, separator, lookup, max_chars })
    }

    /// A character vocabulary: class 0 is the blank (written `"<blank>"`), then one class per char of
    /// `chars` in order. The separator is the space if `chars` contains one.
    pub fn from_chars(chars: &str) -> Result<Self, DecodeError> {
        let mut tokens = vec!["<blank>".to_string()];
        tokens.extend(chars.chars().map(String::from));
        let separator = tokens.iter().position(|t| t == " ");
        Self::new(tokens, 0, separator)
    }

    /// Number of classes `V`, the blank included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no classes (never true for a constructed vocabulary, which has a blank).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The blank's class index.
    pub fn blank(&self) -> usize {
        self.blank
    }

    /// The word separator's class index, if any.
    pub fn separator(&self) -> Option<usize> {
        self.separator
    }

    /// The string of class `i` (panics if `i >= len()`, like slice indexing).
    pub fn token(&self, i: usize) -> &str {
        &self.tokens[i]
    }

    /// All token strings, indexed by class.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The class whose string is exactly `s` (never the blank).
    pub fn id(&self, s: &str) -> Option<usize> {
        self.lookup.get(s).copied()
    }

    /// Text from a labelling: tokens joined, separators written as one space; leading, trailing and
    /// repeated separators dropped; blanks skipped. Indices `>= len()` are skipped too.
    pub fn decode_text(&self, labels: &[usize]) -> String {
        let mut out = String::new();
        let mut pending_space = false;
        for &l in labels {
            if l == self.blank || l >= self.tokens.len() {
                continue;
            }
            if Some(l) == self.separator {
                pending_space = !out.is_empty();
                continue;
            }
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push_str(&self.tokens[l]);
        }
        out
    }

    /// Class indices spelling `text`: at each position the longest matching token; a whitespace
    /// character maps to the separator (runs of whitespace to one separator, leading and trailing
    /// whitespace dropped).
    ///
    /// Errors with [`DecodeError::UnknownToken`] naming the byte offset of the first unmatched character,
    /// or of whitespace when the vocabulary has no separator.
    pub fn encode(&self, text: &str) -> Result<Vec<usize>, DecodeError> {
        let mut out = Vec::new();
        let trimmed_start = text.len() - text.trim_start().len();
        let body = text.trim();
        let mut rest = body;
        let mut offset = trimmed_start;
        while let Some(c) = rest.chars().next() {
            if c.is_whitespace() {
                let sep = self.separator.ok_or_else(|| unknown(text, offset))?;
                let ws = rest.len() - rest.trim_start().len();
                out.push(sep);
                rest = &rest[ws..];
                offset += ws;
                continue;
            }
            // Longest match first: byte ends of the first 1..=max_chars chars, tried from the longest.
            let ends: Vec<usize> =
                rest.char_indices().map(|(i, ch)| i + ch.len_utf8()).take(self.max_chars).collect();
            let found = ends.iter().rev().find_map(|&e| self.lookup.get(&rest[..e]).map(|&id| (id, e)));
            match found {
                Some((id, e)) => {
                    out.push(id);
                    rest = &rest[e..];
                    offset += e;
                }
                None => return Err(unknown(text, offset)),
            }
        }
        Ok(out)
    }
}

#[cold]
fn unknown(text: &str, byte_offset: usize) -> DecodeError {
    DecodeError::UnknownToken { text: text.to_string(), byte_offset }
}
