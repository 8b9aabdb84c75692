//! The training loop: bucketed batches, augmentation, forward, fastctc loss, backward, clipping,
//! AdamW with warm-up and cosine decay over a time (or epoch) budget, per-epoch dev evaluation,
//! checkpoints, resume, and the final test evaluation (greedy and beam search + word 3-gram LM).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::audio::{FbankConfig, Features, GlobalCmvn};
use crate::decode::{estimate_ngram, EstimateOptions, NgramModel, Vocabulary};
use crate::nn::{AcousticModel, Activation, GruModelConfig, Mode, ModelConfig};
use crate::optim::{clip_grad_norm, Adam, AdamConfig, Ema};
use crate::{
    ctc_compute, ActsView, ActsViewMut, CtcError, CtcOptions, InputKind, Reduction, Targets, Workspace,
};

use super::checkpoint::{self, files, ModelFile, TrainerState};
use super::curves::write_curves;
use super::data::{
    bucket_batches, features_of_corpus, global_cmvn, load_corpus, make_batch, rng_for, tempo_factor_for_rate,
    tempo_stretch, trim_corpus, vtlp_warp, AugmentOptions, BatchItem, Corpus, FeatureSettings, FeatureStore,
    OutputUnits, TrimSilence,
};
use super::error::{io_err, TrainError};
use super::recognizer::{
    evaluate, Decoding, EvalReport, Rates, Recognizer, DEFAULT_LM_ALPHA, DEFAULT_LM_BETA,
};

/// Everything that defines a training run; saved as `train_options.json` in the run directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Training manifest (JSON lines).
    pub train: PathBuf,
    /// Dev manifest, evaluated after every epoch (model selection by dev CER).
    pub dev: PathBuf,
    /// Test manifest, evaluated once at the end (greedy and beam + LM); `None` skips it.
    pub test: Option<PathBuf>,
    /// Training budget in minutes (training steps plus per-epoch dev evaluation); training stops at
    /// the first batch boundary past it.
    pub minutes: f64,
    /// Stop after this many epochs (whichever of budget and epochs comes first).
    pub epochs: Option<u64>,
    /// The acoustic model. Its number of output classes must be that of `units`.
    pub model: ModelConfig,
    /// The output classes: characters with a space class, or characters marked at the start of a
    /// word. Absent from the options of older runs, which used characters.
    #[serde(default)]
    pub units: OutputUnits,
    /// The intermediate CTC layer's classes when they differ from `units` (its number of classes must
    /// be the model's [`ModelConfig::inter_vocab`]); `None` (the default, and what the options of
    /// older runs read as): the same as `units`.
    #[serde(default)]
    pub inter_units: Option<OutputUnits>,
    /// Feature settings.
    pub features: FeatureSettings,
    /// Training-time augmentation.
    pub augment: AugmentOptions,
    /// Cut leading and trailing silence from the training audio (not dev or test) before anything
    /// else; `None` keeps it. Absent from the options of older runs, which did not trim.
    #[serde(default)]
    pub trim_silence: Option<TrimSilence>,
    /// Largest padded batch, in feature frames (`utterances * longest`), counted at the lengths the
    /// utterances have in that epoch, after speed and tempo perturbation (each epoch's factors are
    /// drawn before its batches are cut, so that utterances of similar perturbed length share a
    /// batch).
    pub batch_frames: usize,
    /// Most utterances per batch.
    pub max_batch: usize,
    /// Peak learning rate (after warm-up).
    pub lr: f64,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
    /// Linear warm-up length, in steps.
    pub warmup_steps: u64,
    /// AdamW's decoupled weight decay: each step multiplies every weight (biases included) by
    /// `1 - lr * weight_decay` before the Adam update.
    pub weight_decay: f64,
    /// Gradient clipping: largest global L2 norm.
    pub clip_norm: f64,
    /// Decay per step of the exponential moving average of the weights used for the dev evaluation
    /// and saved as `model.safetensors` (bias-corrected, see [`Ema`]); 0 turns it off (dev
    /// evaluation and the saved model then use the raw weights). Absent from the options of older
    /// runs, which had none.
    #[serde(default)]
    pub ema_decay: f64,
    /// With a model whose output layer splits frames (`upsample` > 1): the first epoch (1-based)
    /// trained on the split frames. Earlier epochs train CTC on the subsampled frames with the shared
    /// part of the output layer ([`crate::nn::SubframeLinear`]), which leaves CTC's initial all-blank
    /// plateau sooner; the per-sub-frame offsets start from zero when the split begins. 1 splits from
    /// the first step. Absent from the options of older runs, which split from the start.
    #[serde(default = "first_epoch")]
    pub split_from_epoch: u64,
    /// Weight `w` of the intermediate CTC loss when the model has an auxiliary output layer
    /// ([`GruModelConfig::inter_ctc_layer`]): the step minimises `(1 - w) L + w L_inter`, and the
    /// reported training loss is `L` (comparable with the dev loss). 0 trains without the auxiliary
    /// loss. Absent from the options of older runs, which had none.
    #[serde(default = "default_inter_ctc_weight")]
    pub inter_ctc_weight: f64,
    /// Seed of initialisation, shuffling, augmentation and dropout.
    pub seed: u64,
    /// List and skip unreadable audio files instead of stopping.
    pub skip_bad: bool,
    /// Use at most this many training utterances (the first ones), e.g. for quick tests.
    pub max_train_utterances: Option<usize>,
    /// Stop, as if interrupted, once this many optimizer steps are done, keeping the schedule of the
    /// full run (checkpoints are written; no test evaluation). For testing `--resume`.
    #[serde(default)]
    pub pause_after_steps: Option<u64>,
    /// Also save the weights evaluated on dev after every epoch (the average with `ema_decay`, like
    /// `model.safetensors`) as `epoch-NNN.safetensors` ([`files::epoch_weights`]; about 8 MB each for
    /// the default model), for choosing or averaging checkpoints after the run and for per-epoch
    /// analysis. It changes nothing in training; a resumed run takes it from the new options, as it
    /// does `progress`. Absent from the options of older runs, which kept none.
    #[serde(default)]
    pub keep_epochs: bool,
    /// Beam width of the final beam-search evaluation (0 skips it).
    pub beam_width: usize,
    /// Show progress bars (otherwise plain log lines).
    pub progress: bool,
}

fn first_epoch() -> u64 {
    1
}

/// The weight Lee and Watanabe (2021) found best for intermediate CTC.
fn default_inter_ctc_weight() -> f64 {
    0.3
}

