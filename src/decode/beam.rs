//! CTC prefix beam search, with an optional word-level n-gram language model, lexicon constraint and
//! hotword boosts.
//!
//! Each prefix (labelling so far) carries two acoustic log-probabilities: `pb`, the mass of the paths
//! that spell it and end in a blank, and `pnb`, of those that end in its last token. From frame `t - 1`
//! to `t`, with `lp` the frame's log-probabilities and `c` a token:
//!
//! ```text
//! prefix      <- blank:         pb'  += (pb + pnb) * lp[blank]
//! prefix      <- last token c:  pnb' += pnb * lp[c]          (a repeat merges into the same token)
//! prefix + c  <- c != last:     pnb' += (pb + pnb) * lp[c]
//! prefix + c  <- c == last:     pnb' += pb * lp[c]           (a repeated token needs a blank between)
//! ```
//!
//! (products and sums in log space). Prefixes live in an arena trie: a node is `(parent, token)`, found
//! through a hash map, so equal prefixes reached by different paths merge by node id and no strings are
//! built during the search. The beam keeps the `beam_width` prefixes with the best
//! `ln(e^pb + e^pnb) + lm + bonus`.
//!
//! Per-frame pruning: only the `top_k` most probable classes of the frame, and of those only the ones
//! within `prune_gap` (natural log) of the frame's best, are tried as *new* tokens. Staying on a prefix
//! (through the blank, or by repeating its last token) is always scored, so kept prefixes keep exact
//! probabilities. Beam pruning: after each frame, prefixes scoring more than `beam_prune` below the
//! best prefix are dropped even if the beam has room (on peaked posteriors a wide beam otherwise fills
//! up with prefixes of negligible probability, and every one of them is extended by every token).
//! With `top_k = usize::MAX` and both gaps infinite the search is exact up to the beam width.
//!
//! Language model (natural-log units throughout): when a word is completed — a separator or word-start
//! token follows a non-empty word, or the utterance ends — the prefix gains
//! `alpha * ln P_LM(word | previous words) + beta`; at the end of the utterance it also gains
//! `alpha * ln P_LM(</s> | words)`. The LM history starts at `<s>`. A word the lexicon does not contain
//! is scored as `<unk>`. Partial words are checked against the lexicon trie token by token: the moment a
//! partial word stops being the prefix of any lexicon word (or a word ends that is only a prefix of
//! lexicon words), the prefix is penalised once by [`OovPolicy::Penalize`]'s amount, or dropped with
//! [`OovPolicy::Prune`].
//!
//! Hotwords: when a word boundary (as above) completes a hotword phrase — the tokens just before the
//! boundary spell the phrase, and the phrase starts at the utterance start, after a separator or with a
//! word-start token — its weight is added. Boosts apply on completion only (no partial credit while the
//! phrase is being spelled).

use rayon::prelude::*;

use super::lm::{Lexicon, NgramModel, WordId, MAX_ORDER};
use super::{
    log_add, validate_batch, words_from_spans, DecodeError, FastMap, Hypothesis, SeqView, TokenSpan,
    Vocabulary,
};
use crate::align::viterbi;
use crate::buffer::{ActsView, Index};
use crate::float::Float;

/// What happens to a prefix whose partial word leaves the lexicon.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OovPolicy {
    /// Add this (natural-log, `<= 0`) amount to the prefix's score once per such word; the word is later
    /// scored by the LM as `<unk>`.
    Penalize(f64),
    /// Drop the prefix: only lexicon words can be output.
    Prune,
}

/// The language model part of a beam search.
#[derive(Clone, Copy, Debug)]
pub struct LmOptions<'a> {
    /// The n-gram model.
    pub model: &'a NgramModel,
    /// The words partial words are checked against; `None` builds [`Lexicon::from_model`] once per call.
    pub lexicon: Option<&'a Lexicon>,
    /// Weight of the LM's natural-log probability, `>= 0`.
    pub alpha: f64,
    /// Bonus per completed word (natural log units); positive values favour more words.
    pub beta: f64,
    /// Treatment of partial words outside the lexicon.
    pub oov: OovPolicy,
}

/// A word or phrase whose completion adds `weight` to a prefix's score.
#[derive(Clone, Debug, PartialEq)]
pub struct Hotword {
    tokens: Vec<usize>,
    /// Added (natural log units) each time the phrase is completed.
    pub weight: f64,
}

