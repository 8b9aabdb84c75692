//! Word-level n-gram language models in the ARPA format, and the lexicon trie that lets the beam score
//! partial words.
//!
//! ARPA files (what KenLM's `lmplz` and SRILM's `ngram-count` write) hold, per order `n`, lines
//! `log10 P(w_n | w_1..w_{n-1})  w_1 .. w_n  [log10 backoff(w_1..w_n)]`. A query backs off in the
//! usual way:
//!
//! ```text
//! P(w | h) = P*(h, w)                    if the n-gram (h, w) is listed
//!          = backoff(h) * P(w | h[1..])  otherwise (backoff(h) = 1 when h is not listed)
//! ```
//!
//! `<unk>`: words outside the model's vocabulary are scored as `<unk>`. If the file lists no `<unk>`
//! unigram, one is added with log10 probability -100, KenLM's convention for such models. `<s>` is only
//! ever a context (its unigram probability, conventionally -99, is never used as a prediction).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use super::{DecodeError, Vocabulary};

/// A word's index in an [`NgramModel`]'s vocabulary (its unigram list, in file order).
pub type WordId = u32;

/// The largest n-gram order the reader accepts.
pub const MAX_ORDER: usize = 6;

const NO_WORD: WordId = WordId::MAX;

/// An n-gram key padded with [`NO_WORD`]; only the first `n` entries are meaningful.
type Key = [WordId; MAX_ORDER];

fn key(words: &[WordId]) -> Key {
    let mut k = [NO_WORD; MAX_ORDER];
    k[..words.len()].copy_from_slice(words);
    k
}

/// A back-off n-gram model (log10 probabilities and back-off weights, as in the ARPA file).
#[derive(Clone, Debug)]
pub struct NgramModel {
    words: Vec<String>,
    ids: HashMap<String, WordId>,
    /// `tables[n - 1]`: the n-grams of order `n`, to `(log10 prob, log10 backoff)`.
    tables: Vec<HashMap<Key, (f32, f32)>>,
    bos: WordId,
    eos: WordId,
    unk: WordId,
}