/// The default training budget of `fastctc train`, in minutes. The README's main job must finish
/// within 15 minutes on the 2-core machine *including* the release build from a fresh clone (about
/// 2 minutes idle, up to 4 when the machine is shared) and the features and test decoding (about
/// 15 s): 11 minutes leaves about 2 minutes to spare on an idle machine. The budget does not change
/// what an epoch computes, only how many epochs fit.
pub const DEFAULT_BUDGET_MINUTES: f64 = 11.0;

impl Default for TrainOptions {
    /// The defaults of `fastctc train`: the shipped corpus, an 11-minute budget
    /// ([`DEFAULT_BUDGET_MINUTES`]), the default model.
    fn default() -> Self {
        TrainOptions {
            train: PathBuf::from("data/train.jsonl"),
            dev: PathBuf::from("data/dev.jsonl"),
            test: Some(PathBuf::from("data/test.jsonl")),
            minutes: DEFAULT_BUDGET_MINUTES,
            epochs: None,
            model: default_model(),
            units: OutputUnits::default(),
            inter_units: None,
            features: FeatureSettings { num_mel_bins: DEFAULT_MEL_BINS, ..FeatureSettings::default() },
            augment: AugmentOptions::default(),
            trim_silence: Some(TrimSilence::default()),
            batch_frames: 6000,
            max_batch: 64,
            // 3e-3 against 2e-3: dev CER after 12 epochs 13.0 % against 14.7 % (docs/TRAINING.md).
            lr: 3e-3,
            min_lr_ratio: 0.05,
            warmup_steps: 100,
            // 0.1 against 0.01: best dev CER 5.87-6.07 % against 6.63-6.95 %, test greedy sentences
            // CER 10.6 % against 11.5-12.0 % over three seeds at 35 epochs; 0.3 was as good, 1.0
            // worse (docs/TRAINING.md, "Weight decay").
            weight_decay: 0.1,
            clip_norm: 5.0,
            ema_decay: 0.0,
            // One epoch at 40 ms first: dev CER 10.07 % against 10.71 % at the end of the idle
            // 12-minute run, test greedy digits WER 1.03 % against 1.18 % (docs/TRAINING.md).
            split_from_epoch: 2,
            inter_ctc_weight: default_inter_ctc_weight(),
            seed: 1,
            skip_bad: false,
            max_train_utterances: None,
            pause_after_steps: None,
            keep_epochs: false,
            beam_width: 16,
            progress: true,
        }
    }
}

/// Mel bins of the default features, and so the default model's input size (80 until 2026-12-08).
/// With the same seeds on one evening, 40 bins made 5, 0 and 3 greedy test digit word errors against
/// 7, 5 and 5 with 80 (5.0, 1.7, 3.6 against 6.5, 5.7, 5.3 over each run's last ten epochs), and a lower
/// greedy sentences CER in each pair; a fourth pair (seed 9) went the other way on digits, 2 against
/// 1, with beam + LM still better. A likely reason (not measured): the wider low-frequency filters
/// smooth over the harmonics of the voice's pitch, which 80 narrow ones resolve, so the features say
/// less about who speaks (docs/TRAINING.md, "More seeds, and 40 mel bins").
pub const DEFAULT_MEL_BINS: usize = 40;

/// The default architecture: two strided convolutions (kernel 3, stride 2, 192 channels; 40 ms
/// frames), three bidirectional GRU layers of 192 units per direction, no dropout, and an output
/// layer that emits two 20 ms CTC frames per 40 ms recurrent frame ([`crate::nn::SubframeLinear`];
/// 1.95 M parameters with 40 mel bins), plus self-conditioned intermediate CTC after the first GRU
/// layer (an auxiliary output layer like the main one, whose posteriors are mapped back into the second
/// layer's input; 2.00 M parameters in all). At the issue-#6 screening (12 epochs, peak learning rate
/// 3e-3) the three layers of 192 matched two layers of 256 on dev CER (13.0 % both) with a lower dev
/// loss, for about the same CPU time per epoch; the 20 ms output frames cut the greedy test digits
/// WER from 3.1 % to 1.2 % in the idle 12-minute run, because at 40 ms the fastest voices need more
/// than one label per frame, which CTC cannot emit; and at a fixed 26 epochs the intermediate CTC
/// took dev CER from about 10.0 % to 7.8 % and test greedy sentences CER from 16.6-18.1 % to 13.3 %
/// (docs/TRAINING.md).
pub fn default_model() -> ModelConfig {
    ModelConfig::Gru(GruModelConfig {
        input_dim: DEFAULT_MEL_BINS,
        vocab: 29,
        conv_layers: 2,
        conv_channels: 192,
        conv_kernel: 3,
        conv_stride: 2,
        activation: Activation::Relu,
        gru_layers: 3,
        hidden: 192,
        // None (0.1, then 0.05, until 2026-12-07). With weight decay 0.1 regularising the weights,
        // each step down let the model fit its training voices further at a dev CER within the
        // seeds' spread, and it made fewer greedy test digit errors: seeds 2-4 on one slow evening
        // made 4, 2 and 2 word errors with no dropout against 7, 7 and 5 with 0.05, and the same
        // gap over each run's last ten epochs (docs/TRAINING.md, "No dropout").
        dropout: 0.0,
        upsample: 2,
        inter_ctc_layer: 1,
        self_condition: true,
        factored_word_start: false,
        inter_vocab: 0,
    })
}