impl Hotword {
    /// `phrase` (words separated by whitespace) spelled with `vocab`; errors with
    /// [`DecodeError::UnknownWord`] (context `"hotword"`) if it is empty or cannot be spelled, or its
    /// weight is not finite.
    pub fn new(phrase: &str, weight: f64, vocab: &Vocabulary) -> Result<Self, DecodeError> {
        let bad = || DecodeError::UnknownWord { word: phrase.to_string(), context: "hotword" };
        let tokens = vocab.encode(phrase).map_err(|_| bad())?;
        if tokens.is_empty() || !weight.is_finite() {
            return Err(bad());
        }
        Ok(Hotword { tokens, weight })
    }

    /// The phrase's token ids.
    pub fn tokens(&self) -> &[usize] {
        &self.tokens
    }
}

/// Options of [`beam_search`].
#[derive(Clone, Debug)]
pub struct BeamOptions<'a> {
    /// Prefixes kept after each frame, `>= 1`.
    pub beam_width: usize,
    /// Hypotheses returned per sequence, `>= 1` (fewer if fewer prefixes survive).
    pub n_best: usize,
    /// Classes per frame tried as new tokens (the most probable ones), `>= 1`; `usize::MAX` for all.
    pub top_k: usize,
    /// Classes more than this below the frame's best log-probability are not tried as new tokens;
    /// `>= 0`, `f64::INFINITY` to disable.
    pub prune_gap: f64,
    /// Prefixes whose score is more than this below the frame's best prefix are dropped; `>= 0`,
    /// `f64::INFINITY` to keep every prefix the width allows.
    pub beam_prune: f64,
    /// Optional language model.
    pub lm: Option<LmOptions<'a>>,
    /// Hotwords and phrases to boost.
    pub hotwords: &'a [Hotword],
}

impl Default for BeamOptions<'_> {
    /// Width 32, 1-best, top 40 classes, token gap 10 (a factor e^-10), beam prune 10, no LM, no
    /// hotwords.
    fn default() -> Self {
        BeamOptions {
            beam_width: 32,
            n_best: 1,
            top_k: 40,
            prune_gap: 10.0,
            beam_prune: 10.0,
            lm: None,
            hotwords: &[],
        }
    }
}

impl BeamOptions<'_> {
    fn check(&self) -> Result<(), DecodeError> {
        let bad = |option: &'static str, reason: &str| {
            Err(DecodeError::InvalidOption { option, reason: reason.to_string() })
        };
        if self.beam_width == 0 {
            return bad("beam_width", "must be at least 1");
        }
        if self.n_best == 0 {
            return bad("n_best", "must be at least 1");
        }
        if self.top_k == 0 {
            return bad("top_k", "must be at least 1");
        }
        if self.prune_gap.is_nan() || self.prune_gap < 0.0 {
            return bad("prune_gap", "must be >= 0 (use infinity to disable)");
        }
        if self.beam_prune.is_nan() || self.beam_prune < 0.0 {
            return bad("beam_prune", "must be >= 0 (use infinity to disable)");
        }
        if let Some(lm) = &self.lm {
            if !(lm.alpha.is_finite() && lm.alpha >= 0.0) {
                return bad("alpha", "must be finite and >= 0");
            }
            if !lm.beta.is_finite() {
                return bad("beta", "must be finite");
            }
            if let OovPolicy::Penalize(p) = lm.oov {
                if !(p.is_finite() && p <= 0.0) {
                    return bad("oov", "the penalty must be finite and <= 0");
                }
            }
        }
        Ok(())
    }
}

