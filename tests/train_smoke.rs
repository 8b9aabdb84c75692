//! The trainer end to end on a handful of shipped utterances: the loss falls, checkpoints round-trip,
//! a resumed run matches an uninterrupted one, bad input is reported by file and line.
#![cfg(feature = "train")]

use std::path::{Path, PathBuf};

use fastctc::nn::{Activation, GruModelConfig, ModelConfig};
use fastctc::train::checkpoint::{self, files};
use fastctc::train::data::load_corpus;
use fastctc::train::OutputUnits;
use fastctc::train::{train, AugmentOptions, Recognizer, TrainError, TrainOptions, DEFAULT_MEL_BINS};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fastctc-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A manifest of the first `n` digit utterances of the shipped training set, with absolute paths.
fn small_manifest(dir: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(data_dir().join("train.jsonl")).unwrap();
    let mut out = String::new();
    for line in text.lines().filter(|l| l.contains("\"digits\"")).take(n) {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let rel = v["audio_filepath"].as_str().unwrap().to_string();
        v["audio_filepath"] = serde_json::Value::String(data_dir().join(rel).display().to_string());
        out.push_str(&v.to_string());
        out.push('\n');
    }
    let p = dir.join("small.jsonl");
    std::fs::write(&p, out).unwrap();
    p
}

fn tiny_options(manifest: &Path, epochs: u64) -> TrainOptions {
    TrainOptions {
        train: manifest.to_path_buf(),
        dev: manifest.to_path_buf(),
        test: None,
        minutes: 10.0,
        epochs: Some(epochs),
        model: ModelConfig::Gru(GruModelConfig {
            input_dim: DEFAULT_MEL_BINS,
            vocab: 29,
            conv_layers: 2,
            conv_channels: 24,
            conv_kernel: 3,
            conv_stride: 2,
            activation: Activation::Relu,
            gru_layers: 2,
            hidden: 24,
            dropout: 0.0,
            // Two output frames per recurrent frame, split from epoch 7: the 5 + 7 epoch resume below
            // crosses the switch.
            upsample: 2,
            // Self-conditioned intermediate CTC, as the default model has it: its extra output layer
            // and conditioning map are trained, checkpointed and resumed like every other parameter.
            inter_ctc_layer: 1,
            self_condition: true,
            factored_word_start: false,
            inter_vocab: 0,
        }),
        // Tempo perturbation, as the default has it: seeded per (epoch, utterance), so the resumed run
        // below must stretch every utterance exactly as the uninterrupted one does.
        augment: AugmentOptions { tempo: 0.2, tempo_center: 1.15, ..AugmentOptions::none() },
        batch_frames: 400,
        max_batch: 4,
        lr: 3e-3,
        warmup_steps: 2,
        // About 24 steps in all: a short average, so that it differs from the last weights and
        // still follows them.
        ema_decay: 0.8,
        split_from_epoch: 7,
        beam_width: 0,
        progress: false,
        ..TrainOptions::default()
    }
}

fn weights(dir: &Path, file: &str) -> Vec<Vec<f32>> {
    let mut rec = Recognizer::load(dir, file).unwrap();
    rec.model.params_mut().into_iter().map(|p| p.value().to_vec()).collect()
}