impl TrainOptions {
    /// Checks the ranges of the options.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |option, reason: String| Err(TrainError::InvalidOption { option, reason });
        if !(self.minutes.is_finite() && self.minutes > 0.0) {
            return bad("--minutes", format!("{} is not a positive number of minutes", self.minutes));
        }
        if self.epochs == Some(0) {
            return bad("--epochs", "must be at least 1".into());
        }
        if self.batch_frames == 0 || self.max_batch == 0 {
            return bad("--batch-frames", "batch sizes must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("--lr", format!("{} is not a positive learning rate", self.lr));
        }
        // At `lr * weight_decay >= 1` AdamW's decay factor `1 - lr * wd` would zero or flip the
        // weights every step.
        if !(self.weight_decay >= 0.0 && self.lr * self.weight_decay < 1.0) {
            return bad(
                "--weight-decay",
                format!("{} is not in [0, 1 / lr) = [0, {})", self.weight_decay, 1.0 / self.lr),
            );
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad("--min-lr-ratio", format!("{} is not in [0, 1]", self.min_lr_ratio));
        }
        if self.split_from_epoch == 0 {
            return bad("--split-from-epoch", "epochs count from 1".into());
        }
        if !(0.0..1.0).contains(&self.inter_ctc_weight) {
            return bad("--inter-ctc-weight", format!("{} is not in [0, 1)", self.inter_ctc_weight));
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return bad("--ema-decay", format!("{} is not in [0, 1)", self.ema_decay));
        }
        if !(self.clip_norm.is_finite() && self.clip_norm > 0.0) {
            return bad("--clip-norm", format!("{} is not positive", self.clip_norm));
        }
        let classes = self.units.vocabulary().len();
        if self.model.vocab() != classes {
            return bad(
                "model.vocab",
                format!("{} outputs, the vocabulary has {classes}", self.model.vocab()),
            );
        }
        let inter_classes = self.inter_units.unwrap_or(self.units).vocabulary().len();
        match self.model.inter_vocab() {
            Some(v) if v != inter_classes => {
                return bad(
                    "model.inter_vocab",
                    format!("the intermediate output has {v} classes, its units {inter_classes}"),
                );
            }
            None if self.inter_units.is_some() => {
                return bad("--inter-units", "the model has no intermediate CTC layer".into());
            }
            _ => {}
        }
        if self.model.factored_word_start() && self.units != OutputUnits::WordStart {
            return bad(
                "model.factored_word_start",
                "a factored word-start output needs word-start units (--units word-start)".into(),
            );
        }
        if self.model.input_dim() != self.features.num_mel_bins {
            return bad("model.input_dim", "must equal the number of mel bins".into());
        }
        // A mask as wide as the spectrum would blank whole utterances, which teaches nothing. Checked
        // here, not with the mask counts in `AugmentOptions::validate`, since it needs the feature size.
        let widest = self.augment.freq_masks.1;
        if widest >= self.features.num_mel_bins {
            return bad(
                "--freq-masks",
                format!("masks up to {widest} bins wide; the features have {}", self.features.num_mel_bins),
            );
        }
        self.model.validate()?;
        if let Some(t) = &self.trim_silence {
            t.validate()?;
        }
        self.augment.validate()
    }

    /// Learning rate at `step` given the run's progress in `[0, 1]`: linear warm-up over
    /// `warmup_steps`, then half a cosine from `lr` to `lr * min_lr_ratio` over the progress.
    pub fn lr_at(&self, step: u64, progress: f64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let min = self.lr * self.min_lr_ratio;
        min + (self.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress.clamp(0.0, 1.0)).cos())
    }
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch (1-based, as printed).
    pub epoch: u64,
    /// Whether the epoch was cut short by the budget.
    pub partial: bool,
    /// Optimizer steps so far.
    pub step: u64,
    /// Mean training loss over the epoch's applied steps.
    pub train_loss: f64,
    /// Dev loss (mean per utterance of loss / target length).
    pub dev_loss: f64,
    /// Dev CER (greedy).
    pub dev_cer: f64,
    /// Dev WER (greedy).
    pub dev_wer: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// Training seconds used so far.
    pub train_seconds: f64,
    /// Training utterances per second over the epoch (steps only).
    pub utterances_per_s: f64,
    /// Steps skipped so far for a non-finite loss or gradient.
    pub skipped_steps: u64,
}

/// Seconds spent in each phase of the training steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepProfile {
    /// Steps measured.
    pub steps: u64,
    /// Utterances processed.
    pub utterances: u64,
    /// Feature lookup / extraction, CMVN, SpecAugment, padding.
    pub features_s: f64,
    /// Model forward pass.
    pub forward_s: f64,
    /// CTC loss and gradient (the fastctc kernel).
    pub loss_s: f64,
    /// Model backward pass.
    pub backward_s: f64,
    /// Gradient clipping and the AdamW update.
    pub optimizer_s: f64,
}

impl StepProfile {
    /// Total seconds of the measured phases.
    pub fn total_s(&self) -> f64 {
        self.features_s + self.forward_s + self.loss_s + self.backward_s + self.optimizer_s
    }
}

/// What a finished run reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TrainReport {
    /// The run directory.
    pub out_dir: PathBuf,
    /// Per-epoch metrics.
    pub epochs: Vec<EpochMetrics>,
    /// Optimizer steps taken (including skipped ones).
    pub steps: u64,
    /// Steps skipped for a non-finite loss or gradient.
    pub skipped_steps: u64,
    /// Mean training loss of every applied step, in order (for tests and plots).
    pub step_losses: Vec<f64>,
    /// Time profile of the training steps of this invocation.
    pub profile: StepProfile,
    /// Seconds spent loading audio and computing features before training.
    pub setup_seconds: f64,
    /// Test-set evaluation with greedy decoding (best model).
    pub test_greedy: Option<EvalReport>,
    /// Test-set evaluation with beam search + LM (best model).
    pub test_beam_lm: Option<EvalReport>,
    /// Test-set evaluation with beam search, no LM.
    pub test_beam: Option<EvalReport>,
}

/// Prints a line above the progress bar (or to stderr when there is none).
fn say(bar: &ProgressBar, line: &str) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

