//! The `fastctc` binary: help for every subcommand, clear errors with a non-zero exit status, and
//! train -> transcribe / eval / align on a tiny model.
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fastctc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fastctc")).args(args).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["train", "eval", "transcribe", "align", "bench"] {
        let o = fastctc(&[sub, "--help"]);
        let (out, _) = text(&o);
        assert!(o.status.success(), "{sub} --help failed");
        assert!(out.contains("Usage: fastctc"), "{sub}: {out}");
    }
    let o = fastctc(&["--help"]);
    assert!(o.status.success() && text(&o).0.contains("transcribe"));
}

#[test]
fn errors_name_the_problem_and_fail() {
    let o = fastctc(&["eval", "/nonexistent/run", "data/dev.jsonl"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("/nonexistent/run/config.json"), "{}", text(&o).1);

    let o = fastctc(&["bench", "--shape", "nope"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("nope"), "{}", text(&o).1);

    let o = fastctc(&["train", "--minutes", "0", "--no-progress", "--out", "/tmp/fastctc-never-written"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("--minutes"), "{}", text(&o).1);

    // A zero stride is refused by the model's validation, which names the field.
    let o = fastctc(&["train", "--conv-stride", "0", "--no-progress", "--out", "/tmp/fastctc-never-written"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("conv_stride"), "{}", text(&o).1);

    // Speaking-rate targets are two positive rates, the lower first.
    for bad in ["12", "12,x", "22,10", "0,10"] {
        let o =
            fastctc(&["train", "--tempo-rate", bad, "--no-progress", "--out", "/tmp/fastctc-never-written"]);
        assert!(!o.status.success());
        assert!(text(&o).1.contains("--tempo-rate"), "{bad}: {}", text(&o).1);
    }

    // Mask options are two whole numbers, within the limits the trainer checks.
    for (flag, bad) in
        [("--freq-masks", "2"), ("--freq-masks", "2,1.5"), ("--time-masks", "-1,5"), ("--freq-masks", "17,5")]
    {
        let arg = format!("{flag}={bad}");
        let o = fastctc(&["train", &arg, "--no-progress", "--out", "/tmp/fastctc-never-written"]);
        assert!(!o.status.success());
        assert!(text(&o).1.contains(flag), "{flag} {bad}: {}", text(&o).1);
    }

    // Weight decay is non-negative.
    let o = fastctc(&["train", "--weight-decay=-1", "--no-progress", "--out", "/tmp/fastctc-never-written"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("--weight-decay"), "{}", text(&o).1);

    let o = fastctc(&["frobnicate"]);
    assert!(!o.status.success());
}

#[test]
fn bench_reports_every_shape_asked_for() {
    let o = fastctc(&["bench", "--shape", "tiny", "--rounds", "2", "--threads", "1"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let (out, _) = text(&o);
    assert!(out.lines().any(|l| l.starts_with("tiny")), "{out}");
}

/// A fresh directory `fastctc-cli-<name>-<pid>` holding `m.jsonl`: the first six dev utterances with
/// absolute audio paths. Returns the directory and the manifest's text.
fn small_manifest(name: &str) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("fastctc-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = std::fs::read_to_string(data_dir().join("dev.jsonl")).unwrap();
    let mut manifest = String::new();
    for line in src.lines().take(6) {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let rel = v["audio_filepath"].as_str().unwrap().to_string();
        v["audio_filepath"] = serde_json::Value::String(data_dir().join(rel).display().to_string());
        manifest.push_str(&v.to_string());
        manifest.push('\n');
    }
    std::fs::write(dir.join("m.jsonl"), &manifest).unwrap();
    (dir, manifest)
}

#[test]
fn train_then_transcribe_eval_and_align() {
    let (dir, manifest) = small_manifest("chars");
    let m = dir.join("m.jsonl");
    let run = dir.join("run");
    let (ms, rs) = (m.display().to_string(), run.display().to_string());
    let o = fastctc(&[
        "train",
        "--train",
        &ms,
        "--dev",
        &ms,
        "--test",
        &ms,
        "--epochs",
        "1",
        "--hidden",
        "16",
        "--layers",
        "1",
        "--conv-channels",
        "16",
        "--conv-layers",
        "1",
        "--conv-kernel",
        "5",
        "--conv-stride",
        "3",
        "--upsample",
        "3",
        "--mel-bins",
        "24",
        // The first three are off by default and tempo is set away from its default; set here so that
        // their code paths stay exercised and the flags reach the saved options.
        "--specaugment",
        "--noise-prob",
        "0.5",
        "--vtlp",
        "0.1",
        "--tempo",
        "0.25",
        "--tempo-center",
        "1.1",
        "--beam",
        "2",
        "--no-progress",
        "--out",
        &rs,
    ]);
    assert!(o.status.success(), "train failed: {}", text(&o).1);
    assert!(text(&o).1.contains("test, greedy"), "{}", text(&o).1);
    assert!(run.join("lm.arpa").is_file() && run.join("results.json").is_file());
    // The subsampling, output-split and mel-bin flags reach the saved model config (and so every later
    // command): 10 ms features of 24 bins, x3 subsampling, 3 output frames per recurrent frame.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    let model = &config["model"];
    assert_eq!(
        (&model["conv_layers"], &model["conv_kernel"], &model["conv_stride"], &model["upsample"]),
        (&1.into(), &5.into(), &3.into(), &3.into())
    );
    assert!((config["frame_shift_s"].as_f64().unwrap() - 0.01).abs() < 1e-9, "{config}");
    assert_eq!(
        (&config["features"]["num_mel_bins"], &model["input_dim"]),
        (&24.into(), &24.into()),
        "{config}"
    );
    let options: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("train_options.json")).unwrap()).unwrap();
    let augment = &options["augment"];
    assert_eq!((&augment["freq_masks"][0], &augment["time_masks"][0]), (&2.into(), &2.into()), "{options}");
    assert_eq!(augment["noise_prob"].as_f64(), Some(0.5), "{options}");
    assert_eq!(augment["vtlp"].as_f64(), Some(0.1), "{options}");
    assert_eq!(augment["tempo"].as_f64(), Some(0.25), "{options}");
    assert_eq!(augment["tempo_center"].as_f64(), Some(1.1), "{options}");
    assert!(options["trim_silence"].is_object(), "{options}");

    let first: serde_json::Value = serde_json::from_str(manifest.lines().next().unwrap()).unwrap();
    let audio = first["audio_filepath"].as_str().unwrap();
    let transcript = first["text"].as_str().unwrap();
    let o = fastctc(&["transcribe", &rs, audio]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(text(&o).0.lines().count(), 1);

    let o = fastctc(&["eval", &rs, &ms, "--beam", "2", "--lm", &run.join("lm.arpa").display().to_string()]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(text(&o).0.contains("CER"), "{}", text(&o).0);

    // One kind, per speaker, with the utterances it got wrong: the table covers exactly the speakers
    // of that kind's lines, its counts add up to the manifest's, and the listed errors are exactly the
    // utterances whose greedy transcription (by `transcribe`) differs from the reference.
    let digits: Vec<serde_json::Value> = manifest
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "digits")
        .collect();
    assert!(digits.len() >= 2 && digits.len() < manifest.lines().count(), "{manifest}");
    let o = fastctc(&["eval", &rs, &ms, "--kind", "digits", "--by-speaker", "--errors"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let out = text(&o).0;
    let all = out.lines().find(|l| l.trim_start().starts_with("all ")).unwrap();
    assert!(all.contains(&format!(" {} utts", digits.len())), "{out}");
    assert!(!out.contains("sentence"), "{out}");
    let header = out.lines().position(|l| l.trim_start().starts_with("speaker ")).expect("speaker table");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(header + 1)
        .take_while(|l| !l.contains('\t'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let mut speakers: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    speakers.sort_unstable();
    let mut expected: Vec<&str> = digits.iter().map(|v| v["speaker"].as_str().unwrap()).collect();
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(speakers, expected, "{out}");
    // Row: speaker, utterances, wrong, "/", words, CER, WER.
    let utts: usize = rows.iter().map(|r| r[1].parse::<usize>().unwrap()).sum();
    let words: usize = rows.iter().map(|r| r[4].parse::<usize>().unwrap()).sum();
    let ref_words: usize =
        digits.iter().map(|v| v["text"].as_str().unwrap().split_whitespace().count()).sum();
    assert_eq!((utts, words), (digits.len(), ref_words), "{out}");
    let listed: Vec<&str> =
        out.lines().filter(|l| l.contains('\t')).map(|l| l.split('\t').next().unwrap()).collect();
    let files: Vec<&str> = digits.iter().map(|v| v["audio_filepath"].as_str().unwrap()).collect();
    let o = fastctc(&[&["transcribe", rs.as_str()][..], &files].concat());
    assert!(o.status.success(), "{}", text(&o).1);
    let transcribed = text(&o).0;
    let wrong: Vec<&str> = transcribed
        .lines()
        .zip(&digits)
        .filter(|(l, v)| l.split_once('\t').unwrap().1 != v["text"].as_str().unwrap())
        .map(|(l, _)| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(listed, wrong, "{out}\n{transcribed}");
    let o = fastctc(&["eval", &rs, &ms, "--kind", "poetry"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("poetry") && text(&o).1.contains("digits, sentence"), "{}", text(&o).1);

    let o = fastctc(&["align", &rs, audio, transcript, "--format", "ctm"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let words: Vec<String> =
        text(&o).0.lines().map(|l| l.split_whitespace().nth(4).unwrap_or_default().to_string()).collect();
    assert_eq!(words, transcript.split_whitespace().map(str::to_string).collect::<Vec<_>>());

    let o = fastctc(&["align", &rs, audio, "Not Valid!"]);
    assert!(!o.status.success());

    let o = fastctc(&["transcribe", &rs, "/nonexistent.ogg"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("/nonexistent.ogg"), "{}", text(&o).1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn word_start_units_train_decode_and_align() {
    let (dir, manifest) = small_manifest("words");
    let (ms, rs) = (dir.join("m.jsonl").display().to_string(), dir.join("run").display().to_string());
    let tiny = ["--hidden", "16", "--layers", "1", "--conv-channels", "16", "--conv-layers", "1"];
    let mut args = vec!["train", "--train", &ms, "--dev", &ms, "--test", &ms, "--epochs", "1"];
    args.extend(tiny);
    args.extend(["--units", "word-start", "--beam", "2", "--no-progress", "--out", &rs]);
    let o = fastctc(&args);
    assert!(o.status.success(), "train failed: {}", text(&o).1);
    assert!(text(&o).1.contains("test, beam 2 + word"), "{}", text(&o).1);
    // The model's outputs and the saved vocabulary are the word-start units: no separator class.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/config.json")).unwrap()).unwrap();
    assert_eq!(config["vocabulary"].as_array().unwrap().len(), 55, "{config}");
    assert_eq!(config["model"]["vocab"], 55);
    assert!(config["separator"].is_null(), "{config}");
    assert_eq!(config["vocabulary"][28], "\u{2581}'");
    let options: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/train_options.json")).unwrap()).unwrap();
    assert_eq!(options["units"], "word-start");

    // Forced alignment reads the words back from the marked tokens.
    let first: serde_json::Value = serde_json::from_str(manifest.lines().next().unwrap()).unwrap();
    let (audio, transcript) = (first["audio_filepath"].as_str().unwrap(), first["text"].as_str().unwrap());
    let o = fastctc(&["align", &rs, audio, transcript, "--format", "ctm"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let words: Vec<String> =
        text(&o).0.lines().map(|l| l.split_whitespace().nth(4).unwrap_or_default().to_string()).collect();
    assert_eq!(words, transcript.split_whitespace().map(str::to_string).collect::<Vec<_>>());
    let o =
        fastctc(&["eval", &rs, &ms, "--beam", "2", "--lm", &dir.join("run/lm.arpa").display().to_string()]);
    assert!(o.status.success() && text(&o).0.contains("CER"), "{}", text(&o).1);

    let o =
        fastctc(&["train", "--units", "syllables", "--no-progress", "--out", "/tmp/fastctc-never-written"]);
    assert!(!o.status.success() && text(&o).1.contains("--units"), "{}", text(&o).1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--factored-output`: the model's config says so, its output layer has 29 logits for the 55
/// classes, and eval loads it as such; without word-start units, or with the convolutional model, it
/// is refused before anything is written. `--inter-units`: likewise for the intermediate output's
/// own classes.
#[test]
fn word_start_model_variants_train_and_load() {
    let (dir, _) = small_manifest("factored");
    let (ms, rs) = (dir.join("m.jsonl").display().to_string(), dir.join("run").display().to_string());
    let tiny = ["--hidden", "16", "--layers", "2", "--conv-channels", "16", "--conv-layers", "1"];
    let mut args = vec!["train", "--train", &ms, "--dev", &ms, "--no-test", "--epochs", "1"];
    args.extend(tiny);
    args.extend(["--units", "word-start", "--factored-output", "--no-progress", "--out", &rs]);
    let o = fastctc(&args);
    assert!(o.status.success(), "train failed: {}", text(&o).1);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/config.json")).unwrap()).unwrap();
    assert_eq!(
        (&config["model"]["vocab"], &config["model"]["factored_word_start"]),
        (&55.into(), &true.into())
    );
    let weights = std::fs::read(dir.join("run/model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&weights).unwrap();
    assert_eq!(tensors.tensor("output.bias").unwrap().shape(), [29]);
    assert_eq!(tensors.tensor("inter.bias").unwrap().shape(), [29]);
    let o = fastctc(&["eval", &rs, &ms]);
    assert!(o.status.success() && text(&o).0.contains("CER"), "{}", text(&o).1);

    let never = dir.join("never").display().to_string();
    for extra in [&["--units", "chars"][..], &["--arch", "conv", "--units", "word-start"]] {
        let mut args = vec!["train", "--train", &ms, "--dev", &ms, "--factored-output", "--out", &never];
        args.extend(extra);
        let o = fastctc(&args);
        assert!(!o.status.success(), "{extra:?} accepted");
        assert!(text(&o).1.contains("factored"), "{extra:?}: {}", text(&o).1);
        assert!(!dir.join("never").exists());
    }

    // A character intermediate output under word-start units: its own 29 classes, saved and loaded.
    let rs2 = dir.join("run2").display().to_string();
    let mut args = vec!["train", "--train", &ms, "--dev", &ms, "--no-test", "--epochs", "1"];
    args.extend(tiny);
    args.extend(["--units", "word-start", "--inter-units", "chars", "--no-progress", "--out", &rs2]);
    let o = fastctc(&args);
    assert!(o.status.success(), "train failed: {}", text(&o).1);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run2/config.json")).unwrap()).unwrap();
    assert_eq!((&config["model"]["vocab"], &config["model"]["inter_vocab"]), (&55.into(), &29.into()));
    let options: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run2/train_options.json")).unwrap()).unwrap();
    assert_eq!(options["inter_units"], "chars");
    let o = fastctc(&["eval", &rs2, &ms]);
    assert!(o.status.success() && text(&o).0.contains("CER"), "{}", text(&o).1);
    // With one GRU layer the default model has no intermediate output to give the units to.
    let o =
        fastctc(&["train", "--train", &ms, "--layers", "1", "--inter-units", "word-start", "--out", &never]);
    assert!(!o.status.success() && text(&o).1.contains("--inter-units"), "{}", text(&o).1);
    std::fs::remove_dir_all(&dir).unwrap();
}
