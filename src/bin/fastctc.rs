//! `fastctc`: train a speech recognizer on the fastctc loss, evaluate, transcribe, align, benchmark.
//!
//! `fastctc --help` and `fastctc <command> --help` describe every option. Errors print one message
//! naming the file or option at fault and exit with status 1 (2 for command-line usage errors).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};

use fastctc::align::align_text;
use fastctc::decode::NgramModel;
use fastctc::loss::shapes::standard_shapes;
use fastctc::nn::{Activation, ConvModelConfig, GruModelConfig, ModelConfig};
use fastctc::train::checkpoint::files;
use fastctc::train::data::load_corpus;
use fastctc::train::recognizer::{DEFAULT_LM_ALPHA, DEFAULT_LM_BETA};
use fastctc::train::trainer::{default_run_dir, format_report, format_speakers};
use fastctc::train::{evaluate, train, Decoding, OutputUnits, Recognizer, TrainError, TrainOptions};
use fastctc::{ctc_compute, ActsView, ActsViewMut, Backend, CtcOptions, Reduction, Targets, Workspace};

#[derive(Parser)]
#[command(
    name = "fastctc",
    version,
    about = "CTC speech recognition on the CPU: train, evaluate, transcribe, align, benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process, so the size of the training options' variant costs nothing worth boxing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Train an acoustic model from scratch (defaults: the shipped corpus in data/, an 11-minute budget).
    Train(TrainArgs),
    /// CER and WER of a trained model on a manifest (greedy, or beam search with an optional LM).
    Eval(EvalArgs),
    /// Print the transcript of each audio file (WAV, FLAC or Ogg Vorbis).
    Transcribe(TranscribeArgs),
    /// Word timestamps of a known transcript in an audio file (CTC forced alignment).
    Align(AlignArgs),
    /// Speed of the CTC kernel (loss + gradient, f32) on the standard benchmark shapes.
    Bench(BenchArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Arch {
    /// Convolutional subsampling + bidirectional GRU layers.
    Gru,
    /// Convolutional subsampling + residual dilated 1-D convolution blocks.
    Conv,
}

#[derive(Clone, Copy, ValueEnum)]
enum Units {
    /// Blank, space, apostrophe, a-z (29 classes).
    Chars,
    /// Blank, apostrophe and a-z inside a word, and the same beginning a word (55 classes).
    WordStart,
}

#[derive(Args)]
struct TrainArgs {
    /// Training manifest (JSON lines: audio_filepath, text, duration).
    #[arg(long, default_value = "data/train.jsonl")]
    train: PathBuf,
    /// Dev manifest, evaluated after every epoch (the best model by dev CER is kept).
    #[arg(long, default_value = "data/dev.jsonl")]
    dev: PathBuf,
    /// Test manifest, evaluated at the end (greedy, beam, beam + LM).
    #[arg(long, default_value = "data/test.jsonl")]
    test: PathBuf,
    /// Skip the final test evaluation.
    #[arg(long)]
    no_test: bool,
    /// Run directory (default: runs/<UTC timestamp>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in DIR where it stopped (its saved options are used; --minutes and --epochs
    /// set the new budget).
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    resume: Option<PathBuf>,
    /// Training budget in minutes (steps plus per-epoch dev evaluation).
    #[arg(long, default_value_t = fastctc::train::DEFAULT_BUDGET_MINUTES)]
    minutes: f64,
    /// Stop after this many epochs (or at the budget, whichever comes first).
    #[arg(long)]
    epochs: Option<u64>,
    /// Model architecture.
    #[arg(long, value_enum, default_value_t = Arch::Gru)]
    arch: Arch,
    /// Mel bins per 10 ms feature frame (the model's input size; default 40).
    #[arg(long, value_name = "N")]
    mel_bins: Option<usize>,
    /// GRU: hidden units per direction; conv: channels of the residual blocks.
    #[arg(long)]
    hidden: Option<usize>,
    /// GRU: recurrent layers; conv: residual blocks.
    #[arg(long)]
    layers: Option<usize>,
    /// Channels of the convolutional subsampling (GRU model).
    #[arg(long)]
    conv_channels: Option<usize>,
    /// Number of subsampling convolutions (GRU model; 0 = none).
    #[arg(long)]
    conv_layers: Option<usize>,
    /// Kernel width of the subsampling convolutions, in frames (GRU model).
    #[arg(long)]
    conv_kernel: Option<usize>,
    /// Stride of each subsampling convolution, in frames (GRU model; the frame rate is divided by
    /// stride^layers).
    #[arg(long)]
    conv_stride: Option<usize>,
    /// Output frames per recurrent frame (GRU model): the output layer's logits for each subsampled
    /// frame are read as this many consecutive CTC frames, so 2 with x4 subsampling gives CTC 20 ms
    /// frames while the GRUs run at 40 ms.
    #[arg(long)]
    upsample: Option<usize>,
    /// Dropout probability.
    #[arg(long)]
    dropout: Option<f64>,
    /// Intermediate CTC (GRU model): an auxiliary output layer after GRU layer K (1-based, below
    /// --layers) whose CTC loss is added to the main one in training; 0 = none, which also turns
    /// self-conditioning off [default: 1; none when --layers leaves no layer above it].
    #[arg(long, value_name = "K")]
    inter_ctc: Option<usize>,
    /// Self-conditioned CTC (with intermediate CTC): the auxiliary layer's posteriors are mapped back
    /// and added to what the next GRU layer reads (on by default).
    #[arg(long, conflicts_with = "no_self_condition")]
    self_condition: bool,
    /// Plain intermediate CTC, without self-conditioning.
    #[arg(long)]
    no_self_condition: bool,
    /// Weight w of the intermediate CTC loss: training minimises (1 - w) L + w L_inter [default: 0.3].
    #[arg(long, value_name = "W")]
    inter_ctc_weight: Option<f64>,
    /// Output classes: `chars` (blank, space, apostrophe, a-z) or `word-start` (apostrophe and a-z,
    /// each also marked as beginning a word; no space class, so a word boundary needs no frame).
    #[arg(long, value_enum)]
    units: Option<Units>,
    /// With --units word-start (GRU model): the output layer emits blank, apostrophe, a-z and one
    /// word-boundary logit, and a class beginning a word scores its letter's logit plus the boundary
    /// logit, so both classes of a letter learn from all its examples.
    #[arg(long)]
    factored_output: bool,
    /// Classes of the intermediate CTC layer when they should differ from --units, e.g. `chars`
    /// under `--units word-start`: the lower layers then learn letters and spaces, and the
    /// self-conditioning map passes them up [default: as --units].
    #[arg(long, value_enum, value_name = "UNITS")]
    inter_units: Option<Units>,
    /// Largest padded batch, in 10 ms feature frames.
    #[arg(long)]
    batch_frames: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Warm-up steps.
    #[arg(long)]
    warmup: Option<u64>,
    /// AdamW's decoupled weight decay: every step shrinks each weight by the factor
    /// `1 - lr * weight_decay` [default: 0.1].
    #[arg(long, value_name = "W")]
    weight_decay: Option<f64>,
    /// Decay per step of the moving average of the weights that is evaluated on dev each epoch and
    /// saved as model.safetensors (bias-corrected; 0 = off, the raw weights are used).
    #[arg(long, value_name = "D", conflicts_with = "no_ema")]
    ema_decay: Option<f64>,
    /// No moving average of the weights (same as --ema-decay 0).
    #[arg(long)]
    no_ema: bool,
    /// With --upsample above 1: the first epoch trained on the split output frames; the epochs before
    /// it train on the subsampled frames with the shared part of the output layer (1 = split from the
    /// start) [default: 2].
    #[arg(long, value_name = "E")]
    split_from_epoch: Option<u64>,
    /// Seed of initialisation, shuffling and augmentation.
    #[arg(long)]
    seed: Option<u64>,
    /// Disable speed perturbation.
    #[arg(long)]
    no_speed_perturb: bool,
    /// Speed factors of speed perturbation, comma-separated, each in [0.5, 2.0] [default:
    /// 0.9,1.0,1.1].
    #[arg(long, value_delimiter = ',', value_name = "F,F,...")]
    speeds: Option<Vec<f64>>,
    /// Probability of additive white noise per utterance (default 0: off).
    #[arg(long)]
    noise_prob: Option<f64>,
    /// Vocal-tract-length perturbation: each utterance of each epoch has its mel frequency axis
    /// warped by a factor drawn from [1 - V, 1 + V] (default 0: off; 0.1 is the usual range).
    #[arg(long, value_name = "V")]
    vtlp: Option<f64>,
    /// Tempo perturbation: each utterance of each epoch is stretched in time (pitch unchanged) by a
    /// factor drawn from [C - R, C + R] (C from --tempo-center; above 1 is faster), on top of speed
    /// perturbation (default 0.2; 0 turns it off).
    #[arg(long, value_name = "R")]
    tempo: Option<f64>,
    /// Centre C of the tempo factors (default 1.15, so that training hears faster speech than the
    /// corpus's voices have; 1 centres them on the corpus's own tempo; ignored with --tempo 0).
    #[arg(long, value_name = "C")]
    tempo_center: Option<f64>,
    /// Tempo perturbation towards speaking rates instead of by a factor range: each utterance of
    /// each epoch is stretched so that it says a rate drawn from [LO, HI] characters per second
    /// (factor within 0.5-2); replaces --tempo and --tempo-center.
    #[arg(long, value_parser = parse_pair::<f64>, value_name = "LO,HI")]
    tempo_rate: Option<(f64, f64)>,
    /// SpecAugment on (off by default): 2 frequency masks of up to 15 bins, 2 time masks of up to 20
    /// frames.
    #[arg(long, conflicts_with = "no_specaugment")]
    specaugment: bool,
    /// Disable SpecAugment (the default; kept for older scripts).
    #[arg(long)]
    no_specaugment: bool,
    /// SpecAugment frequency masks: N masks per utterance, each up to F mel bins wide (replaces
    /// those of --specaugment; 0,0 = none).
    #[arg(long, value_parser = parse_pair::<usize>, value_name = "N,F", conflicts_with = "no_specaugment")]
    freq_masks: Option<(usize, usize)>,
    /// SpecAugment time masks: N masks per utterance, each up to T feature frames (10 ms) wide and
    /// together at most 20 % of the utterance (replaces those of --specaugment; 0,0 = none).
    #[arg(long, value_parser = parse_pair::<usize>, value_name = "N,T", conflicts_with = "no_specaugment")]
    time_masks: Option<(usize, usize)>,
    /// Keep the leading and trailing silence of the training audio (by default it is cut to 100 ms
    /// around the speech).
    #[arg(long)]
    no_trim_silence: bool,
    /// List and skip missing or corrupt audio files instead of stopping.
    #[arg(long)]
    skip_bad: bool,
    /// Beam width of the final beam-search evaluation (0 skips beam search).
    #[arg(long)]
    beam: Option<usize>,
    /// Use only the first N training utterances.
    #[arg(long, value_name = "N")]
    max_train_utterances: Option<usize>,
    /// Plain log lines instead of progress bars.
    #[arg(long)]
    no_progress: bool,
    /// Also save the weights evaluated on dev after every epoch as epoch-NNN.safetensors in the run
    /// directory (about 8 MB each for the default model; load one with --weights).
    #[arg(long)]
    keep_epochs: bool,
}

#[derive(Args)]
struct DecodeArgs {
    /// Beam search of this width instead of greedy decoding.
    #[arg(long, value_name = "N")]
    beam: Option<usize>,
    /// Word n-gram language model (ARPA) for beam search, e.g. RUN_DIR/lm.arpa.
    #[arg(long, value_name = "FILE", requires = "beam")]
    lm: Option<PathBuf>,
    /// LM weight.
    #[arg(long, default_value_t = DEFAULT_LM_ALPHA)]
    alpha: f64,
    /// Word insertion bonus.
    #[arg(long, default_value_t = DEFAULT_LM_BETA)]
    beta: f64,
    /// Weights file inside the model directory.
    #[arg(long, default_value = files::BEST)]
    weights: String,
}

#[derive(Args)]
struct EvalArgs {
    /// A run directory (config.json + model.safetensors).
    model_dir: PathBuf,
    /// Manifest to evaluate (JSON lines).
    manifest: PathBuf,
    #[command(flatten)]
    decode: DecodeArgs,
    /// List and skip missing or corrupt audio files.
    #[arg(long)]
    skip_bad: bool,
    /// Only the utterances whose manifest `kind` is this (e.g. `digits`).
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// Also print the error rates of each speaker (the manifest's `speaker` field), most word errors
    /// first.
    #[arg(long)]
    by_speaker: bool,
    /// Also print every utterance whose hypothesis differs from its reference (file, speaker,
    /// reference -> hypothesis).
    #[arg(long)]
    errors: bool,
}

#[derive(Args)]
struct TranscribeArgs {
    /// A run directory (config.json + model.safetensors).
    model_dir: PathBuf,
    /// Audio files.
    #[arg(required = true)]
    audio: Vec<PathBuf>,
    #[command(flatten)]
    decode: DecodeArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum AlignFormat {
    /// One JSON object with token and word times.
    Json,
    /// NIST CTM lines: utterance channel start duration word confidence.
    Ctm,
}

#[derive(Args)]
struct AlignArgs {
    /// A run directory (config.json + model.safetensors).
    model_dir: PathBuf,
    /// The audio file.
    audio: PathBuf,
    /// Its transcript (space, apostrophe, a-z).
    text: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = AlignFormat::Json)]
    format: AlignFormat,
    /// Weights file inside the model directory.
    #[arg(long, default_value = files::BEST)]
    weights: String,
}