fn new_bar(show: bool, len: u64, prefix: String) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(len),
        if show && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} (eta {eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(prefix);
    bar
}

/// Prepared data of a run.
struct Data {
    train: Corpus,
    dev: Corpus,
    dev_features: Vec<Features>,
    store: FeatureStore,
    /// Nominal lengths (frames at speed 1.0) of the training utterances.
    lengths: Vec<usize>,
    /// The training transcripts spelt in the intermediate output's units, when they differ from the
    /// main output's (which are `train`'s labels).
    inter_labels: Option<Vec<Vec<u32>>>,
}

fn load_data(
    opts: &TrainOptions,
    cmvn: Option<GlobalCmvn>,
    log: &dyn Fn(&str),
) -> Result<(Data, GlobalCmvn), TrainError> {
    let vocab = opts.units.vocabulary();
    let mut train = load_corpus(&opts.train, opts.skip_bad, &vocab)?;
    if let Some(n) = opts.max_train_utterances {
        train.utterances.truncate(n.max(1));
    }
    if let Some(trim) = &opts.trim_silence {
        let cut = trim_corpus(&mut train, trim, opts.features.sample_rate);
        log(&format!("trimmed silence: {:.1}% of the training audio removed", 100.0 * cut));
    }
    let inter_labels = match opts.inter_units.filter(|&u| u != opts.units) {
        Some(units) => Some(spell_all(&train, &units.vocabulary())?),
        None => None,
    };
    let dev = load_corpus(&opts.dev, opts.skip_bad, &vocab)?;
    for (c, name) in [(&train, "train"), (&dev, "dev")] {
        for (path, why) in &c.skipped {
            log(&format!("skipped unreadable {name} audio {}: {why}", path.display()));
        }
    }
    let train_features = features_of_corpus(&opts.features, &train)?;
    let dev_features = features_of_corpus(&opts.features, &dev)?;
    let cmvn = match cmvn {
        Some(c) => c,
        None => global_cmvn(&train_features, &opts.train)?,
    };
    let lengths = train_features.iter().map(|f| f.frames).collect();
    let store = FeatureStore::new(&opts.features, train_features, &opts.augment.speeds)?;
    Ok((Data { train, dev, dev_features, store, lengths, inter_labels }, cmvn))
}

/// The labels of the utterances `batch_idx` (`of(u)` for utterance `u`), concatenated, and their
/// lengths: a batch's CTC targets.
fn concat_labels<'a>(batch_idx: &[usize], of: impl Fn(usize) -> &'a [u32]) -> (Vec<u32>, Vec<u32>) {
    let labels = batch_idx.iter().flat_map(|&u| of(u).iter().copied()).collect();
    let lens = batch_idx.iter().map(|&u| of(u).len() as u32).collect();
    (labels, lens)
}

/// Every transcript of `corpus` as class indices of `vocab`.
fn spell_all(corpus: &Corpus, vocab: &Vocabulary) -> Result<Vec<Vec<u32>>, TrainError> {
    corpus
        .utterances
        .iter()
        .map(|u| match vocab.encode(&u.text) {
            Ok(l) => Ok(l.into_iter().map(|c| c as u32).collect()),
            Err(e) => Err(TrainError::InvalidOption {
                option: "--inter-units",
                reason: format!("cannot spell {:?} of {}: {e}", u.text, u.path.display()),
            }),
        })
        .collect()
}

/// Copies every parameter value of `from` into `to` (same architecture).
fn copy_weights(from: &AcousticModel<f32>, to: &mut AcousticModel<f32>) {
    let src: Vec<Vec<f32>> = from.params().iter().map(|p| p.value().to_vec()).collect();
    for (p, v) in to.params_mut().into_iter().zip(src) {
        p.value_mut().copy_from_slice(&v);
    }
}

fn write_metrics(dir: &Path, metrics: &[EpochMetrics]) -> Result<(), TrainError> {
    let mut text = String::new();
    for m in metrics {
        let line = serde_json::to_string(m)
            .map_err(|e| TrainError::Checkpoint { path: dir.join(files::METRICS), detail: e.to_string() })?;
        text.push_str(&line);
        text.push('\n');
    }
    checkpoint::write_atomic(&dir.join(files::METRICS), text.as_bytes())?;
    write_curves(&dir.join(files::CURVES), metrics)
}

fn read_metrics(dir: &Path) -> Result<Vec<EpochMetrics>, TrainError> {
    let path = dir.join(files::METRICS);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| TrainError::Checkpoint { path: path.clone(), detail: e.to_string() })
        })
        .collect()
}

