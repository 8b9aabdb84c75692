//! Class indices to strings and back.

use std::collections::HashMap;

use super::DecodeError;

/// Marks a token that begins a word: the token `"\u{2581}a"` is an `a` at the start of a word
/// (SentencePiece's convention, U+2581 LOWER ONE EIGHTH BLOCK).
pub const WORD_START: char = '\u{2581}';

/// The output alphabet of an acoustic model: class `i` is written `tokens[i]`.
///
/// One class is the CTC blank (never written). Word boundaries are marked in one of two ways:
///
/// - a **separator** class (written as a space in text; its own string may be `" "` or a visible
///   marker such as `"|"`, wav2vec 2.0's), emitted between words like any other token; or
/// - **word-start** tokens, whose string begins with [`WORD_START`] (`"\u{2581}a"`): such a token
///   opens a new word, so a boundary costs no output frame of its own. Text is written with a space
///   before each word-start token but the first, and the marker itself is not written.
///
/// A vocabulary uses one or the other, not both. Tokens are usually single characters but may be
/// longer strings (sub-words); [`Vocabulary::encode`] then matches the longest token at each position.
#[derive(Clone, Debug)]
pub struct Vocabulary {
    tokens: Vec<String>,
    blank: usize,
    separator: Option<usize>,
    /// `word_start[i]`: token `i` begins a word (its string starts with [`WORD_START`]).
    word_start: Vec<bool>,
    /// Whether any token begins a word.
    has_word_start: bool,
    lookup: HashMap<String, usize>,
    /// Length in chars of the longest non-blank token.
    max_chars: usize,
}

impl Vocabulary {
    /// A vocabulary of `tokens.len()` classes, the blank at `blank`, the word separator at `separator`.
    ///
    /// Errors: blank or separator out of range, blank equal to the separator, an empty non-blank token,
    /// two non-blank tokens with the same string, or a separator together with word-start tokens.
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
        let word_start: Vec<bool> =
            tokens.iter().enumerate().map(|(i, t)| i != blank && t.starts_with(WORD_START)).collect();
        let has_word_start = word_start.iter().any(|&w| w);
        if let (Some(s), true) = (separator, has_word_start) {
            return Err(DecodeError::InvalidVocabulary {
                reason: format!(
                    "separator {s} given, but word-start tokens already mark the word boundaries"
                ),
            });
        }
        Ok(Vocabulary { tokens, blank, separator, word_start, has_word_start, lookup, max_chars })
    }

    /// A character vocabulary: class 0 is the blank (written `"<blank>"`), then one class per char of
    /// `chars` in order. The separator is the space if `chars` contains one.
    pub fn from_chars(chars: &str) -> Result<Self, DecodeError> {
        let mut tokens = vec!["<blank>".to_string()];
        tokens.extend(chars.chars().map(String::from));
        let separator = tokens.iter().position(|t| t == " ");
        Self::new(tokens, 0, separator)
    }

    /// A character vocabulary with word-start classes and no separator: class 0 is the blank, then one
    /// class per char of `chars` in order (a letter inside a word), then the same chars again, each
    /// marked with [`WORD_START`] (a letter that begins a word): `2 * chars + 1` classes. Whitespace in
    /// `chars` is ignored, since word boundaries need no class of their own.
    pub fn word_start_chars(chars: &str) -> Result<Self, DecodeError> {
        let letters: Vec<char> = chars.chars().filter(|c| !c.is_whitespace()).collect();
        let mut tokens = vec!["<blank>".to_string()];
        tokens.extend(letters.iter().map(|c| c.to_string()));
        tokens.extend(letters.iter().map(|c| format!("{WORD_START}{c}")));
        Self::new(tokens, 0, None)
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

    /// Whether class `i` begins a word (a word-start token; false for `i >= len()`).
    pub fn is_word_start(&self, i: usize) -> bool {
        self.word_start.get(i).copied().unwrap_or(false)
    }

    /// Whether word boundaries are marked by word-start tokens rather than a separator.
    pub fn has_word_start(&self) -> bool {
        self.has_word_start
    }

    /// What class `i` writes inside a word: its string, less the [`WORD_START`] marker of a word-start
    /// token (which may leave it empty). Panics if `i >= len()`.
    pub fn text_of(&self, i: usize) -> &str {
        let t = &self.tokens[i];
        if self.word_start[i] {
            &t[WORD_START.len_utf8()..]
        } else {
            t
        }
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
    /// repeated separators dropped; blanks skipped. A word-start token is written without its marker,
    /// after one space unless it begins the text. Indices `>= len()` are skipped too.
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
            if self.word_start[l] {
                pending_space = !out.is_empty();
            }
            let text = self.text_of(l);
            if text.is_empty() {
                continue;
            }
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push_str(text);
        }
        out
    }

    /// Class indices spelling `text`: at each position the longest matching token; a whitespace
    /// character maps to the separator (runs of whitespace to one separator, leading and trailing
    /// whitespace dropped). With word-start tokens, whitespace only separates words, and each word
    /// begins with the longest word-start token that matches there (or, failing that, a bare
    /// [`WORD_START`] token, if the vocabulary has one, followed by ordinary tokens).
    ///
    /// Errors with [`DecodeError::UnknownToken`] naming the byte offset of the first unmatched character,
    /// or of whitespace when the vocabulary has neither a separator nor word-start tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<usize>, DecodeError> {
        let mut out = Vec::new();
        let trimmed_start = text.len() - text.trim_start().len();
        let body = text.trim();
        let mut rest = body;
        let mut offset = trimmed_start;
        let mut word_start = self.has_word_start;
        let mut marked = String::new();
        while let Some(c) = rest.chars().next() {
            if c.is_whitespace() {
                let ws = rest.len() - rest.trim_start().len();
                if self.has_word_start {
                    word_start = true;
                } else {
                    out.push(self.separator.ok_or_else(|| unknown(text, offset))?);
                }
                rest = &rest[ws..];
                offset += ws;
                continue;
            }
            // Longest match first: byte ends of the first 1..=max_chars chars, tried from the longest.
            let ends: Vec<usize> =
                rest.char_indices().map(|(i, ch)| i + ch.len_utf8()).take(self.max_chars).collect();
            if word_start {
                word_start = false;
                let found = ends.iter().rev().find_map(|&e| {
                    marked.clear();
                    marked.push(WORD_START);
                    marked.push_str(&rest[..e]);
                    self.lookup.get(&marked).map(|&id| (id, e))
                });
                if let Some((id, e)) = found {
                    out.push(id);
                    rest = &rest[e..];
                    offset += e;
                    continue;
                }
                match self.lookup.get(WORD_START.encode_utf8(&mut [0; 4]) as &str) {
                    Some(&bare) => out.push(bare),
                    None => return Err(unknown(text, offset)),
                }
            }
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