impl NgramModel {
    /// Reads an ARPA file. Errors name the file and the 1-based line.
    pub fn from_arpa_file(path: impl AsRef<Path>) -> Result<Self, DecodeError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| DecodeError::Io { path: path.display().to_string(), source: e })?;
        Self::from_arpa_str(&text, &path.display().to_string())
    }

    /// Parses ARPA text; `source` names it in errors.
    ///
    /// Checked: the `\data\` header and its `ngram N=count` lines (orders 1..=N consecutive, N at most
    /// [`MAX_ORDER`]), sections in order, each line's field count and numbers (log10 probabilities must
    /// be `<= 0` or `-inf`, never NaN), words of higher-order n-grams present among the unigrams,
    /// duplicates, the number of lines per section against its declared count, `<s>` and `</s>` present,
    /// and the closing `\end\`.
    pub fn from_arpa_str(text: &str, source: &str) -> Result<Self, DecodeError> {
        let err = |line: usize, reason: String| DecodeError::Arpa { source: source.to_string(), line, reason };
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
        // Anything before `\data\` is commentary (SRILM and KenLM write none, some tools do).
        let mut last_line = 0;
        loop {
            match lines.next() {
                Some((n, "\\data\\")) => {
                    last_line = n;
                    break;
                }
                Some((n, _)) => last_line = n,
                None => return Err(err(last_line, "no \\data\\ header".into())),
            }
        }
        let mut counts: Vec<usize> = Vec::new();
        let mut pending: Option<(usize, &str)> = None;
        for (n, l) in lines.by_ref() {
            if l.is_empty() {
                continue;
            }
            let Some(rest) = l.strip_prefix("ngram ") else {
                pending = Some((n, l));
                break;
            };
            let (o, c) = rest
                .split_once('=')
                .ok_or_else(|| err(n, format!("expected `ngram N=count`, got {l:?}")))?;
            let o: usize = o.trim().parse().map_err(|_| err(n, format!("bad order in {l:?}")))?;
            let c: usize = c.trim().parse().map_err(|_| err(n, format!("bad count in {l:?}")))?;
            if o != counts.len() + 1 {
                return Err(err(n, format!("expected order {}, got {o}", counts.len() + 1)));
            }
            if o > MAX_ORDER {
                return Err(err(n, format!("order {o} exceeds the supported maximum {MAX_ORDER}")));
            }
            counts.push(c);
        }
        if counts.is_empty() {
            return Err(err(pending.map_or(last_line, |p| p.0), "no `ngram N=count` lines".into()));
        }
        let order = counts.len();
        let mut model = NgramModel {
            words: Vec::new(),
            ids: HashMap::new(),
            tables: vec![HashMap::new(); order],
            bos: NO_WORD,
            eos: NO_WORD,
            unk: NO_WORD,
        };
        let mut current: Option<usize> = None; // order of the section being read
        let mut seen = 0usize;
        let mut ended = false;
        let mut buf: Vec<WordId> = Vec::with_capacity(MAX_ORDER);
        let mut rest_lines = pending.into_iter().chain(lines);
        let mut last = last_line;
        for (n, l) in rest_lines.by_ref() {
            last = n;
            if l.is_empty() {
                continue;
            }
            if l.starts_with('\\') {
                if let Some(o) = current {
                    if seen != counts[o - 1] {
                        return Err(err(
                            n,
                            format!("section \\{o}-grams: has {seen} entries, header declared {}", counts[o - 1]),
                        ));
                    }
                }
                if l == "\\end\\" {
                    if current != Some(order) {
                        return Err(err(n, format!("\\end\\ before the \\{order}-grams: section")));
                    }
                    ended = true;
                    break;
                }
                let o = l
                    .strip_prefix('\\')
                    .and_then(|s| s.strip_suffix("-grams:"))
                    .and_then(|s| s.parse::<usize>().ok())
                    .ok_or_else(|| err(n, format!("unexpected section marker {l:?}")))?;
                if o != current.map_or(1, |c| c + 1) || o > order {
                    return Err(err(n, format!("section \\{o}-grams: out of order")));
                }
                current = Some(o);
                seen = 0;
                continue;
            }
            let o = current.ok_or_else(|| err(n, format!("n-gram line {l:?} outside any section")))?;
            let mut fields = l.split_whitespace();
            let prob = parse_log10(fields.next(), n, &err)?;
            if prob > 0.0 {
                return Err(err(n, format!("log10 probability {prob} is positive")));
            }
            buf.clear();
            let fields: Vec<&str> = fields.collect();
            if fields.len() != o && fields.len() != o + 1 {
                return Err(err(n, format!("expected {o} words and an optional back-off, got {l:?}")));
            }
            let backoff = if fields.len() == o + 1 { parse_log10(Some(fields[o]), n, &err)? } else { 0.0 };
            for &w in &fields[..o] {
                let id = if o == 1 {
                    if model.ids.contains_key(w) {
                        return Err(err(n, format!("duplicate unigram {w:?}")));
                    }
                    let id = model.words.len() as WordId;
                    model.words.push(w.to_string());
                    model.ids.insert(w.to_string(), id);
                    id
                } else {
                    *model.ids.get(w).ok_or_else(|| err(n, format!("word {w:?} is not a unigram")))?
                };
                buf.push(id);
            }
            if model.tables[o - 1].insert(key(&buf), (prob as f32, backoff as f32)).is_some() {
                return Err(err(n, format!("duplicate {o}-gram {:?}", &fields[..o])));
            }
            seen += 1;
        }
        if !ended {
            return Err(err(last, "missing \\end\\".into()));
        }
        for (name, slot) in [("<s>", 0), ("</s>", 1)] {
            match model.ids.get(name) {
                Some(&id) => {
                    if slot == 0 {
                        model.bos = id
                    } else {
                        model.eos = id
                    }
                }
                None => return Err(err(last, format!("the model has no {name} unigram"))),
            }
        }
        model.unk = match model.ids.get("<unk>") {
            Some(&id) => id,
            None => model.add_unigram("<unk>", -100.0, 0.0),
        };
        Ok(model)
    }

    /// Builds a model from n-gram entries `(words, log10 prob, log10 backoff)` of orders `1..=order`.
    /// Used by the estimator; unigrams must come first. `<unk>` is added as the reader would.
    pub(crate) fn from_entries(order: usize, entries: &[(Vec<String>, f32, f32)]) -> Result<Self, DecodeError> {
        let mut text = String::new();
        let mut counts = vec![0usize; order];
        for (w, _, _) in entries {
            counts[w.len() - 1] += 1;
        }
        text.push_str("\\data\\\n");
        for (i, c) in counts.iter().enumerate() {
            let _ = writeln!(text, "ngram {}={c}", i + 1);
        }
        for o in 1..=order {
            let _ = writeln!(text, "\n\\{o}-grams:");
            for (w, p, b) in entries.iter().filter(|e| e.0.len() == o) {
                write_line(&mut text, *p, &w.iter().map(String::as_str).collect::<Vec<_>>(), *b, o < order);
            }
        }
        text.push_str("\n\\end\\\n");
        Self::from_arpa_str(&text, "<estimated>")
    }

    fn add_unigram(&mut self, w: &str, prob: f32, backoff: f32) -> WordId {
        let id = self.words.len() as WordId;
        self.words.push(w.to_string());
        self.ids.insert(w.to_string(), id);
        self.tables[0].insert(key(&[id]), (prob, backoff));
        id
    }

    /// The order `N` (longest n-gram).
    pub fn order(&self) -> usize {
        self.tables.len()
    }

    /// Number of n-grams of each order, `[count_1, …, count_N]`.
    pub fn counts(&self) -> Vec<usize> {
        self.tables.iter().map(HashMap::len).collect()
    }

    /// Number of words (unigrams, `<s>`, `</s>` and `<unk>` included).
    pub fn num_words(&self) -> usize {
        self.words.len()
    }

    /// The id of `word`, if it is a unigram.
    pub fn word_id(&self, word: &str) -> Option<WordId> {
        self.ids.get(word).copied()
    }

    /// The id of `word`, or of `<unk>` when it is not in the model.
    pub fn word_id_or_unk(&self, word: &str) -> WordId {
        self.word_id(word).unwrap_or(self.unk)
    }

    /// The string of word `id` (panics if `id` is not below [`NgramModel::num_words`]).
    pub fn word(&self, id: WordId) -> &str {
        &self.words[id as usize]
    }

    /// All words, indexed by id.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// `<s>`.
    pub fn bos(&self) -> WordId {
        self.bos
    }

    /// `</s>`.
    pub fn eos(&self) -> WordId {
        self.eos
    }

    /// `<unk>`.
    pub fn unk(&self) -> WordId {
        self.unk
    }

    /// The stored `(log10 prob, log10 backoff)` of an n-gram (oldest word first), if it is listed.
    pub fn entry(&self, ngram: &[WordId]) -> Option<(f32, f32)> {
        if ngram.is_empty() || ngram.len() > self.order() {
            return None;
        }
        self.tables[ngram.len() - 1].get(&key(ngram)).copied()
    }

    /// `log10 P(word | context)`, backing off as described in the module docs. `context` is oldest word
    /// first; only its last `N - 1` words matter. Ids not below [`NgramModel::num_words`] are treated as
    /// `<unk>`.
    pub fn log10_prob(&self, context: &[WordId], word: WordId) -> f64 {
        let n_words = self.words.len() as WordId;
        let fix = |w: WordId| if w < n_words { w } else { self.unk };
        let word = fix(word);
        let keep = context.len().min(self.order() - 1);
        let mut buf = [NO_WORD; MAX_ORDER];
        for (slot, &w) in buf.iter_mut().zip(&context[context.len() - keep..]) {
            *slot = fix(w);
        }
        let mut acc = 0.0f64;
        let mut h = &buf[..keep];
        loop {
            let mut k = [NO_WORD; MAX_ORDER];
            k[..h.len()].copy_from_slice(h);
            k[h.len()] = word;
            if let Some(&(p, _)) = self.tables[h.len()].get(&k) {
                return acc + p as f64;
            }
            if h.is_empty() {
                // Unreachable for ids that are unigrams; kept total rather than panicking.
                return acc + self.tables[0].get(&key(&[self.unk])).map_or(-100.0, |e| e.0 as f64);
            }
            if let Some(&(_, bo)) = self.tables[h.len() - 1].get(&key(h)) {
                acc += bo as f64;
            }
            h = &h[1..];
        }
    }

    /// `log10 P(word | context)` for words given as strings. Unlike the id-based query, a word missing
    /// from the model is an error ([`DecodeError::UnknownWord`]) rather than `<unk>`.
    pub fn log10_prob_words(&self, context: &[&str], word: &str) -> Result<f64, DecodeError> {
        let id = |w: &str| {
            self.word_id(w).ok_or_else(|| DecodeError::UnknownWord { word: w.to_string(), context: "score" })
        };
        let ctx = context.iter().map(|w| id(w)).collect::<Result<Vec<_>, _>>()?;
        Ok(self.log10_prob(&ctx, id(word)?))
    }

    /// `log10 P(sentence </s> | <s>)`, unknown words scored as `<unk>`.
    pub fn log10_sentence(&self, words: &[&str]) -> f64 {
        let mut ctx = vec![self.bos];
        let mut total = 0.0;
        for w in words {
            let id = self.word_id_or_unk(w);
            total += self.log10_prob(&ctx, id);
            ctx.push(id);
        }
        total + self.log10_prob(&ctx, self.eos)
    }

    /// The model as ARPA text: unigrams in id order, higher orders sorted by word ids; numbers printed
    /// with the shortest representation that reads back to the same `f32`.
    pub fn to_arpa_string(&self) -> String {
        let mut out = String::from("\\data\\\n");
        for (i, t) in self.tables.iter().enumerate() {
            let _ = writeln!(out, "ngram {}={}", i + 1, t.len());
        }
        for (i, t) in self.tables.iter().enumerate() {
            let o = i + 1;
            let _ = writeln!(out, "\n\\{o}-grams:");
            let mut keys: Vec<&Key> = t.keys().collect();
            keys.sort_unstable();
            let mut words: Vec<&str> = Vec::with_capacity(o);
            for k in keys {
                let (p, b) = t[k];
                words.clear();
                words.extend(k[..o].iter().map(|&w| self.words[w as usize].as_str()));
                write_line(&mut out, p, &words, b, o < self.order());
            }
        }
        out.push_str("\n\\end\\\n");
        out
    }

    /// Writes [`NgramModel::to_arpa_string`] to `path` atomically (a temporary file in the same
    /// directory, then a rename), so readers never see a partial model.
    pub fn write_arpa(&self, path: impl AsRef<Path>) -> Result<(), DecodeError> {
        super::estimate::write_atomic(path.as_ref(), self.to_arpa_string().as_bytes())
    }
}