/// The name of a fresh run directory: `runs/<UTC timestamp>`.
pub fn default_run_dir() -> PathBuf {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm, in integers).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    PathBuf::from(format!("runs/{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem / 60 % 60, rem % 60))
}

/// Trains a model as `opts` says into `out_dir` (created if needed). With `resume`, `out_dir` must
/// hold a run: its saved options are used (with `opts.minutes`/`opts.epochs` as the new budget), and
/// training continues from the last checkpoint.
pub fn train(opts: &TrainOptions, out_dir: &Path, resume: bool) -> Result<TrainReport, TrainError> {
    let setup_start = Instant::now();
    let options_path = out_dir.join("train_options.json");
    let opts = if resume {
        let bytes = checkpoint::read_file(&options_path)?;
        let mut saved: TrainOptions = serde_json::from_slice(&bytes)
            .map_err(|e| TrainError::Checkpoint { path: options_path.clone(), detail: e.to_string() })?;
        saved.minutes = opts.minutes;
        saved.epochs = opts.epochs;
        saved.progress = opts.progress;
        saved.pause_after_steps = opts.pause_after_steps;
        saved.keep_epochs = opts.keep_epochs;
        saved
    } else {
        opts.clone()
    };
    opts.validate()?;
    std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    let text = serde_json::to_string_pretty(&opts)
        .map_err(|e| TrainError::Checkpoint { path: options_path.clone(), detail: e.to_string() })?;
    checkpoint::write_atomic(&options_path, text.as_bytes())?;

    let quiet = ProgressBar::hidden();
    let log = |s: &str| say(&quiet, s);
    let saved_config =
        if resume { Some(checkpoint::load_config(&out_dir.join(files::CONFIG))?) } else { None };
    log(&format!("loading {} and {} ...", opts.train.display(), opts.dev.display()));
    let (mut data, cmvn) = load_data(&opts, saved_config.as_ref().map(|c| c.cmvn.clone()), &log)?;
    let vocab = opts.units.vocabulary();
    let config = ModelFile {
        format: "fastctc-model".into(),
        version: 1,
        vocabulary: vocab.tokens().to_vec(),
        blank: vocab.blank(),
        separator: vocab.separator(),
        features: opts.features.clone(),
        cmvn: cmvn.clone(),
        model: opts.model.clone(),
        frame_shift_s: opts.features.frame_shift_ms / 1000.0 * opts.model.input_frames_per_output(),
    };
    checkpoint::save_config(&out_dir.join(files::CONFIG), &config)?;

    let mut model = AcousticModel::<f32>::new(&opts.model, opts.seed)?;
    let mut adam = Adam::new(AdamConfig { weight_decay: opts.weight_decay, ..AdamConfig::default() })?;
    let mut state = TrainerState {
        epoch: 0,
        batch_in_epoch: 0,
        step: 0,
        skipped_steps: 0,
        train_seconds: 0.0,
        best_dev_cer: f64::INFINITY,
        best_epoch: None,
        epoch_loss: (0.0, 0),
        finished: false,
    };
    let mut metrics = Vec::new();
    let mut ema = if opts.ema_decay > 0.0 { Some(Ema::new(opts.ema_decay, &model.params())?) } else { None };
    if resume {
        checkpoint::load_weights(&out_dir.join(files::LAST), &mut model)?;
        if ema.is_some() {
            ema = Some(checkpoint::load_ema(&out_dir.join(files::EMA), &model)?);
        }
        adam.load_state(checkpoint::load_optimizer(&out_dir.join(files::OPTIMIZER))?)?;
        state = checkpoint::load_state(&out_dir.join(files::STATE))?;
        state.finished = false;
        metrics = read_metrics(out_dir)?;
        log(&format!(
            "resuming {} at epoch {} batch {} (step {})",
            out_dir.display(),
            state.epoch + 1,
            state.batch_in_epoch,
            state.step
        ));
    }
    let n_params = model.num_params();
    let setup_seconds = setup_start.elapsed().as_secs_f64();
    log(&format!(
        "{} training / {} dev utterances, features in {:.1} s; model {} parameters; budget {} min{}{}",
        data.train.utterances.len(),
        data.dev.utterances.len(),
        setup_seconds,
        n_params,
        opts.minutes,
        opts.epochs.map_or(String::new(), |e| format!(", {e} epochs")),
        if opts.ema_decay > 0.0 {
            format!("; dev and model.safetensors use the weight average (decay {})", opts.ema_decay)
        } else {
            String::new()
        }
    ));

    let budget = opts.minutes * 60.0;
    let ctc_opts = CtcOptions {
        input: InputKind::Logits,
        reduction: Reduction::Mean,
        zero_infinity: true,
        ..CtcOptions::default()
    };
    let mut ws = Workspace::<f32>::new();
    let mut report = TrainReport { out_dir: out_dir.to_path_buf(), setup_seconds, ..TrainReport::default() };
    let mut profile = StepProfile::default();
    let batches_per_epoch = plan_epoch(&opts, &data, 0).1.len() as u64;

    let paused = |state: &TrainerState| opts.pause_after_steps.is_some_and(|s| state.step >= s);
    'epochs: loop {
        if opts.epochs.is_some_and(|e| state.epoch >= e) || state.train_seconds >= budget || paused(&state) {
            break;
        }
        let epoch = state.epoch;
        let (plans, batches) = plan_epoch(&opts, &data, epoch);
        // Dropout masks are drawn from a generator seeded per epoch, so that a run resumed at an
        // epoch boundary draws the same masks as an uninterrupted one.
        if state.batch_in_epoch == 0 {
            let mut fresh = AcousticModel::<f32>::new(
                &opts.model,
                opts.seed ^ (epoch + 1).wrapping_mul(0xA24B_AED4_963E_E407),
            )?;
            copy_weights(&model, &mut fresh);
            model = fresh;
        }
        model.set_output_split(epoch + 1 >= opts.split_from_epoch);
        let bar = new_bar(opts.progress, batches.len() as u64, format!("epoch {}", epoch + 1));
        bar.set_position(state.batch_in_epoch as u64);
        let mut epoch_utts = 0u64;
        let mut step_time = 0.0;
        let mut partial = false;
        for (bi, batch_idx) in batches.iter().enumerate().skip(state.batch_in_epoch) {
            if state.train_seconds >= budget || paused(&state) {
                partial = true;
                break;
            }
            let t0 = Instant::now();
            let (loss, applied) = train_step(
                &opts,
                &mut data,
                &cmvn,
                &mut model,
                &mut adam,
                ema.as_mut(),
                &mut ws,
                &ctc_opts,
                &mut state,
                &mut profile,
                &plans,
                batch_idx,
                batches_per_epoch,
            )?;
            let dt = t0.elapsed().as_secs_f64();
            state.train_seconds += dt;
            step_time += dt;
            epoch_utts += batch_idx.len() as u64;
            state.batch_in_epoch = bi + 1;
            if applied {
                state.epoch_loss.0 += loss;
                state.epoch_loss.1 += 1;
                report.step_losses.push(loss);
            }
            let progress = progress_of(&opts, &state, batches_per_epoch);
            bar.set_position((bi + 1) as u64);
            bar.set_message(format!(
                "loss {:.3} lr {:.2e} {:.1} utt/s | {:.0}/{:.0} s",
                if applied { loss } else { f64::NAN },
                opts.lr_at(state.step, progress),
                epoch_utts as f64 / step_time.max(1e-9),
                state.train_seconds,
                budget
            ));
        }
        bar.finish_and_clear();
        // Dev evaluation with the averaged weights (or the raw ones without an average); its time
        // counts against the budget. The exchange is exact and undone below, before the checkpoint.
        let eval_start = Instant::now();
        if let Some(e) = ema.as_mut() {
            e.swap(&mut model.params_mut())?;
        }
        let mut rec = Recognizer { config: config.clone(), model, vocab: vocab.clone() };
        let dev = evaluate(&mut rec, &data.dev, &data.dev_features, Decoding::Greedy, opts.batch_frames * 2)?;
        model = rec.model;
        state.train_seconds += eval_start.elapsed().as_secs_f64();
        let progress = progress_of(&opts, &state, batches_per_epoch);
        let m = EpochMetrics {
            epoch: epoch + 1,
            partial,
            step: state.step,
            train_loss: state.epoch_loss.0 / state.epoch_loss.1.max(1) as f64,
            dev_loss: dev.loss,
            dev_cer: dev.all.cer,
            dev_wer: dev.all.wer,
            lr: opts.lr_at(state.step, progress),
            train_seconds: state.train_seconds,
            utterances_per_s: epoch_utts as f64 / step_time.max(1e-9),
            skipped_steps: state.skipped_steps,
        };
        say(
            &quiet,
            &format!(
                "epoch {:>2}{}: train loss {:.3} | dev loss {:.3} CER {:.2}% WER {:.2}% | lr {:.2e} | {:.0} utt/s | {:.0} s{}",
                m.epoch,
                if partial { " (partial)" } else { "" },
                m.train_loss,
                m.dev_loss,
                100.0 * m.dev_cer,
                100.0 * m.dev_wer,
                m.lr,
                m.utterances_per_s,
                m.train_seconds,
                if m.skipped_steps > 0 { format!(" | {} skipped steps", m.skipped_steps) } else { String::new() }
            ),
        );
        if dev.all.cer < state.best_dev_cer {
            state.best_dev_cer = dev.all.cer;
            state.best_epoch = Some(epoch);
            checkpoint::save_weights(&out_dir.join(files::BEST), &model)?;
        }
        if opts.keep_epochs {
            checkpoint::save_weights(&out_dir.join(files::epoch_weights(m.epoch)), &model)?;
        }
        if let Some(e) = ema.as_mut() {
            e.swap(&mut model.params_mut())?;
        }
        metrics.push(m);
        if !partial {
            state.epoch += 1;
            state.batch_in_epoch = 0;
            state.epoch_loss = (0.0, 0);
        }
        save_checkpoint(out_dir, &model, &adam, ema.as_ref(), &state)?;
        write_metrics(out_dir, &metrics)?;
        if partial {
            break 'epochs;
        }
    }
    if paused(&state) {
        report.epochs = metrics;
        report.steps = state.step;
        report.skipped_steps = state.skipped_steps;
        report.profile = profile;
        return Ok(report);
    }
    state.finished = true;
    save_checkpoint(out_dir, &model, &adam, ema.as_ref(), &state)?;
    if !out_dir.join(files::BEST).exists() {
        if let Some(e) = ema.as_mut() {
            e.swap(&mut model.params_mut())?;
        }
        checkpoint::save_weights(&out_dir.join(files::BEST), &model)?;
    }
    report.epochs = metrics;
    report.steps = state.step;
    report.skipped_steps = state.skipped_steps;
    report.profile = profile;

    if let Some(test) = &opts.test {
        let (g, b, bl) = final_test(&opts, out_dir, test, &data.train, &log)?;
        report.test_greedy = Some(g);
        report.test_beam = b;
        report.test_beam_lm = bl;
        let text = serde_json::to_string_pretty(&report).map_err(|e| TrainError::Checkpoint {
            path: out_dir.join("results.json"),
            detail: e.to_string(),
        })?;
        checkpoint::write_atomic(&out_dir.join("results.json"), text.as_bytes())?;
    }
    Ok(report)
}