/// Prefix beam search over every sequence of a batch; returns per sequence up to `n_best` hypotheses,
/// best `total` first. Hypotheses are distinct labellings; two may still share a text (`"cat"` and
/// `"cat "` differ by a trailing separator token).
///
/// `log_probs`: `(T, B, V)` natural-log probabilities, `V == vocab.len()`; `input_lengths[b] <= T`.
/// Token and word spans of each hypothesis come from the Viterbi alignment of its labelling (the best
/// single path that spells it), so they are exact frame boundaries of that path. Sequences run in
/// parallel; per sequence, all search memory is allocated once and reused across frames.
pub fn beam_search<F: Float, L: Index>(
    log_probs: &ActsView<'_, F>,
    input_lengths: &[L],
    vocab: &Vocabulary,
    options: &BeamOptions<'_>,
) -> Result<Vec<Vec<Hypothesis>>, DecodeError> {
    options.check()?;
    let seqs = validate_batch(log_probs, input_lengths, vocab.len())?;
    let owned_lexicon;
    let lm = match &options.lm {
        Some(lm) => {
            let lexicon = match lm.lexicon {
                Some(l) => l,
                None => {
                    owned_lexicon = Lexicon::from_model(lm.model, vocab);
                    &owned_lexicon
                }
            };
            Some(LmCtx { model: lm.model, lexicon, alpha_ln10: lm.alpha * core::f64::consts::LN_10, lm })
        }
        None => None,
    };
    let max_word_gain = options.lm.as_ref().map_or(0.0, |lm| lm.beta.max(0.0))
        + options.hotwords.iter().map(|h| h.weight.max(0.0)).sum::<f64>();
    let char_lower_offset = match &options.lm {
        None => Some(0.0),
        Some(LmOptions { oov: OovPolicy::Penalize(p), .. }) => Some(*p),
        Some(LmOptions { oov: OovPolicy::Prune, .. }) => None,
    };
    let ctx = SearchCtx { max_word_gain, char_lower_offset, vocab, options, lm };
    seqs.par_iter().map(|s| ctx.search(s)).collect()
}

struct LmCtx<'a> {
    model: &'a NgramModel,
    lexicon: &'a Lexicon,
    /// `alpha * ln 10`: converts log10 LM scores to weighted natural logs.
    alpha_ln10: f64,
    lm: &'a LmOptions<'a>,
}

struct SearchCtx<'a> {
    /// The most a word boundary can add to a prefix's score: a positive `beta` plus every positive
    /// hotword weight (LM log-probabilities and penalties only subtract).
    max_word_gain: f64,
    /// The least a token that ends no word can change a prefix's LM score and bonuses by (the
    /// out-of-lexicon penalty, or 0), or `None` when such a prefix may be pruned outright.
    char_lower_offset: Option<f64>,
    vocab: &'a Vocabulary,
    options: &'a BeamOptions<'a>,
    lm: Option<LmCtx<'a>>,
}

const ROOT: u32 = 0;
const NO_TOKEN: u32 = u32::MAX;
/// Lexicon state of a partial word that left the lexicon.
const OFF_LEXICON: u32 = u32::MAX;

/// A prefix in the arena. Everything the LM needs is a function of the prefix, so it is computed once,
/// when the node is created.
#[derive(Clone, Copy)]
struct Node {
    parent: u32,
    token: u32,
    /// The last `N - 1` completed words (oldest first), `<s>` at the start.
    history: [WordId; MAX_ORDER - 1],
    history_len: u8,
    /// Lexicon node of the partial word, or [`OFF_LEXICON`].
    lex: u32,
    /// Tokens in the partial word (0 right after a separator or at the start).
    word_len: u32,
    /// Weighted LM log-probability of the completed words.
    lm: f64,
    /// Word bonuses, hotword boosts and out-of-lexicon penalties.
    bonus: f64,
    /// Pruned by [`OovPolicy::Prune`].
    dead: bool,
}

struct Arena {
    nodes: Vec<Node>,
    children: FastMap<(u32, u32), u32>,
}

/// A scored extension of beam entry `entry` by `token`, before the arena is touched.
struct Ext {
    /// Upper bound on the new prefix's score; `+inf` for prefixes already in the beam.
    upper: f64,
    entry: u32,
    token: u32,
    /// Acoustic log-mass the extension brings.
    ac: f64,
    /// The prefix's node if it is already in the beam, else [`NO_TOKEN`].
    existing: u32,
}

#[derive(Clone, Copy)]
struct Entry {
    node: u32,
    pb: f64,
    pnb: f64,
    /// `ln(e^pb + e^pnb) + lm + bonus`, set once the frame's mass has all arrived.
    score: f64,
}

impl Entry {
    fn acoustic(&self) -> f64 {
        log_add(self.pb, self.pnb)
    }
}