#[test]
fn loss_falls_checkpoints_round_trip_and_resume_matches() {
    let dir = tmp_dir("smoke");
    let manifest = small_manifest(&dir, 8);
    let run = dir.join("run");
    let report =
        train(&TrainOptions { keep_epochs: true, ..tiny_options(&manifest, 12) }, &run, false).unwrap();
    let l = &report.step_losses;
    assert!(l.len() >= 20, "only {} steps", l.len());
    let head = l[..4].iter().sum::<f64>() / 4.0;
    let tail = l[l.len() - 4..].iter().sum::<f64>() / 4.0;
    assert!(tail < 0.7 * head, "loss did not fall: first steps {head:.3}, last steps {tail:.3}");
    assert_eq!(report.skipped_steps, 0);
    assert_eq!(report.epochs.len(), 12);
    assert!(report.epochs.last().unwrap().dev_loss < report.epochs[0].dev_loss);

    for f in [
        files::CONFIG,
        files::BEST,
        files::LAST,
        files::OPTIMIZER,
        files::EMA,
        files::STATE,
        files::METRICS,
        files::CURVES,
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    assert_eq!(std::fs::read_to_string(run.join(files::METRICS)).unwrap().lines().count(), 12);
    let svg = std::fs::read_to_string(run.join(files::CURVES)).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    // No temporary file is left behind by the atomic writes.
    for e in std::fs::read_dir(&run).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp"), "leftover {name}");
    }

    // Save/load round trip: weights saved, reloaded, saved again are byte-identical, and equal.
    let w = weights(&run, files::LAST);
    let mut rec = Recognizer::load(&run, files::LAST).unwrap();
    checkpoint::save_weights(&dir.join("copy.safetensors"), &rec.model).unwrap();
    assert_eq!(
        std::fs::read(run.join(files::LAST)).unwrap(),
        std::fs::read(dir.join("copy.safetensors")).unwrap()
    );
    assert_eq!(rec.model.params_mut().into_iter().map(|p| p.value().to_vec()).collect::<Vec<_>>(), w);
    let state = checkpoint::load_optimizer(&run.join(files::OPTIMIZER)).unwrap();
    assert_eq!(state.step, report.steps);
    assert_eq!(state.moments.len(), w.len());

    // The weight average is saved like weights (loadable as a model), differs from the last weights
    // but stays close to them, and is what model.safetensors holds at the best epoch.
    let avg = weights(&run, files::EMA);
    let diff = |a: &[Vec<f32>], b: &[Vec<f32>]| {
        a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max)
    };
    let (ema_vs_last, scale) = (diff(&avg, &w), w.iter().flatten().fold(0.0f32, |m, x| m.max(x.abs())));
    assert!(
        ema_vs_last > 1e-5 && ema_vs_last < 0.5 * scale,
        "average vs last weights: {ema_vs_last} (scale {scale})"
    );
    let best_epoch = checkpoint::load_state(&run.join(files::STATE)).unwrap().best_epoch;
    let best_cer = report.epochs.iter().map(|m| m.dev_cer).fold(f64::INFINITY, f64::min);
    assert_eq!(best_epoch, report.epochs.iter().position(|m| m.dev_cer == best_cer).map(|e| e as u64));
    if best_epoch == Some(11) {
        assert_eq!(weights(&run, files::BEST), avg);
    } else {
        assert_ne!(weights(&run, files::BEST), w, "model.safetensors should hold averaged weights");
    }
    // Every epoch's evaluated weights are kept: the best epoch's file is model.safetensors byte for
    // byte, the last one holds the final average.
    for e in 1..=12 {
        assert!(run.join(files::epoch_weights(e)).is_file(), "epoch {e} missing");
    }
    assert!(!run.join(files::epoch_weights(13)).exists());
    let best_file = files::epoch_weights(best_epoch.unwrap() + 1);
    assert_eq!(std::fs::read(run.join(&best_file)).unwrap(), std::fs::read(run.join(files::BEST)).unwrap());
    assert_eq!(weights(&run, &files::epoch_weights(12)), avg);

    // Resume: the same 12-epoch run interrupted after 5 epochs, then resumed, must match the
    // uninterrupted one.
    let run2 = dir.join("run2");
    let per_epoch = report.steps / 12;
    let mut interrupted = tiny_options(&manifest, 12);
    interrupted.pause_after_steps = Some(5 * per_epoch);
    let first = train(&interrupted, &run2, false).unwrap();
    assert_eq!(first.epochs.len(), 5);
    assert_eq!(checkpoint::load_state(&run2.join(files::STATE)).unwrap().epoch, 5);
    assert!(!run2.join(files::epoch_weights(1)).exists(), "epochs kept without keep_epochs");
    // Keeping epochs is an output choice the resumed run takes from its own options.
    let resumed =
        train(&TrainOptions { keep_epochs: true, ..tiny_options(&manifest, 12) }, &run2, true).unwrap();
    assert!(!run2.join(files::epoch_weights(5)).exists());
    assert!(run2.join(files::epoch_weights(6)).is_file() && run2.join(files::epoch_weights(12)).is_file());
    assert_eq!(resumed.epochs.len(), 12);
    assert_eq!(resumed.steps, report.steps);
    let w2 = weights(&run2, files::LAST);
    let max_diff =
        w.iter().flatten().zip(w2.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_diff <= 1e-4, "resumed weights differ by {max_diff}");
    // The weight average and the best model resume exactly too.
    let avg2 = weights(&run2, files::EMA);
    assert!(diff(&avg, &avg2) <= 1e-4, "resumed weight average differs by {}", diff(&avg, &avg2));
    let (best, best2) = (weights(&run, files::BEST), weights(&run2, files::BEST));
    assert!(diff(&best, &best2) <= 1e-4, "resumed best model differs by {}", diff(&best, &best2));
    let meta = |dir: &Path| {
        let bytes = std::fs::read(dir.join(files::EMA)).unwrap();
        let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        m.metadata().clone().unwrap()
    };
    assert_eq!(meta(&run)["updates"], report.steps.to_string());
    assert_eq!(meta(&run), meta(&run2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_transcripts_and_audio_are_named() {
    let dir = tmp_dir("bad");
    let good = data_dir().join("train/000001.ogg");
    let m = dir.join("m.jsonl");
    std::fs::write(
        &m,
        format!(
            "{{\"audio_filepath\": \"{}\", \"text\": \"eight\", \"duration\": 0.5}}\n{{\"audio_filepath\": \"{}\", \"text\": \"Eight!\", \"duration\": 0.5}}\n",
            good.display(),
            good.display()
        ),
    )
    .unwrap();
    let chars = OutputUnits::Chars.vocabulary();
    for units in [OutputUnits::Chars, OutputUnits::WordStart] {
        match load_corpus(&m, false, &units.vocabulary()) {
            Err(TrainError::BadTranscript { line: 2, character: 'E', .. }) => {}
            other => panic!("{units:?}: expected a bad transcript on line 2, got {other:?}"),
        }
    }
    let missing = dir.join("missing.ogg");
    let corrupt = dir.join("corrupt.ogg");
    std::fs::write(&corrupt, b"OggS but not really").unwrap();
    std::fs::write(
        &m,
        format!(
            "{{\"audio_filepath\": \"{}\", \"text\": \"eight\", \"duration\": 0.5}}\n{{\"audio_filepath\": \"{}\", \"text\": \"one\", \"duration\": 0.5}}\n{{\"audio_filepath\": \"{}\", \"text\": \"two\", \"duration\": 0.5}}\n",
            good.display(),
            missing.display(),
            corrupt.display()
        ),
    )
    .unwrap();
    let err = load_corpus(&m, false, &chars).unwrap_err();
    assert!(err.to_string().contains("missing.ogg"), "{err}");
    let c = load_corpus(&m, true, &chars).unwrap();
    assert_eq!(c.utterances.len(), 1);
    let skipped: Vec<String> = c.skipped.iter().map(|(p, _)| p.display().to_string()).collect();
    assert_eq!(skipped.len(), 2);
    assert!(skipped[0].ends_with("missing.ogg") && skipped[1].ends_with("corrupt.ogg"), "{skipped:?}");
    assert_eq!(chars.encode("a b'z").unwrap(), vec![3, 1, 4, 2, 28]);
    // The corpus's labels are the vocabulary's spelling: with word-start units, no space class and
    // the first letter of each word marked (apostrophe 1, a-z 2..=27, the same marked 28..=54).
    let words = load_corpus(&m, true, &OutputUnits::WordStart.vocabulary()).unwrap();
    assert_eq!(c.utterances[0].labels, vec![7, 11, 9, 10, 22]);
    assert_eq!(words.utterances[0].labels, vec![28 + 5, 10, 8, 9, 21]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn weight_average_decay_out_of_range_is_refused() {
    for bad in [1.0, -0.5, f64::NAN] {
        let opts = TrainOptions { ema_decay: bad, ..TrainOptions::default() };
        match opts.validate() {
            Err(TrainError::InvalidOption { option: "--ema-decay", .. }) => {}
            other => panic!("ema_decay {bad}: expected an --ema-decay error, got {other:?}"),
        }
    }
    assert!(TrainOptions { ema_decay: 0.0, ..TrainOptions::default() }.validate().is_ok());
}

#[test]
fn speed_factors_out_of_range_are_refused() {
    for (speeds, perturb) in
        [(vec![0.9, 2.5], true), (vec![f64::NAN], true), (vec![], true), (vec![0.4], false)]
    {
        let augment =
            AugmentOptions { speed_perturb: perturb, speeds: speeds.clone(), ..AugmentOptions::default() };
        match (TrainOptions { augment, ..TrainOptions::default() }).validate() {
            Err(TrainError::InvalidOption { option: "--speeds", .. }) => {}
            other => panic!("speeds {speeds:?}: expected a --speeds error, got {other:?}"),
        }
    }
    let augment = AugmentOptions { speeds: vec![0.9, 1.0, 1.1, 1.2], ..AugmentOptions::default() };
    assert!(TrainOptions { augment, ..TrainOptions::default() }.validate().is_ok());
}

#[test]
fn spec_augment_masks_out_of_range_are_refused() {
    use fastctc::train::data::MAX_MASKS;
    let with = |freq_masks, time_masks| TrainOptions {
        augment: AugmentOptions { freq_masks, time_masks, ..AugmentOptions::default() },
        ..TrainOptions::default()
    };
    for (freq, time, option) in [
        ((MAX_MASKS + 1, 5), (0, 0), "--freq-masks"),
        ((0, 0), (MAX_MASKS + 1, 5), "--time-masks"),
        // As wide as the default's mel bins: every frame's spectrum blanked.
        ((1, DEFAULT_MEL_BINS), (0, 0), "--freq-masks"),
    ] {
        match with(freq, time).validate() {
            Err(TrainError::InvalidOption { option: o, .. }) if o == option => {}
            other => panic!("{freq:?} {time:?}: expected an {option} error, got {other:?}"),
        }
    }
    assert!(with((MAX_MASKS, DEFAULT_MEL_BINS - 1), (MAX_MASKS, 40)).validate().is_ok());
    assert!(with((2, 10), (0, 0)).validate().is_ok());
}

#[test]
fn weight_decay_out_of_range_is_refused() {
    // 334 is above 1 / lr = 333.3 at the default peak 3e-3: each step would flip the weights' sign.
    for bad in [-0.01, f64::NAN, f64::INFINITY, 334.0] {
        let opts = TrainOptions { weight_decay: bad, ..TrainOptions::default() };
        match opts.validate() {
            Err(TrainError::InvalidOption { option: "--weight-decay", .. }) => {}
            other => panic!("weight decay {bad}: expected a --weight-decay error, got {other:?}"),
        }
    }
    for good in [0.0, 0.1, 100.0] {
        assert!(TrainOptions { weight_decay: good, ..TrainOptions::default() }.validate().is_ok(), "{good}");
    }
}

#[test]
fn inter_ctc_weight_out_of_range_is_refused() {
    for bad in [1.0, -0.1, f64::NAN] {
        let opts = TrainOptions { inter_ctc_weight: bad, ..TrainOptions::default() };
        match opts.validate() {
            Err(TrainError::InvalidOption { option: "--inter-ctc-weight", .. }) => {}
            other => panic!("weight {bad}: expected an --inter-ctc-weight error, got {other:?}"),
        }
    }
}

#[test]
fn output_units_must_match_the_model_outputs() {
    let words = TrainOptions { units: OutputUnits::WordStart, ..TrainOptions::default() };
    match words.validate() {
        Err(TrainError::InvalidOption { option: "model.vocab", reason }) => {
            assert!(reason.contains("29 outputs") && reason.contains("55"), "{reason}")
        }
        other => panic!("expected a model.vocab error, got {other:?}"),
    }
    let model = words.model.clone().with_vocab(55);
    assert!(TrainOptions { model, ..words.clone() }.validate().is_ok());
    // A factored word-start output reads its classes as word-start ones: with word-start units only.
    let factored = match words.model.clone().with_vocab(55) {
        ModelConfig::Gru(c) => ModelConfig::Gru(GruModelConfig { factored_word_start: true, ..c }),
        other => other,
    };
    assert!(TrainOptions { model: factored.clone(), ..words.clone() }.validate().is_ok());
    let chars = TrainOptions { model: factored.with_vocab(29), units: OutputUnits::Chars, ..words.clone() };
    assert!(matches!(
        chars.validate(),
        Err(TrainError::InvalidOption { option: "model.factored_word_start", .. })
    ));
    // The intermediate output's classes follow --inter-units when given, and must exist.
    let mixed = TrainOptions { inter_units: Some(OutputUnits::Chars), ..words.clone() };
    let mixed = TrainOptions { model: mixed.model.clone().with_vocab(55), ..mixed };
    assert!(matches!(
        mixed.validate(),
        Err(TrainError::InvalidOption { option: "model.inter_vocab", reason }) if reason.contains("55 classes, its units 29")
    ));
    let model = mixed.model.clone().with_inter_vocab(29);
    assert!(TrainOptions { model, ..mixed.clone() }.validate().is_ok());
    let plain = match mixed.model.clone().with_inter_vocab(29) {
        ModelConfig::Gru(c) => {
            ModelConfig::Gru(GruModelConfig { inter_ctc_layer: 0, self_condition: false, ..c })
        }
        other => other,
    };
    assert!(matches!(
        TrainOptions { model: plain, ..mixed }.validate(),
        Err(TrainError::InvalidOption { option: "--inter-units", .. })
    ));
}

/// Word-start units with a character intermediate output: each output's CTC loss reads the
/// transcripts in its own classes (a character label would be out of range for neither, a word-start
/// one for the intermediate output), the loss falls, and the saved model rebuilds with both.
#[test]
fn an_intermediate_output_with_units_of_its_own_trains() {
    let dir = tmp_dir("inter-units");
    let manifest = small_manifest(&dir, 8);
    let run = dir.join("run");
    let base = tiny_options(&manifest, 12);
    let opts = TrainOptions {
        units: OutputUnits::WordStart,
        inter_units: Some(OutputUnits::Chars),
        model: base.model.clone().with_vocab(55).with_inter_vocab(29),
        ..base
    };
    let report = train(&opts, &run, false).unwrap();
    let l = &report.step_losses;
    let head = l[..4].iter().sum::<f64>() / 4.0;
    let tail = l[l.len() - 4..].iter().sum::<f64>() / 4.0;
    assert!(tail < 0.7 * head, "loss did not fall: first steps {head:.3}, last steps {tail:.3}");
    assert_eq!(report.skipped_steps, 0);
    let rec = Recognizer::load(&run, files::LAST).unwrap();
    assert_eq!((rec.vocab.len(), rec.model.config().inter_vocab()), (55, Some(29)));
    assert_eq!(rec.model.param("inter.bias").unwrap().len(), 29);
    assert_eq!(rec.model.param("inter.condition.weight").unwrap().len(), 2 * 29 * 48);
    std::fs::remove_dir_all(&dir).unwrap();
}