fn progress_of(opts: &TrainOptions, state: &TrainerState, batches_per_epoch: u64) -> f64 {
    // With an epoch count the schedule follows steps only, so that it (and a resumed run) does not
    // depend on timing; with a time budget alone it follows the time used.
    match opts.epochs {
        Some(e) => state.step as f64 / (e * batches_per_epoch).max(1) as f64,
        None => state.train_seconds / (opts.minutes * 60.0),
    }
}

fn save_checkpoint(
    dir: &Path,
    model: &AcousticModel<f32>,
    adam: &Adam<f32>,
    ema: Option<&Ema<f32>>,
    state: &TrainerState,
) -> Result<(), TrainError> {
    checkpoint::save_weights(&dir.join(files::LAST), model)?;
    checkpoint::save_optimizer(&dir.join(files::OPTIMIZER), adam.state())?;
    if let Some(e) = ema {
        checkpoint::save_ema(&dir.join(files::EMA), e, model)?;
    }
    // The state goes last: it is what `--resume` trusts, and it refers to the files above.
    checkpoint::save_state(&dir.join(files::STATE), state)
}

/// What augmentation does to one training utterance in one epoch.
#[derive(Clone, Copy, Debug)]
struct UttPlan {
    /// Which cached features (speed factor) and what noise.
    item: BatchItem,
    /// Tempo factor, when tempo perturbation is on.
    tempo: Option<f64>,
    /// Length after speed and tempo perturbation, in feature frames (within a frame or so of the
    /// real one: resampling and stretching round).
    frames: usize,
}

/// The augmentation of utterance `u` in `epoch`. Every draw comes from generators seeded by (seed,
/// epoch, utterance), so the plan does not depend on thread scheduling or on where a run was resumed,
/// and the batcher (which groups utterances by their planned lengths) and the step (which applies
/// the plan) agree.
fn plan_utterance(opts: &TrainOptions, data: &Data, epoch: u64, u: usize) -> UttPlan {
    let aug = &opts.augment;
    let mut rng = rng_for(opts.seed, 2, epoch, u as u64);
    let speed =
        if aug.speed_perturb { rng.random_range(0..aug.speeds.len()) } else { data.store.unit_speed() };
    let noise = (aug.noise_prob > 0.0 && rng.random::<f64>() < aug.noise_prob).then(|| {
        let (lo, hi) = aug.noise_snr_db;
        (lo + (hi - lo) * rng.random::<f64>(), rng.random::<u64>())
    });
    // Resampling by a speed factor s makes the audio 1 / s as long.
    let frames = data.lengths[u] as f64 / data.store.speeds()[speed];
    let tempo = aug.tempo_on().then(|| {
        let mut rng = rng_for(opts.seed, 5, epoch, u as u64);
        match aug.tempo_rate {
            Some((lo, hi)) => {
                let seconds = frames * opts.features.frame_shift_ms * 1e-3;
                let target = lo + (hi - lo) * rng.random::<f64>();
                tempo_factor_for_rate(data.train.utterances[u].text.chars().count(), seconds, target)
            }
            // lo + (hi - lo) u, written with 2 tempo for hi - lo so that the factors stay bit for
            // bit those of the runs in docs/TRAINING.md.
            None => aug.tempo_range().0 + 2.0 * aug.tempo * rng.random::<f64>(),
        }
    });
    let frames = (frames / tempo.unwrap_or(1.0)).round().max(1.0) as usize;
    UttPlan { item: (u, speed, noise), tempo, frames }
}

/// The plans of every training utterance in `epoch` and the epoch's batches, cut by the planned
/// (perturbed) lengths so that a batch pads little: cut by the unperturbed lengths, the default
/// speed and tempo factors left about a fifth of the padded frames empty.
fn plan_epoch(opts: &TrainOptions, data: &Data, epoch: u64) -> (Vec<UttPlan>, Vec<Vec<usize>>) {
    let plans: Vec<UttPlan> = (0..data.lengths.len()).map(|u| plan_utterance(opts, data, epoch, u)).collect();
    let lengths: Vec<usize> = plans.iter().map(|p| p.frames).collect();
    let batches = bucket_batches(&lengths, opts.batch_frames, opts.max_batch, opts.seed, epoch);
    (plans, batches)
}

