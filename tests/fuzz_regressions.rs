//! Replays every committed fuzz input under `fuzz/regressions/ctc/` through the same decoding and
//! check as the fuzz target (`fuzz/fuzz_targets/ctc_case.rs`, included by path so the two cannot
//! diverge).

#[path = "../fuzz/fuzz_targets/ctc_case.rs"]
mod ctc_case;

use std::path::PathBuf;

#[test]
fn replay_committed_fuzz_inputs() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/ctc");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no regression inputs in {}", dir.display());
    // Every file is replayed even after a failure, so one open bug does not hide a regression in another.
    let mut failed = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let case = ctc_case::CtcCase::from_bytes(&bytes)
            .unwrap_or_else(|e| panic!("{}: does not decode: {e}", path.display()));
        eprintln!("replaying {}", path.display());
        if std::panic::catch_unwind(|| ctc_case::check(&case)).is_err() {
            failed.push(path.file_name().unwrap_or_default().to_string_lossy().into_owned());
        }
    }
    assert!(failed.is_empty(), "{} of {} regression inputs fail: {failed:?}", failed.len(), files.len());
}
