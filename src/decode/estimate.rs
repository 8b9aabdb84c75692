//! A small n-gram estimator (orders 1 to 3) so that a corpus shipped with the crate can have a language
//! model without external tools.
//!
//! Smoothing is interpolated Witten–Bell, chosen because it needs no discount estimation (modified
//! Kneser–Ney, what KenLM's `lmplz` uses, needs counts-of-counts that tiny corpora do not populate
//! reliably) and because its interpolated form converts *exactly* to the ARPA back-off form:
//!
//! ```text
//! P1(w)     = (c(w) + U / |V|) / (N + U)                   N tokens, U distinct seen types, |V| types
//! Pn(w | h) = (c(h w) + T(h) Pn-1(w | h')) / (c(h) + T(h))  T(h) distinct words seen after h, h' = h minus
//!                                                            its oldest word; Pn = Pn-1 if c(h) = 0
//! ```
//!
//! The unigram level interpolates with the uniform distribution over the vocabulary, so `<unk>` (count
//! zero) gets a proper probability. An n-gram `(h, w)` seen in training is written with `Pn(w | h)`; the
//! back-off weight of `h` is `T(h) / (c(h) + T(h))`, which makes the back-off query reproduce `Pn` for
//! unseen words too, so every context's distribution sums to one.
//!
//! Conventions shared with KenLM: sentences are padded as `<s> w1 .. wk </s>`; `<s>` is listed as a
//! unigram with log10 probability -99 (it is never predicted) and carries a back-off weight; `</s>` is
//! predicted like a word; `<unk>` is always in the model; all numbers are log10. Unlike KenLM, n-grams
//! that start after `<s>` are not padded with extra `<s>` tokens (so the trigram context at the first
//! word is just `<s>`), and no pruning is applied.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use super::lm::NgramModel;
use super::DecodeError;

/// Options of [`estimate_ngram`].
#[derive(Clone, Debug)]
pub struct EstimateOptions {
    /// Longest n-gram, 1 to 3.
    pub order: usize,
}

impl Default for EstimateOptions {
    fn default() -> Self {
        EstimateOptions { order: 3 }
    }
}

const BOS: u32 = 0;
const EOS: u32 = 1;
const UNK: u32 = 2;

struct Counts {
    /// `ngrams[n - 1]`: counts of n-grams of order n.
    ngrams: Vec<HashMap<Vec<u32>, u64>>,
    /// Per history (orders 1..N-1): (total count of continuations, distinct continuations).
    histories: HashMap<Vec<u32>, (u64, u64)>,
    unigram_total: u64,
    unigram_types: u64,
    vocab_size: u64,
}

impl Counts {
    fn interp(&self, hist: &[u32], w: u32) -> f64 {
        if hist.is_empty() {
            let c = self.ngrams[0].get(&vec![w]).copied().unwrap_or(0) as f64;
            let u = self.unigram_types as f64;
            return (c + u / self.vocab_size as f64) / (self.unigram_total as f64 + u);
        }
        let lower = self.interp(&hist[1..], w);
        match self.histories.get(hist) {
            Some(&(total, types)) => {
                let mut g = hist.to_vec();
                g.push(w);
                let c = self.ngrams[g.len() - 1].get(&g).copied().unwrap_or(0) as f64;
                (c + types as f64 * lower) / (total as f64 + types as f64)
            }
            None => lower,
        }
    }
}

