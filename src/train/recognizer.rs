//! Inference with a trained model: features -> log-probabilities -> text (greedy or beam search with
//! the word n-gram LM), and corpus evaluation (CTC loss, CER, WER, per `kind`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::audio::{read_audio, Features};
use crate::decode::{
    beam_search, greedy_decode, BeamOptions, Hypothesis, LmOptions, NgramModel, OovPolicy, Vocabulary,
};
use crate::metrics::{cer, wer};
use crate::nn::{AcousticModel, Mode};
use crate::{ctc_compute, ActsView, CtcOptions, Reduction, Targets, Workspace};

use super::checkpoint::{files, load_model, ModelFile};
use super::data::{compute_features, make_batch, Corpus};
use super::error::TrainError;

/// How to turn log-probabilities into text.
#[derive(Clone, Copy, Debug)]
pub enum Decoding<'a> {
    /// Best path: the most probable class per frame, repeats merged, blanks dropped.
    Greedy,
    /// Prefix beam search of the given width, optionally with a word n-gram LM.
    Beam {
        /// Beam width (prefixes kept per frame).
        width: usize,
        /// The LM with its weight `alpha` (on natural-log LM probabilities) and word bonus `beta`.
        lm: Option<(&'a NgramModel, f64, f64)>,
    },
}

/// Default LM weight for beam search (natural-log LM probability multiplier).
pub const DEFAULT_LM_ALPHA: f64 = 0.5;
/// Default word insertion bonus for beam search with an LM (natural-log units per word).
pub const DEFAULT_LM_BETA: f64 = 1.0;

/// A loaded model ready to transcribe: config (features, CMVN, vocabulary), weights, vocabulary.
pub struct Recognizer {
    /// The model's config.
    pub config: ModelFile,
    /// The acoustic model (f32).
    pub model: AcousticModel<f32>,
    /// The output vocabulary.
    pub vocab: Vocabulary,
}

/// Log-probabilities of a batch: `data` is `(B, T, V)` batch-major, natural-log softmax of the model's
/// logits; `lengths[b]` valid frames per sequence.
pub struct LogProbs {
    /// `(B, T, V)` row-major.
    pub data: Vec<f32>,
    /// Sequences `B`.
    pub batch: usize,
    /// Padded frames `T`.
    pub time: usize,
    /// Classes `V`.
    pub classes: usize,
    /// Valid output frames per sequence.
    pub lengths: Vec<usize>,
}

impl LogProbs {
    /// The batch-major view the decoders and the CTC kernel read.
    pub fn view(&self) -> Result<ActsView<'_, f32>, TrainError> {
        Ok(ActsView::batch_major(&self.data, self.time, self.batch, self.classes)?)
    }
}

/// Replaces each frame of `(rows, classes)` logits by its log-softmax.
pub fn log_softmax_rows(data: &mut [f32], classes: usize) {
    for row in data.chunks_exact_mut(classes.max(1)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
        let lse = max + sum.ln();
        for x in row.iter_mut() {
            *x -= lse;
        }
    }
}

impl Recognizer {
    /// Loads `config.json` and `weights` (e.g. `model.safetensors`) from a run directory.
    pub fn load(dir: &Path, weights: &str) -> Result<Recognizer, TrainError> {
        let (config, model) = load_model(dir, weights)?;
        let vocab = config.vocab(&dir.join(files::CONFIG))?;
        Ok(Recognizer { config, model, vocab })
    }

    /// Features of an audio file (decoded, resampled to the model's rate), not yet normalised.
    pub fn features_of_file(&self, path: &Path) -> Result<Features, TrainError> {
        let audio =
            read_audio(path).map_err(|source| TrainError::Audio { path: path.to_path_buf(), source })?;
        let mut fbank = self.config.features.fbank()?;
        compute_features(&mut fbank, &audio.samples, path)
    }

    /// Runs the model (evaluation mode) on un-normalised features and returns log-probabilities.
    pub fn log_probs(&mut self, features: Vec<Features>) -> Result<LogProbs, TrainError> {
        let batch = make_batch(features, &self.config.cmvn, None, Path::new("<batch>"))?;
        let lengths = self.model.output_lengths(batch.lengths());
        let out = self.model.forward(&batch, Mode::Eval)?;
        let (b, t, v) = out.shape();
        let mut data = out.into_data();
        log_softmax_rows(&mut data, v);
        Ok(LogProbs { data, batch: b, time: t, classes: v, lengths })
    }

    /// Decodes log-probabilities into one hypothesis per sequence.
    pub fn decode(&self, lp: &LogProbs, decoding: Decoding<'_>) -> Result<Vec<Hypothesis>, TrainError> {
        let view = lp.view()?;
        match decoding {
            Decoding::Greedy => Ok(greedy_decode(&view, &lp.lengths, &self.vocab)?),
            Decoding::Beam { width, lm } => {
                let lm = lm.map(|(model, alpha, beta)| LmOptions {
                    model,
                    lexicon: None,
                    alpha,
                    beta,
                    oov: OovPolicy::Penalize(-10.0),
                });
                let options = BeamOptions { beam_width: width, lm, ..BeamOptions::default() };
                let hyps = beam_search(&view, &lp.lengths, &self.vocab, &options)?;
                Ok(hyps
                    .into_iter()
                    .map(|mut h| {
                        if h.is_empty() {
                            // No prefix survived (possible only with pruning): an empty transcript.
                            Hypothesis {
                                tokens: Vec::new(),
                                text: String::new(),
                                token_spans: Vec::new(),
                                word_spans: Vec::new(),
                                acoustic: f64::NEG_INFINITY,
                                lm: 0.0,
                                bonus: 0.0,
                                total: f64::NEG_INFINITY,
                            }
                        } else {
                            h.swap_remove(0)
                        }
                    })
                    .collect())
            }
        }
    }
}