fn write_line(out: &mut String, prob: f32, words: &[&str], backoff: f32, with_backoff: bool) {
    let _ = write!(out, "{}\t{}", fmt_log10(prob), words.join(" "));
    if with_backoff && backoff != 0.0 {
        let _ = write!(out, "\t{}", fmt_log10(backoff));
    }
    out.push('\n');
}

fn fmt_log10(x: f32) -> String {
    if x == f32::NEG_INFINITY {
        "-inf".to_string()
    } else {
        format!("{x}")
    }
}

fn parse_log10(
    field: Option<&str>,
    line: usize,
    err: &dyn Fn(usize, String) -> DecodeError,
) -> Result<f64, DecodeError> {
    let f = field.ok_or_else(|| err(line, "missing log10 probability".into()))?;
    let x: f64 = match f {
        "-inf" | "-Infinity" => f64::NEG_INFINITY,
        _ => f.parse().map_err(|_| err(line, format!("{f:?} is not a number")))?,
    };
    if x.is_nan() || x == f64::INFINITY {
        return Err(err(line, format!("{f:?} is not a log10 probability")));
    }
    Ok(x)
}

/// A trie over acoustic token ids of the words a language model knows, so that the beam can tell, token
/// by token, whether a partial word can still become a known word.
///
/// Node 0 is the root (the empty word). A node is a prefix of at least one word; a node that ends a word
/// carries that word's model id.
#[derive(Clone, Debug)]
pub struct Lexicon {
    children: HashMap<(u32, u32), u32>,
    word_at: Vec<Option<WordId>>,
    words: usize,
}

