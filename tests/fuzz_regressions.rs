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