/// One optimizer step on one batch; returns the batch loss and whether the update was applied (a
/// non-finite loss or gradient skips it and counts it in `state.skipped_steps`).
#[allow(clippy::too_many_arguments)]
fn train_step(
    opts: &TrainOptions,
    data: &mut Data,
    cmvn: &GlobalCmvn,
    model: &mut AcousticModel<f32>,
    adam: &mut Adam<f32>,
    ema: Option<&mut Ema<f32>>,
    ws: &mut Workspace<f32>,
    ctc_opts: &CtcOptions,
    state: &mut TrainerState,
    profile: &mut StepProfile,
    plans: &[UttPlan],
    batch_idx: &[usize],
    batches_per_epoch: u64,
) -> Result<(f64, bool), TrainError> {
    let epoch = state.epoch;
    let t = Instant::now();
    let aug = &opts.augment;
    let items: Vec<BatchItem> = batch_idx.iter().map(|&u| plans[u].item).collect();
    let mut feats = data.store.get(&data.train, &items)?;
    if aug.vtlp > 0.0 {
        let nyquist = f64::from(opts.features.sample_rate) / 2.0;
        let low_hz = FbankConfig::default().low_freq;
        for (f, &u) in feats.iter_mut().zip(batch_idx) {
            let mut rng = rng_for(opts.seed, 4, epoch, u as u64);
            let alpha = 1.0 - aug.vtlp + 2.0 * aug.vtlp * rng.random::<f64>();
            vtlp_warp(f, alpha, low_hz, nyquist).map_err(|source| TrainError::Audio {
                path: data.train.utterances[u].path.clone(),
                source,
            })?;
        }
    }
    for (f, &u) in feats.iter_mut().zip(batch_idx) {
        if let Some(factor) = plans[u].tempo {
            *f = tempo_stretch(f, factor).map_err(|source| TrainError::Audio {
                path: data.train.utterances[u].path.clone(),
                source,
            })?;
        }
    }
    // Longest first: the recurrent layers then skip the sequences that have ended (their step
    // products cover only the running prefix of the batch). The batcher sorted by planned lengths,
    // which can be a frame off the real ones.
    let mut sorted: Vec<(Features, usize)> = feats.into_iter().zip(batch_idx.iter().copied()).collect();
    sorted.sort_by_key(|(f, _)| std::cmp::Reverse(f.frames));
    let (feats, batch_idx): (Vec<Features>, Vec<usize>) = sorted.into_iter().unzip();
    let seeds: Vec<u64> =
        batch_idx.iter().map(|&u| rng_for(opts.seed, 3, epoch, u as u64).random::<u64>()).collect();
    let batch = make_batch(feats, cmvn, Some((aug, &seeds)), &opts.train)?;
    profile.features_s += t.elapsed().as_secs_f64();

    let t = Instant::now();
    let w = opts.inter_ctc_weight;
    let (out, inter) = if w > 0.0 && model.has_intermediate() {
        model.forward_with_intermediate(&batch, Mode::Train)?
    } else {
        (model.forward(&batch, Mode::Train)?, None)
    };
    profile.forward_s += t.elapsed().as_secs_f64();

    let t = Instant::now();
    let in_lens: Vec<u32> = model.output_lengths(batch.lengths()).into_iter().map(|l| l as u32).collect();
    let (labels, lens) = concat_labels(&batch_idx, |u| &data.train.utterances[u].labels);
    let targets = Targets::Concatenated { labels: &labels, lengths: &lens };
    let b = out.shape().0;
    let (loss, mut grad) = ctc_loss_and_grad(&out, &targets, &in_lens, ctc_opts, ws)?;
    let (inter_loss, inter_grad) = match &inter {
        Some(x) => {
            let (l, mut g) = match &data.inter_labels {
                Some(spelt) => {
                    let (labels, lens) = concat_labels(&batch_idx, |u| &spelt[u]);
                    let targets = Targets::Concatenated { labels: &labels, lengths: &lens };
                    ctc_loss_and_grad(x, &targets, &in_lens, ctc_opts, ws)?
                }
                None => ctc_loss_and_grad(x, &targets, &in_lens, ctc_opts, ws)?,
            };
            let (wm, wi) = ((1.0 - w) as f32, w as f32);
            grad.iter_mut().for_each(|d| *d *= wm);
            g.iter_mut().for_each(|d| *d *= wi);
            (l, Some(g))
        }
        None => (0.0, None),
    };
    profile.loss_s += t.elapsed().as_secs_f64();

    let progress = progress_of(opts, state, batches_per_epoch);
    let lr = opts.lr_at(state.step, progress);
    state.step += 1;
    profile.steps += 1;
    profile.utterances += b as u64;
    if !(loss.is_finite() && inter_loss.is_finite()) {
        state.skipped_steps += 1;
        return Ok((loss, false));
    }
    let t = Instant::now();
    model.zero_grad();
    model.backward_params_with_intermediate(&grad, inter_grad.as_deref())?;
    profile.backward_s += t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut params = model.params_mut();
    let norm = clip_grad_norm(&mut params, opts.clip_norm)?;
    if !norm.is_finite() {
        state.skipped_steps += 1;
        profile.optimizer_s += t.elapsed().as_secs_f64();
        return Ok((loss, false));
    }
    adam.step(&mut params, lr)?;
    if let Some(e) = ema {
        e.update(&params)?;
    }
    profile.optimizer_s += t.elapsed().as_secs_f64();
    Ok((loss, true))
}

/// The mean CTC loss of a batch of logits `(B, T, V)` (batch-major) and its gradient with respect to
/// them; a non-finite loss comes back as NaN (the caller skips the step), other errors as errors.
fn ctc_loss_and_grad(
    logits: &crate::nn::Batch<f32>,
    targets: &Targets<'_, u32>,
    in_lens: &[u32],
    ctc_opts: &CtcOptions,
    ws: &mut Workspace<f32>,
) -> Result<(f64, Vec<f32>), TrainError> {
    let (b, t, v) = logits.shape();
    let mut grad = vec![0.0f32; logits.data().len()];
    let mut losses = vec![0.0f32; b];
    let acts = ActsView::batch_major(logits.data(), t, b, v)?;
    let mut g = ActsViewMut::batch_major(&mut grad, t, b, v)?;
    let loss = match ctc_compute(&acts, targets, in_lens, &mut losses, Some(&mut g), ctc_opts, ws) {
        Ok(l) => f64::from(l),
        Err(CtcError::NonFinite { .. }) => f64::NAN,
        Err(e) => return Err(e.into()),
    };
    Ok((loss, grad))
}