/// Error rates of one group of utterances.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Utterances.
    pub utterances: usize,
    /// Character error rate (pooled edits / reference characters).
    pub cer: f64,
    /// Word error rate (pooled edits / reference words).
    pub wer: f64,
    /// Word edits (substitutions + deletions + insertions): the numerator of `wer`.
    pub word_errors: usize,
    /// Reference words: the denominator of `wer`.
    pub words: usize,
}

/// The result of evaluating a corpus.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EvalReport {
    /// Mean CTC loss per utterance (PyTorch's mean reduction: loss / target length, averaged).
    pub loss: f64,
    /// Over all utterances.
    pub all: Rates,
    /// Per manifest `kind` (e.g. `digits`, `sentence`).
    pub by_kind: BTreeMap<String, Rates>,
    /// Per manifest `speaker` (e.g. `espeak:en-us+m3`); utterances without one are left out.
    pub by_speaker: BTreeMap<String, Rates>,
    /// The hypotheses, in corpus order.
    pub hypotheses: Vec<String>,
}

fn rates(refs: &[&str], hyps: &[&str]) -> Result<Rates, TrainError> {
    let c = cer(refs, hyps)
        .map_err(|e| TrainError::InvalidOption { option: "evaluation", reason: e.to_string() })?;
    let w = wer(refs, hyps)
        .map_err(|e| TrainError::InvalidOption { option: "evaluation", reason: e.to_string() })?;
    Ok(Rates {
        utterances: refs.len(),
        cer: c.rate,
        wer: w.rate,
        word_errors: w.total.errors(),
        words: w.total.reference_len,
    })
}

/// [`Rates`] of each group of utterances that `key` names (those it gives no name are left out).
fn rates_by<'a>(
    refs: &[&str],
    hyps: &[&str],
    keys: impl Iterator<Item = Option<&'a str>>,
) -> Result<BTreeMap<String, Rates>, TrainError> {
    let mut groups: BTreeMap<&str, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
    for ((r, h), k) in refs.iter().zip(hyps).zip(keys) {
        if let Some(k) = k {
            let g = groups.entry(k).or_default();
            g.0.push(r);
            g.1.push(h);
        }
    }
    groups.into_iter().map(|(k, (r, h))| Ok((k.to_string(), rates(&r, &h)?))).collect()
}

/// Evaluates `rec` on `corpus` whose (un-normalised) features are `features` (corpus order), in
/// length-sorted batches of at most `max_frames` padded frames.
pub fn evaluate(
    rec: &mut Recognizer,
    corpus: &Corpus,
    features: &[Features],
    decoding: Decoding<'_>,
    max_frames: usize,
) -> Result<EvalReport, TrainError> {
    let n = corpus.utterances.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| features[i].frames);
    let mut hyps = vec![String::new(); n];
    let mut loss_sum = 0.0f64;
    let mut ws = Workspace::new();
    let opts = CtcOptions {
        input: crate::InputKind::LogProbs,
        reduction: Reduction::None,
        zero_infinity: true,
        ..CtcOptions::default()
    };
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && (end + 1 - start) * features[order[end]].frames <= max_frames {
            end += 1;
        }
        let idx = &order[start..end];
        let lp = rec.log_probs(idx.iter().map(|&i| features[i].clone()).collect())?;
        let labels: Vec<u32> =
            idx.iter().flat_map(|&i| corpus.utterances[i].labels.iter().copied()).collect();
        let lens: Vec<u32> = idx.iter().map(|&i| corpus.utterances[i].labels.len() as u32).collect();
        let in_lens: Vec<u32> = lp.lengths.iter().map(|&l| l as u32).collect();
        let mut losses = vec![0.0f32; idx.len()];
        ctc_compute(
            &lp.view()?,
            &Targets::Concatenated { labels: &labels, lengths: &lens },
            &in_lens,
            &mut losses,
            None,
            &opts,
            &mut ws,
        )?;
        for (&l, &tl) in losses.iter().zip(&lens) {
            loss_sum += f64::from(l) / f64::from(tl.max(1));
        }
        for (h, &i) in rec.decode(&lp, decoding)?.into_iter().zip(idx) {
            hyps[i] = h.text;
        }
        start = end;
    }
    let refs: Vec<&str> = corpus.utterances.iter().map(|u| u.text.as_str()).collect();
    let hs: Vec<&str> = hyps.iter().map(String::as_str).collect();
    let all = rates(&refs, &hs)?;
    let by_kind = rates_by(&refs, &hs, corpus.utterances.iter().map(|u| u.kind.as_deref()))?;
    let by_speaker = rates_by(&refs, &hs, corpus.utterances.iter().map(|u| u.speaker.as_deref()))?;
    Ok(EvalReport { loss: loss_sum / n.max(1) as f64, all, by_kind, by_speaker, hypotheses: hyps })
}