#[derive(Args)]
struct BenchArgs {
    /// Repetitions per case (the median is reported).
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Only this shape (tiny, chars, chars_long, bpe, bpe_large, ragged).
    #[arg(long)]
    shape: Option<String>,
    /// Thread counts to try.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
}

/// The CLI's errors: the trainer's, or a message naming what is wrong.
#[derive(Debug)]
enum CliError {
    Train(TrainError),
    Other(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Train(e) => write!(f, "{e}"),
            CliError::Other(s) => f.write_str(s),
        }
    }
}

impl From<TrainError> for CliError {
    fn from(e: TrainError) -> Self {
        CliError::Train(e)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => cmd_train(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Transcribe(a) => cmd_transcribe(a),
        Command::Align(a) => cmd_align(a),
        Command::Bench(a) => cmd_bench(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cmd_train(a: TrainArgs) -> Result<(), CliError> {
    let start = Instant::now();
    let mut o = TrainOptions {
        train: a.train,
        dev: a.dev,
        test: (!a.no_test).then_some(a.test),
        minutes: a.minutes,
        epochs: a.epochs,
        skip_bad: a.skip_bad,
        max_train_utterances: a.max_train_utterances,
        progress: !a.no_progress,
        keep_epochs: a.keep_epochs,
        ..TrainOptions::default()
    };
    o.model = match (a.arch, o.model) {
        (Arch::Gru, ModelConfig::Gru(mut c)) => {
            c.hidden = a.hidden.unwrap_or(c.hidden);
            c.gru_layers = a.layers.unwrap_or(c.gru_layers);
            c.conv_channels = a.conv_channels.unwrap_or(c.conv_channels);
            c.conv_layers = a.conv_layers.unwrap_or(c.conv_layers);
            c.conv_kernel = a.conv_kernel.unwrap_or(c.conv_kernel);
            c.conv_stride = a.conv_stride.unwrap_or(c.conv_stride);
            c.upsample = a.upsample.unwrap_or(c.upsample);
            c.dropout = a.dropout.unwrap_or(c.dropout);
            match a.inter_ctc {
                Some(k) => c.inter_ctc_layer = k,
                // The default's intermediate layer needs a GRU layer above it; with fewer layers
                // asked for, the model has none rather than refusing the flags.
                None if c.inter_ctc_layer >= c.gru_layers => c.inter_ctc_layer = 0,
                None => {}
            }
            // Asked for explicitly, it stays even without an intermediate layer, and the model's
            // validation names the conflict.
            c.self_condition =
                a.self_condition || (c.self_condition && !a.no_self_condition && c.inter_ctc_layer > 0);
            c.factored_word_start = a.factored_output;
            ModelConfig::Gru(c)
        }
        (Arch::Gru, _) => {
            ModelConfig::Gru(GruModelConfig { activation: Activation::Relu, ..GruModelConfig::default() })
        }
        (Arch::Conv, _) => {
            let d = ConvModelConfig::default();
            ModelConfig::Conv(ConvModelConfig {
                channels: a.hidden.unwrap_or(d.channels),
                blocks: a.layers.unwrap_or(d.blocks),
                dropout: a.dropout.unwrap_or(d.dropout),
                ..d
            })
        }
    };
    if a.factored_output && !o.model.factored_word_start() {
        return Err(CliError::Other("--factored-output needs the GRU model (--arch gru)".into()));
    }
    let units = |u: Units| match u {
        Units::Chars => OutputUnits::Chars,
        Units::WordStart => OutputUnits::WordStart,
    };
    if let Some(u) = a.units {
        o.units = units(u);
    }
    // Intermediate units equal to the main ones are no units of their own (inter_vocab 0).
    o.inter_units = a.inter_units.map(units).or(o.inter_units).filter(|&u| u != o.units);
    if let Some(n) = a.mel_bins {
        o.features.num_mel_bins = n;
        o.model = o.model.with_input_dim(n);
    }
    o.model = o.model.with_vocab(o.units.vocabulary().len());
    o.model = o.model.with_inter_vocab(o.inter_units.map_or(0, |u| u.vocabulary().len()));
    if let Some(x) = a.batch_frames {
        o.batch_frames = x;
    }
    if let Some(x) = a.lr {
        o.lr = x;
    }
    if let Some(x) = a.warmup {
        o.warmup_steps = x;
    }
    if let Some(x) = a.weight_decay {
        o.weight_decay = x;
    }
    if let Some(x) = a.seed {
        o.seed = x;
    }
    if let Some(x) = a.ema_decay {
        o.ema_decay = x;
    }
    if a.no_ema {
        o.ema_decay = 0.0;
    }
    if let Some(x) = a.inter_ctc_weight {
        o.inter_ctc_weight = x;
    }
    if let Some(x) = a.split_from_epoch {
        o.split_from_epoch = x;
    }
    if let Some(x) = a.beam {
        o.beam_width = x;
    }
    if let Some(x) = a.noise_prob {
        o.augment.noise_prob = x;
    }
    if let Some(x) = a.vtlp {
        o.augment.vtlp = x;
    }
    if let Some(x) = a.tempo {
        o.augment.tempo = x;
    }
    if let Some(x) = a.tempo_center {
        o.augment.tempo_center = x;
    }
    if let Some(x) = a.tempo_rate {
        o.augment.tempo_rate = Some(x);
    }
    o.augment.speed_perturb &= !a.no_speed_perturb;
    if let Some(x) = a.speeds {
        o.augment.speeds = x;
    }
    if a.no_trim_silence {
        o.trim_silence = None;
    }
    if a.specaugment {
        o.augment = o.augment.with_spec_augment();
    }
    if a.no_specaugment {
        o.augment.freq_masks = (0, 0);
        o.augment.time_masks = (0, 0);
    }
    if let Some(x) = a.freq_masks {
        o.augment.freq_masks = x;
    }
    if let Some(x) = a.time_masks {
        o.augment.time_masks = x;
    }
    let (dir, resume) = match a.resume {
        Some(d) => (d, true),
        None => (a.out.unwrap_or_else(default_run_dir), false),
    };
    let report = train(&o, &dir, resume)?;
    let p = &report.profile;
    if p.steps > 0 {
        let tot = p.total_s().max(1e-9);
        eprintln!(
            "step profile over {} steps ({:.1} utt/s): features {:.1}%, forward {:.1}%, loss {:.1}%, backward {:.1}%, optimizer {:.1}%",
            p.steps,
            p.utterances as f64 / tot,
            100.0 * p.features_s / tot,
            100.0 * p.forward_s / tot,
            100.0 * p.loss_s / tot,
            100.0 * p.backward_s / tot,
            100.0 * p.optimizer_s / tot
        );
    }
    eprintln!("run directory: {} (total {:.1} min)", dir.display(), start.elapsed().as_secs_f64() / 60.0);
    Ok(())
}

fn load_lm(d: &DecodeArgs) -> Result<Option<NgramModel>, CliError> {
    match &d.lm {
        Some(p) => Ok(Some(
            NgramModel::from_arpa_file(p).map_err(|e| CliError::Other(format!("{}: {e}", p.display())))?,
        )),
        None => Ok(None),
    }
}

fn decoding<'a>(d: &DecodeArgs, lm: &'a Option<NgramModel>) -> Result<Decoding<'a>, CliError> {
    match d.beam {
        None => Ok(Decoding::Greedy),
        Some(0) => Err(CliError::Other("option --beam: the width must be at least 1".into())),
        Some(w) => Ok(Decoding::Beam { width: w, lm: lm.as_ref().map(|m| (m, d.alpha, d.beta)) }),
    }
}

fn cmd_eval(a: EvalArgs) -> Result<(), CliError> {
    let mut rec = Recognizer::load(&a.model_dir, &a.decode.weights)?;
    let lm = load_lm(&a.decode)?;
    let mut corpus = load_corpus(&a.manifest, a.skip_bad, &rec.vocab)?;
    for (p, why) in &corpus.skipped {
        eprintln!("skipped {}: {why}", p.display());
    }
    if let Some(kind) = &a.kind {
        let present: std::collections::BTreeSet<String> =
            corpus.utterances.iter().filter_map(|u| u.kind.clone()).collect();
        corpus.utterances.retain(|u| u.kind.as_deref() == Some(kind.as_str()));
        if corpus.utterances.is_empty() {
            let present: Vec<String> = present.into_iter().collect();
            return Err(CliError::Other(format!(
                "--kind {kind:?}: no utterance of {} has that kind (kinds present: {})",
                a.manifest.display(),
                if present.is_empty() { "none".to_string() } else { present.join(", ") }
            )));
        }
    }
    let feats = fastctc::train::data::features_of_corpus(&rec.config.features, &corpus)?;
    let report = evaluate(&mut rec, &corpus, &feats, decoding(&a.decode, &lm)?, 12_000)?;
    println!("{}: loss {:.4}", a.manifest.display(), report.loss);
    println!("{}", format_report(&report));
    if a.by_speaker {
        if report.by_speaker.is_empty() {
            println!("(no utterance of {} names its speaker)", a.manifest.display());
        } else {
            println!("{}", format_speakers(&report));
        }
    }
    if a.errors {
        for (u, hyp) in corpus.utterances.iter().zip(&report.hypotheses) {
            if *hyp != u.text {
                let speaker = u.speaker.as_deref().unwrap_or("-");
                println!("{}\t{speaker}\t{:?} -> {hyp:?}", u.path.display(), u.text);
            }
        }
    }
    Ok(())
}

fn cmd_transcribe(a: TranscribeArgs) -> Result<(), CliError> {
    let mut rec = Recognizer::load(&a.model_dir, &a.decode.weights)?;
    let lm = load_lm(&a.decode)?;
    let dec = decoding(&a.decode, &lm)?;
    for path in &a.audio {
        let f = rec.features_of_file(path)?;
        let lp = rec.log_probs(vec![f])?;
        let hyp = rec.decode(&lp, dec)?;
        let text = hyp.first().map_or("", |h| h.text.as_str());
        if a.audio.len() > 1 {
            println!("{}\t{text}", path.display());
        } else {
            println!("{text}");
        }
    }
    Ok(())
}

fn cmd_align(a: AlignArgs) -> Result<(), CliError> {
    let mut rec = Recognizer::load(&a.model_dir, &a.weights)?;
    let f = rec.features_of_file(&a.audio)?;
    let lp = rec.log_probs(vec![f])?;
    let view = lp.view()?;
    let text = a.text.trim().to_string();
    let al = align_text(&view, &lp.lengths, &[text.as_str()], &rec.vocab)
        .map_err(|e| CliError::Other(format!("aligning {:?} to {}: {e}", text, a.audio.display())))?;
    let utt = utterance_name(&a.audio);
    let shift = rec.config.frame_shift_s;
    match a.format {
        AlignFormat::Json => {
            let v = al[0].to_json(&utt, &rec.vocab, shift);
            println!("{}", serde_json::to_string_pretty(&v).map_err(|e| CliError::Other(e.to_string()))?);
        }
        AlignFormat::Ctm => {
            let mut s = String::new();
            al[0].write_ctm(&mut s, &utt, "1", shift);
            print!("{s}");
        }
    }
    Ok(())
}

fn utterance_name(p: &Path) -> String {
    p.file_stem().map_or_else(|| p.display().to_string(), |s| s.to_string_lossy().into_owned())
}

fn cmd_bench(a: BenchArgs) -> Result<(), CliError> {
    let shapes: Vec<_> =
        standard_shapes().into_iter().filter(|s| a.shape.as_deref().is_none_or(|o| o == s.name)).collect();
    if shapes.is_empty() {
        let names: Vec<&str> = standard_shapes().iter().map(|s| s.name).collect();
        return Err(CliError::Other(format!(
            "option --shape: no shape named {:?} (known: {})",
            a.shape.unwrap_or_default(),
            names.join(", ")
        )));
    }
    if a.threads.contains(&0) {
        return Err(CliError::Other("option --threads: thread counts must be at least 1".into()));
    }
    println!("{:<11} {:>7} {:>10} {:>12}", "shape", "threads", "median ms", "Mcells/s");
    for shape in shapes {
        let (logits, labels) = shape.generate(1);
        let (t, b, v) = (shape.max_time(), shape.batch(), shape.classes);
        let il: Vec<u32> = shape.input_lengths.iter().map(|&x| x as u32).collect();
        let tl: Vec<u32> = shape.target_lengths.iter().map(|&x| x as u32).collect();
        let acts = ActsView::time_major(&logits, t, b, v).map_err(TrainError::from)?;
        let mut grad = vec![0.0f32; logits.len()];
        for &threads in &a.threads {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| CliError::Other(format!("thread pool of {threads}: {e}")))?;
            let opts = CtcOptions { reduction: Reduction::Sum, backend: Backend::Auto, ..Default::default() };
            let mut ws = Workspace::new();
            let mut losses = vec![0.0f32; b];
            let mut times = Vec::new();
            for _ in 0..a.rounds.max(1) {
                let mut g = ActsViewMut::time_major(&mut grad, t, b, v).map_err(TrainError::from)?;
                let start = Instant::now();
                pool.install(|| {
                    ctc_compute(
                        &acts,
                        &Targets::Concatenated { labels: &labels, lengths: &tl },
                        &il,
                        &mut losses,
                        Some(&mut g),
                        &opts,
                        &mut ws,
                    )
                })
                .map_err(TrainError::from)?;
                times.push(start.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            let med = times[times.len() / 2];
            println!(
                "{:<11} {:>7} {:>10.3} {:>12.1}",
                shape.name,
                threads,
                med * 1e3,
                shape.cells() as f64 / med / 1e6
            );
        }
    }
    Ok(())
}

/// Parses `A,B` (two numbers and a comma) for pair options such as `--tempo-rate LO,HI` and
/// `--freq-masks N,F`.
fn parse_pair<T: std::str::FromStr>(s: &str) -> Result<(T, T), String>
where
    T::Err: std::fmt::Display,
{
    let parse = |t: &str| t.trim().parse::<T>().map_err(|e| format!("{t:?}: {e}"));
    match s.split_once(',') {
        Some((a, b)) => Ok((parse(a)?, parse(b)?)),
        None => Err(format!("{s:?} is not two numbers separated by a comma")),
    }
}
