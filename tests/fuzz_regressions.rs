//! Replays committed fuzz inputs through the same decoding and check as the fuzz target
//! (`fuzz/fuzz_targets/ctc_case.rs`, included by path so the two cannot diverge):
//! - `fuzz/regressions/ctc/`: minimised inputs that once failed the check;
//! - `fuzz/seeds/ctc/`: valid batches from the fuzzer's corpus (ragged, with labels and a gradient),
//!   each compared against the f64 reference in f32 and f64, so that the replay is a differential
//!   test of the kernel and not only a crash test.

#[path = "../fuzz/fuzz_targets/ctc_case.rs"]
mod ctc_case;

use std::path::{Path, PathBuf};

/// Replays every file of `dir` (every one, even after a failure, so that one open bug does not hide a
/// regression in another) and returns, per file, how many runs were valid input.
fn replay(dir: &str) -> Vec<(String, usize)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    let mut failed = Vec::new();
    let mut valid = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let case = ctc_case::CtcCase::from_bytes(&bytes)
            .unwrap_or_else(|e| panic!("{}: does not decode: {e}", path.display()));
        eprintln!("replaying {}", path.display());
        match std::panic::catch_unwind(|| ctc_case::check(&case)) {
            Ok(n) => valid.push((name, n)),
            Err(_) => failed.push(name),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs in {} fail: {failed:?}",
        failed.len(),
        files.len(),
        dir.display()
    );
    valid
}

#[test]
fn replay_committed_fuzz_regressions() {
    replay("fuzz/regressions/ctc");
}

#[test]
fn replay_valid_seed_batches_against_the_reference() {
    for (name, valid) in replay("fuzz/seeds/ctc") {
        assert_eq!(valid, 2, "{name}: expected a valid batch in both f32 and f64");
    }
}

/// Found by the fuzzer (`fuzz/regressions/ctc/f32-mean-reduction-accumulator-overflows`): the mean
/// reduction adds `loss_b / max(L_b, 1)` in `F` before dividing by `B`, so in f32 the partial sum
/// overflows to infinity although the mean itself is representable. Here five sequences of four frames
/// of unnormalised log-probabilities `-2e37`, with empty targets, each have loss `8e37`: their sum,
/// `4e38`, exceeds `f32::MAX` (`3.4e38`); their mean, `8e37`, does not. (Fix: accumulate the reduction
/// in f64, where the per-sequence log-likelihoods already are, and round once.)
#[test]
fn f32_mean_reduction_does_not_overflow_when_the_mean_fits() {
    use fastctc::{ctc_loss, ActsView, CtcOptions, InputKind, Reduction, Targets};
    let (t, b, v) = (4, 5, 2);
    let acts = vec![-2e37f32; t * b * v];
    let view = ActsView::time_major(&acts, t, b, v).unwrap();
    let lengths = [0u32; 5];
    let input_lengths = [4u32; 5];
    let opts = CtcOptions { input: InputKind::LogProbs, reduction: Reduction::Mean, ..Default::default() };
    let out =
        ctc_loss(&view, &Targets::Concatenated { labels: &[], lengths: &lengths }, &input_lengths, &opts)
            .unwrap();
    assert!(out.losses.iter().all(|&l| l == 8e37), "{:?}", out.losses);
    assert_eq!(out.reduced, 8e37, "the mean of five losses of 8e37");
}