impl SearchCtx<'_> {
    fn root(&self) -> Node {
        let mut history = [0; MAX_ORDER - 1];
        let mut history_len = 0;
        if let Some(lm) = &self.lm {
            if lm.model.order() > 1 {
                history[0] = lm.model.bos();
                history_len = 1;
            }
        }
        Node {
            parent: NO_TOKEN,
            token: NO_TOKEN,
            history,
            history_len,
            lex: 0,
            word_len: 0,
            lm: 0.0,
            bonus: 0.0,
            dead: false,
        }
    }

    /// Scores the completion of the partial word of `node` (whose last token is `last_node`'s), updating
    /// the node's LM history, LM score and bonuses.
    fn complete_word(&self, arena: &Arena, node: &mut Node, last_node: u32) {
        if node.word_len == 0 {
            return;
        }
        if let Some(lm) = &self.lm {
            let word = if node.lex == OFF_LEXICON { None } else { lm.lexicon.word_at(node.lex) };
            if word.is_none() && node.lex != OFF_LEXICON {
                // A lexicon prefix that is not itself a word: out of lexicon after all, and not yet
                // penalised (that happens when a partial word leaves the trie).
                self.apply_oov(node, lm);
            }
            let word = word.unwrap_or(lm.model.unk());
            let h = &node.history[..node.history_len as usize];
            node.lm += lm.alpha_ln10 * lm.model.log10_prob(h, word);
            node.bonus += lm.lm.beta;
            push_history(node, word, lm.model.order());
        }
        node.bonus += self.hotword_bonus(arena, last_node);
        node.word_len = 0;
        node.lex = 0;
    }

    fn apply_oov(&self, node: &mut Node, lm: &LmCtx<'_>) {
        match lm.lm.oov {
            OovPolicy::Penalize(p) => node.bonus += p,
            OovPolicy::Prune => node.dead = true,
        }
    }

    /// The boosts of the hotwords that the tokens ending at `last_node` complete.
    fn hotword_bonus(&self, arena: &Arena, last_node: u32) -> f64 {
        let sep = self.vocab.separator().map(|s| s as u32);
        let mut bonus = 0.0;
        'next: for hw in self.options.hotwords {
            let mut n = last_node;
            for &tok in hw.tokens.iter().rev() {
                if n == ROOT || n == NO_TOKEN || arena.nodes[n as usize].token != tok as u32 {
                    continue 'next;
                }
                n = arena.nodes[n as usize].parent;
            }
            // The phrase must start a word: at the utterance's start, after a separator, or with a
            // word-start token (encoded phrases begin with one whenever the vocabulary has them).
            let starts_word = hw.tokens.first().is_some_and(|&t| self.vocab.is_word_start(t));
            if n == ROOT || Some(arena.nodes[n as usize].token) == sep || starts_word {
                bonus += hw.weight;
            }
        }
        bonus
    }

    fn child(&self, arena: &mut Arena, parent: u32, token: usize) -> u32 {
        if let Some(&c) = arena.children.get(&(parent, token as u32)) {
            return c;
        }
        let mut node = arena.nodes[parent as usize];
        node.parent = parent;
        node.token = token as u32;
        if Some(token) == self.vocab.separator() {
            self.complete_word(arena, &mut node, parent);
        } else {
            if self.vocab.is_word_start(token) {
                // The previous word ends where this one begins; the new word starts at the trie's root.
                self.complete_word(arena, &mut node, parent);
            }
            node.word_len += 1;
            if let Some(lm) = &self.lm {
                if node.lex != OFF_LEXICON {
                    match lm.lexicon.child(node.lex, token) {
                        Some(next) => node.lex = next,
                        None => {
                            node.lex = OFF_LEXICON;
                            self.apply_oov(&mut node, lm);
                        }
                    }
                }
            }
        }
        let id = arena.nodes.len() as u32;
        arena.nodes.push(node);
        arena.children.insert((parent, token as u32), id);
        id
    }

    /// Final score parts of a prefix: completes a trailing word and adds `</s>`.
    fn finish(&self, arena: &Arena, node_id: u32) -> Option<(f64, f64)> {
        let mut node = arena.nodes[node_id as usize];
        self.complete_word(arena, &mut node, node_id);
        if node.dead {
            return None;
        }
        if let Some(lm) = &self.lm {
            let h = &node.history[..node.history_len as usize];
            node.lm += lm.alpha_ln10 * lm.model.log10_prob(h, lm.model.eos());
        }
        Some((node.lm, node.bonus))
    }

    fn search<F: Float>(&self, seq: &SeqView<'_, F>) -> Result<Vec<Hypothesis>, DecodeError> {
        let opts = self.options;
        let blank = self.vocab.blank();
        let v = seq.classes;
        let mut arena = Arena { nodes: vec![self.root()], children: FastMap::default() };
        let mut beam = vec![Entry { node: ROOT, pb: 0.0, pnb: f64::NEG_INFINITY, score: 0.0 }];
        let mut next: Vec<Entry> = Vec::with_capacity(opts.beam_width * 4);
        let mut slot: FastMap<u32, usize> = FastMap::default();
        let mut frame: Vec<(f64, usize)> = Vec::with_capacity(v);
        let mut cands: Vec<(usize, f64)> = Vec::with_capacity(v);
        let mut scratch: Vec<f64> = Vec::with_capacity(opts.beam_width * (v + 1));
        let mut exts: Vec<Ext> = Vec::with_capacity(opts.beam_width * v);
        let mut in_beam: FastMap<(u32, u32), u32> = FastMap::default();
        let separator = self.vocab.separator();
        let k = opts.top_k.min(v);

        for t in 0..seq.len {
            frame.clear();
            frame.extend((0..v).map(|c| (seq.at(t, c), c)));
            // Descending log-probability; NaN was rejected at the boundary, so the order is total.
            let by_prob = |a: &(f64, usize), b: &(f64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
            if k < v {
                frame.select_nth_unstable_by(k - 1, by_prob);
                frame.truncate(k);
            }
            let best = frame.iter().map(|x| x.0).fold(f64::NEG_INFINITY, f64::max);
            cands.clear();
            cands.extend(
                frame
                    .iter()
                    .filter(|&&(lp, c)| c != blank && lp > f64::NEG_INFINITY && lp >= best - opts.prune_gap)
                    .map(|&(lp, c)| (c, lp)),
            );
            let lp_blank = seq.at(t, blank);

            next.clear();
            slot.clear();
            scratch.clear();
            // Beam prefixes by (parent, token): an extension that lands on one of them merges into a
            // prefix that is already in the next beam. Small and cache-hot, unlike the arena's map.
            in_beam.clear();
            for e in &beam {
                let n = &arena.nodes[e.node as usize];
                if n.token != NO_TOKEN {
                    in_beam.insert((n.parent, n.token), e.node);
                }
            }
            // Pass 1: every kept prefix stays, through the blank or by repeating its last token.
            for e in &beam {
                let n = &arena.nodes[e.node as usize];
                let pnb =
                    if n.token != NO_TOKEN { e.pnb + seq.at(t, n.token as usize) } else { f64::NEG_INFINITY };
                let pb = e.acoustic() + lp_blank;
                scratch.push(log_add(pb, pnb) + n.lm + n.bonus);
                add(&mut next, &mut slot, e.node, pb, pnb);
            }
            // Pass 2a: score every extension without touching the arena. New prefixes get an upper
            // bound on their score (the most a word boundary can add) and, where known, a lower bound.
            exts.clear();
            for (i, e) in beam.iter().enumerate() {
                let total = e.acoustic();
                let parent = &arena.nodes[e.node as usize];
                let (last, base) = (parent.token, parent.lm + parent.bonus);
                for &(c, lpc) in &cands {
                    let ac = if c as u32 == last { e.pb } else { total } + lpc;
                    if ac == f64::NEG_INFINITY {
                        continue;
                    }
                    if let Some(&id) = in_beam.get(&(e.node, c as u32)) {
                        exts.push(Ext {
                            upper: f64::INFINITY,
                            entry: i as u32,
                            token: c as u32,
                            ac,
                            existing: id,
                        });
                        continue;
                    }
                    // A separator or word-start token may complete a word: up to `max_word_gain` more,
                    // and no lower bound (the LM's log-probability of the word is unbounded below).
                    let upper = if Some(c) == separator || self.vocab.is_word_start(c) {
                        ac + base + self.max_word_gain
                    } else {
                        if let Some(p) = self.char_lower_offset {
                            scratch.push(ac + base + p);
                        }
                        ac + base
                    };
                    exts.push(Ext { upper, entry: i as u32, token: c as u32, ac, existing: NO_TOKEN });
                }
            }
            // `scratch` holds lower bounds on the final scores of distinct prefixes (merging only adds
            // mass), so its beam_width-th best value is a floor for the beam after this frame: a new
            // prefix whose upper bound is below it would be pruned anyway, and is never created. The
            // search stays exact while skipping most extensions of peaked posteriors.
            // The best lower bound also bounds the best final score from below, so anything more than
            // `beam_prune` under it will be dropped by the beam prune.
            let best_lower = scratch.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let width_floor = if scratch.len() >= opts.beam_width {
                *scratch.select_nth_unstable_by(opts.beam_width - 1, |a, b| b.total_cmp(a)).1
            } else {
                f64::NEG_INFINITY
            };
            let floor = width_floor.max(best_lower - opts.beam_prune);
            // Pass 2b: apply the extensions that can matter.
            for x in &exts {
                let child = if x.existing != NO_TOKEN {
                    x.existing
                } else if x.upper >= floor {
                    self.child(&mut arena, beam[x.entry as usize].node, x.token as usize)
                } else {
                    continue;
                };
                if arena.nodes[child as usize].dead {
                    continue;
                }
                add(&mut next, &mut slot, child, f64::NEG_INFINITY, x.ac);
            }
            // Each entry's score is computed once here: recomputing it inside the selection's
            // comparisons (a log-add and two arena reads per call) dominated the search.
            for e in next.iter_mut() {
                let n = &arena.nodes[e.node as usize];
                e.score = e.acoustic() + n.lm + n.bonus;
            }
            let best_score = next.iter().map(|e| e.score).fold(f64::NEG_INFINITY, f64::max);
            let keep_above = best_score - opts.beam_prune;
            next.retain(|e| e.score > f64::NEG_INFINITY && e.score >= keep_above);
            if next.len() > opts.beam_width {
                next.select_nth_unstable_by(opts.beam_width - 1, |a, b| {
                    b.score.total_cmp(&a.score).then(a.node.cmp(&b.node))
                });
                next.truncate(opts.beam_width);
            }
            std::mem::swap(&mut beam, &mut next);
        }

        let mut finals: Vec<(f64, f64, f64, u32)> = beam
            .iter()
            .filter_map(|e| {
                let (lm, bonus) = self.finish(&arena, e.node)?;
                Some((e.acoustic(), lm, bonus, e.node))
            })
            .filter(|f| f.0 + f.1 + f.2 > f64::NEG_INFINITY)
            .collect();
        finals.sort_by(|a, b| (b.0 + b.1 + b.2).total_cmp(&(a.0 + a.1 + a.2)).then(a.3.cmp(&b.3)));
        finals.truncate(opts.n_best);
        let mut out = Vec::with_capacity(finals.len());
        for (acoustic, lm, bonus, node) in finals {
            let mut tokens = Vec::new();
            let mut n = node;
            while n != ROOT {
                tokens.push(arena.nodes[n as usize].token as usize);
                n = arena.nodes[n as usize].parent;
            }
            tokens.reverse();
            // The prefix has a path of non-zero probability (its acoustic score is finite), so the
            // alignment exists; a failure would be a bug, reported rather than hidden.
            let (_, frames) = viterbi(seq, &tokens, blank).map_err(|_| DecodeError::InvalidOption {
                option: "internal",
                reason: "a beam hypothesis could not be aligned".into(),
            })?;
            let spans: Vec<TokenSpan> = tokens
                .iter()
                .zip(frames)
                .map(|(&token, (start, end))| TokenSpan { token, start, end })
                .collect();
            out.push(Hypothesis {
                text: self.vocab.decode_text(&tokens),
                word_spans: words_from_spans(self.vocab, &spans),
                tokens,
                token_spans: spans,
                acoustic,
                lm,
                bonus,
                total: acoustic + lm + bonus,
            });
        }
        Ok(out)
    }
}

/// Adds path mass to `node`'s entry of the next beam, creating the entry on first use.
fn add(next: &mut Vec<Entry>, slot: &mut FastMap<u32, usize>, node: u32, pb: f64, pnb: f64) {
    match slot.get(&node) {
        Some(&i) => {
            let e = &mut next[i];
            e.pb = log_add(e.pb, pb);
            e.pnb = log_add(e.pnb, pnb);
        }
        None => {
            slot.insert(node, next.len());
            next.push(Entry { node, pb, pnb, score: f64::NEG_INFINITY });
        }
    }
}

fn push_history(node: &mut Node, word: WordId, order: usize) {
    let keep = order.saturating_sub(1);
    if keep == 0 {
        return;
    }
    let len = node.history_len as usize;
    if len < keep {
        node.history[len] = word;
        node.history_len += 1;
    } else {
        node.history.copy_within(1..keep, 0);
        node.history[keep - 1] = word;
    }
}
