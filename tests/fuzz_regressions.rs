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
    for path in &files {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let case = ctc_case::CtcCase::from_bytes(&bytes)
            .unwrap_or_else(|e| panic!("{}: does not decode: {e}", path.display()));
        eprintln!("replaying {}", path.display());
        ctc_case::check(&case);
    }
}