/// Builds the word 3-gram LM from the training transcripts (saved as `lm.arpa`) and evaluates the
/// best model on the test manifest: greedy, beam search without and with the LM.
fn final_test(
    opts: &TrainOptions,
    out_dir: &Path,
    test: &Path,
    train: &Corpus,
    log: &dyn Fn(&str),
) -> Result<(EvalReport, Option<EvalReport>, Option<EvalReport>), TrainError> {
    let text: String = train.utterances.iter().map(|u| format!("{}\n", u.text)).collect();
    let lm: NgramModel = estimate_ngram(&text, &EstimateOptions { order: 3 })?;
    let lm_path = out_dir.join(files::LM);
    let arpa = lm.to_arpa_string();
    checkpoint::write_atomic(&lm_path, arpa.as_bytes())?;
    let mut rec = Recognizer::load(out_dir, files::BEST)?;
    let corpus = load_corpus(test, opts.skip_bad, &rec.vocab)?;
    let feats = features_of_corpus(&rec.config.features, &corpus)?;
    let t = Instant::now();
    let greedy = evaluate(&mut rec, &corpus, &feats, Decoding::Greedy, opts.batch_frames * 2)?;
    log(&format!("test, greedy ({:.1} s):", t.elapsed().as_secs_f64()));
    log(&format_report(&greedy));
    let (mut beam, mut beam_lm) = (None, None);
    if opts.beam_width > 0 {
        let t = Instant::now();
        let r = evaluate(
            &mut rec,
            &corpus,
            &feats,
            Decoding::Beam { width: opts.beam_width, lm: None },
            opts.batch_frames * 2,
        )?;
        log(&format!("test, beam {} ({:.1} s):", opts.beam_width, t.elapsed().as_secs_f64()));
        log(&format_report(&r));
        beam = Some(r);
        let t = Instant::now();
        let r = evaluate(
            &mut rec,
            &corpus,
            &feats,
            Decoding::Beam { width: opts.beam_width, lm: Some((&lm, DEFAULT_LM_ALPHA, DEFAULT_LM_BETA)) },
            opts.batch_frames * 2,
        )?;
        log(&format!(
            "test, beam {} + word 3-gram LM {} (alpha {DEFAULT_LM_ALPHA}, beta {DEFAULT_LM_BETA}) ({:.1} s):",
            opts.beam_width,
            lm_path.display(),
            t.elapsed().as_secs_f64()
        ));
        log(&format_report(&r));
        beam_lm = Some(r);
    }
    Ok((greedy, beam, beam_lm))
}

/// A small table of an evaluation: all utterances and each kind, CER and WER in percent.
pub fn format_report(r: &EvalReport) -> String {
    let mut s = format!(
        "  {:<10} {:>5} utts  CER {:>6.2}%  WER {:>6.2}%",
        "all",
        r.all.utterances,
        100.0 * r.all.cer,
        100.0 * r.all.wer
    );
    for (k, v) in &r.by_kind {
        s.push_str(&format!(
            "\n  {:<10} {:>5} utts  CER {:>6.2}%  WER {:>6.2}%",
            k,
            v.utterances,
            100.0 * v.cer,
            100.0 * v.wer
        ));
    }
    s
}

/// One line per speaker of `r.by_speaker`, most word errors first (then highest CER, then name):
/// utterances, wrong words of all words, CER and WER.
pub fn format_speakers(r: &EvalReport) -> String {
    let mut rows: Vec<(&String, &Rates)> = r.by_speaker.iter().collect();
    rows.sort_by(|a, b| {
        b.1.word_errors.cmp(&a.1.word_errors).then(b.1.cer.total_cmp(&a.1.cer)).then(a.0.cmp(b.0))
    });
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0).max("speaker".len());
    let mut s =
        format!("  {:<width$} {:>5}  {:>11}  {:>7}  {:>7}", "speaker", "utts", "words wrong", "CER", "WER");
    for (k, v) in rows {
        s.push_str(&format!(
            "\n  {:<width$} {:>5}  {:>11}  {:>6.2}%  {:>6.2}%",
            k,
            v.utterances,
            format!("{} / {}", v.word_errors, v.words),
            100.0 * v.cer,
            100.0 * v.wer
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::data::Utterance;

    /// A corpus of noise bursts of 0.3 to 2.2 s (content does not matter, only lengths).
    fn data_for(opts: &TrainOptions) -> Data {
        let rate = opts.features.sample_rate as usize;
        let mut rng = rng_for(7, 0, 0, 0);
        let utterances: Vec<Utterance> = (0..24)
            .map(|i| Utterance {
                path: PathBuf::from(format!("u{i}.wav")),
                samples: (0..rate * (3 + (i * 7) % 20) / 10).map(|_| rng.random::<f32>() - 0.5).collect(),
                text: "ab".repeat(1 + i % 9),
                labels: vec![3; 2 * (1 + i % 9)],
                kind: None,
                speaker: None,
            })
            .collect();
        let train = Corpus { manifest: PathBuf::from("t.jsonl"), utterances, skipped: Vec::new() };
        let features = features_of_corpus(&opts.features, &train).unwrap();
        let lengths = features.iter().map(|f| f.frames).collect();
        let store = FeatureStore::new(&opts.features, features, &opts.augment.speeds).unwrap();
        let dev = Corpus { manifest: PathBuf::from("d.jsonl"), utterances: Vec::new(), skipped: Vec::new() };
        Data { train, dev, dev_features: Vec::new(), store, lengths, inter_labels: None }
    }

    #[test]
    fn planned_lengths_match_the_perturbed_features() {
        for augment in [
            AugmentOptions::default(),
            AugmentOptions { tempo_rate: Some((10.0, 22.0)), ..AugmentOptions::default() },
            AugmentOptions::none(),
        ] {
            let opts = TrainOptions { augment, ..TrainOptions::default() };
            let mut data = data_for(&opts);
            for epoch in 0..3 {
                let (plans, batches) = plan_epoch(&opts, &data, epoch);
                // Every utterance once per epoch.
                let mut seen: Vec<usize> = batches.concat();
                seen.sort_unstable();
                assert_eq!(seen, (0..data.lengths.len()).collect::<Vec<_>>());
                // Drawing the plan again gives the same one: no state carries over between draws.
                assert_eq!(plans.iter().map(|p| p.frames).collect::<Vec<_>>(), {
                    let again = plan_epoch(&opts, &data, epoch).0;
                    again.iter().map(|p| p.frames).collect::<Vec<_>>()
                });
                let items: Vec<BatchItem> = plans.iter().map(|p| p.item).collect();
                let feats = data.store.get(&data.train, &items).unwrap();
                for (p, f) in plans.iter().zip(&feats) {
                    let real = match p.tempo {
                        Some(factor) => tempo_stretch(f, factor).unwrap().frames,
                        None => f.frames,
                    };
                    assert!(real.abs_diff(p.frames) <= 2, "planned {} frames, got {real}", p.frames);
                }
            }
        }
    }
}