/// Estimates an interpolated Witten–Bell model (see the module docs) from `corpus`, one sentence per
/// line, words separated by whitespace; blank lines are skipped.
///
/// Errors: order outside 1..=3, no words at all, or a line using the reserved `<s>` / `</s>` (named by
/// its 1-based line number). A literal `<unk>` in the corpus counts as the unknown word.
pub fn estimate_ngram(corpus: &str, options: &EstimateOptions) -> Result<NgramModel, DecodeError> {
    let order = options.order;
    if !(1..=3).contains(&order) {
        return Err(DecodeError::Estimate { reason: format!("order {order} is not in 1..=3") });
    }
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let mut sentences: Vec<Vec<u32>> = Vec::new();
    // Ids are assigned after sorting, so that the output does not depend on hash order.
    let mut words: Vec<&str> = Vec::new();
    for (i, line) in corpus.lines().enumerate() {
        for w in line.split_whitespace() {
            if w == "<s>" || w == "</s>" {
                return Err(DecodeError::Estimate {
                    reason: format!("line {} uses the reserved token {w}", i + 1),
                });
            }
            if w != "<unk>" {
                words.push(w);
            }
        }
    }
    words.sort_unstable();
    words.dedup();
    let mut names: Vec<String> = vec!["<s>".into(), "</s>".into(), "<unk>".into()];
    for w in &words {
        ids.insert(w, names.len() as u32);
        names.push(w.to_string());
    }
    for line in corpus.lines() {
        let ws: Vec<u32> =
            line.split_whitespace().map(|w| if w == "<unk>" { UNK } else { ids[w] }).collect();
        if ws.is_empty() {
            continue;
        }
        let mut s = Vec::with_capacity(ws.len() + 2);
        s.push(BOS);
        s.extend(ws);
        s.push(EOS);
        sentences.push(s);
    }
    if sentences.is_empty() {
        return Err(DecodeError::Estimate { reason: "the corpus has no words".into() });
    }

    let mut counts = Counts {
        ngrams: vec![HashMap::new(); order],
        histories: HashMap::new(),
        unigram_total: 0,
        unigram_types: 0,
        vocab_size: names.len() as u64 - 1, // every type but <s>
    };
    for s in &sentences {
        for i in 1..s.len() {
            for n in 1..=order.min(i + 1) {
                let g = &s[i + 1 - n..=i];
                let c = counts.ngrams[n - 1].entry(g.to_vec()).or_insert(0);
                *c += 1;
                if n >= 2 {
                    let h = counts.histories.entry(g[..n - 1].to_vec()).or_insert((0, 0));
                    h.0 += 1;
                    if *c == 1 {
                        h.1 += 1;
                    }
                }
            }
        }
    }
    counts.unigram_total = counts.ngrams[0].values().sum();
    counts.unigram_types = counts.ngrams[0].len() as u64;

    let backoff = |h: &[u32]| -> f32 {
        match counts.histories.get(h) {
            Some(&(total, types)) if order > h.len() => {
                (types as f64 / (total as f64 + types as f64)).log10() as f32
            }
            _ => 0.0,
        }
    };
    let mut entries: Vec<(Vec<String>, f32, f32)> = Vec::new();
    for id in 0..names.len() as u32 {
        let p = if id == BOS { -99.0 } else { counts.interp(&[], id).log10() as f32 };
        entries.push((vec![names[id as usize].clone()], p, backoff(&[id])));
    }
    for n in 2..=order {
        let mut grams: Vec<&Vec<u32>> = counts.ngrams[n - 1].keys().collect();
        grams.sort_unstable();
        for g in grams {
            let p = counts.interp(&g[..n - 1], g[n - 1]).log10() as f32;
            entries.push((g.iter().map(|&w| names[w as usize].clone()).collect(), p, backoff(g)));
        }
    }
    NgramModel::from_entries(order, &entries)
}

/// Reads a corpus file (one sentence per line), estimates a model with [`estimate_ngram`] and writes
/// it as ARPA to `output` atomically. Returns the model.
pub fn estimate_ngram_file(
    corpus: impl AsRef<Path>,
    output: impl AsRef<Path>,
    options: &EstimateOptions,
) -> Result<NgramModel, DecodeError> {
    let corpus = corpus.as_ref();
    let text = std::fs::read_to_string(corpus)
        .map_err(|e| DecodeError::Io { path: corpus.display().to_string(), source: e })?;
    let model = estimate_ngram(&text, options)?;
    model.write_arpa(output)?;
    Ok(model)
}

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk, then renames it over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DecodeError> {
    let io = |p: &Path, e| DecodeError::Io { path: p.display().to_string(), source: e };
    let name = path.file_name().ok_or_else(|| {
        io(path, std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file"))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(path, e)
    })
}