impl Lexicon {
    /// The lexicon of all the model's words that `vocab` can spell (every unigram except `<s>`, `</s>`
    /// and `<unk>`). Words containing whitespace or characters without a token are skipped: the acoustic
    /// model could never emit them.
    pub fn from_model(model: &NgramModel, vocab: &Vocabulary) -> Self {
        let mut lex = Lexicon::empty();
        for (id, w) in model.words().iter().enumerate() {
            let id = id as WordId;
            if id == model.bos() || id == model.eos() || id == model.unk() || w.contains(char::is_whitespace) {
                continue;
            }
            if let Ok(tokens) = vocab.encode(w) {
                lex.insert(&tokens, id);
            }
        }
        lex
    }

    /// A lexicon of the given words; each maps to its model id, or `<unk>` if the model lacks it.
    ///
    /// Errors with [`DecodeError::UnknownWord`] (context `"lexicon"`) for a word that is empty, contains
    /// whitespace, or cannot be spelled with `vocab`.
    pub fn from_words<S: AsRef<str>>(
        words: impl IntoIterator<Item = S>,
        vocab: &Vocabulary,
        model: &NgramModel,
    ) -> Result<Self, DecodeError> {
        let mut lex = Lexicon::empty();
        for w in words {
            let w = w.as_ref();
            let bad = || DecodeError::UnknownWord { word: w.to_string(), context: "lexicon" };
            if w.is_empty() || w.contains(char::is_whitespace) {
                return Err(bad());
            }
            let tokens = vocab.encode(w).map_err(|_| bad())?;
            lex.insert(&tokens, model.word_id_or_unk(w));
        }
        Ok(lex)
    }

    fn empty() -> Self {
        Lexicon { children: HashMap::new(), word_at: vec![None], words: 0 }
    }

    fn insert(&mut self, tokens: &[usize], id: WordId) {
        let mut node = 0u32;
        for &t in tokens {
            let next = self.word_at.len() as u32;
            node = *self.children.entry((node, t as u32)).or_insert_with(|| {
                self.word_at.push(None);
                next
            });
        }
        if self.word_at[node as usize].is_none() {
            self.words += 1;
            self.word_at[node as usize] = Some(id);
        }
    }

    /// The root node (the empty word).
    pub fn root(&self) -> u32 {
        0
    }

    /// The node reached from `node` by token `token`, if some word continues that way.
    pub fn child(&self, node: u32, token: usize) -> Option<u32> {
        self.children.get(&(node, token as u32)).copied()
    }

    /// The model id of the word ending at `node`, if one does.
    pub fn word_at(&self, node: u32) -> Option<WordId> {
        self.word_at.get(node as usize).copied().flatten()
    }

    /// Number of distinct words.
    pub fn num_words(&self) -> usize {
        self.words
    }
}
