//! The shipped corpus (`data/{train,dev,test}.jsonl`): every entry decodes through `read_audio`,
//! its decoded duration matches the manifest within 20 ms, transcripts use only `a-z`, apostrophe
//! and space, and no speaker appears in two splits. Skipped, with a message, when `data/` is absent.
#![cfg(feature = "audio")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use fastctc::audio::read_audio;
use fastctc::train::manifest::{read_manifest, ManifestEntry};

/// Largest allowed |decoded - stated| duration, in seconds.
const DURATION_TOL_S: f64 = 0.020;
const SPLITS: [&str; 3] = ["train", "dev", "test"];

/// Decodes every entry on all cores (the corpus is thousands of Ogg files); returns one message per
/// failing entry.
fn check_audio(entries: &[ManifestEntry], manifest: &Path) -> Vec<String> {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(e) = entries.get(i) else { break };
                let problem = match read_audio(&e.audio_filepath) {
                    Err(err) => Some(format!("does not decode: {err}")),
                    Ok(a) => {
                        let d = a.duration_s();
                        ((d - e.duration).abs() > DURATION_TOL_S)
                            .then(|| format!("decoded duration {d:.4} s, manifest says {:.4} s", e.duration))
                    }
                };
                if let Some(p) = problem {
                    failures.lock().unwrap().push(format!("{}:{}: {p}", manifest.display(), e.line));
                }
            });
        }
    });
    let mut f = failures.into_inner().unwrap();
    f.sort();
    f
}

#[test]
fn corpus_is_consistent() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    if !data.join("train.jsonl").exists() {
        println!("skipping corpus checks: {} has no train.jsonl", data.display());
        return;
    }
    let mut failures = Vec::new();
    let mut speakers: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    let mut total = 0;
    for split in SPLITS {
        let manifest = data.join(format!("{split}.jsonl"));
        let entries = match read_manifest(&manifest) {
            Ok(e) => e,
            Err(err) => {
                failures.push(err.to_string());
                continue;
            }
        };
        assert!(!entries.is_empty(), "{} is empty", manifest.display());
        total += entries.len();
        for e in &entries {
            if let Some(bad) = e.text.chars().find(|c| !(c.is_ascii_lowercase() || *c == '\'' || *c == ' ')) {
                failures.push(format!(
                    "{}:{}: text {:?} has {bad:?}; only a-z, ' and space are allowed",
                    manifest.display(),
                    e.line,
                    e.text
                ));
            }
            if let Some(s) = e.speaker() {
                speakers.entry(s).or_default().insert(split);
            }
        }
        failures.extend(check_audio(&entries, &manifest));
    }
    for (speaker, splits) in &speakers {
        if splits.len() > 1 {
            failures.push(format!("speaker {speaker:?} appears in {splits:?}"));
        }
    }
    println!("corpus: {total} entries, {} speakers, {} problems", speakers.len(), failures.len());
    assert!(
        failures.is_empty(),
        "{} problems, first 20:\n{}",
        failures.len(),
        failures.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}
