//! JSON-lines manifests: parsing, path resolution, extra fields, and errors with line numbers.
#![cfg(feature = "audio")]

use std::path::Path;

use fastctc::train::manifest::{parse_manifest, read_manifest, ManifestError};

fn parse(text: &str) -> Result<Vec<fastctc::train::manifest::ManifestEntry>, ManifestError> {
    parse_manifest(text, Path::new("/corpus/train.jsonl"), Path::new("/corpus"))
}

#[test]
fn reads_entries_resolves_paths_and_keeps_extra_fields() {
    let text = concat!(
        r#"{"audio_filepath": "audio/a.ogg", "text": "hello world", "duration": 1.25, "speaker": "s01", "kind": "tts"}"#,
        "\n\n",
        r#"{"audio_filepath": "/abs/b.wav", "text": "", "duration": 0, "speaker": 7}"#,
        "\n"
    );
    let entries = parse(text).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].audio_filepath, Path::new("/corpus/audio/a.ogg"));
    assert_eq!(entries[0].text, "hello world");
    assert_eq!(entries[0].duration, 1.25);
    assert_eq!(entries[0].speaker().as_deref(), Some("s01"));
    assert_eq!(entries[0].extra["kind"], "tts");
    assert!(!entries[0].extra.contains_key("text"));
    assert_eq!(entries[0].line, 1);
    assert_eq!(entries[1].audio_filepath, Path::new("/abs/b.wav"));
    assert_eq!(entries[1].speaker().as_deref(), Some("7"));
    assert_eq!(entries[1].line, 3);
}

#[test]
fn errors_name_the_line_and_field() {
    let good = r#"{"audio_filepath": "a.wav", "text": "a", "duration": 1.0}"#;
    let cases: [(&str, &str); 9] = [
        ("{not json", "not a JSON object"),
        ("[1, 2]", "not an object"),
        (
            r#"{"text": "a", "duration": 1}"#,
            "missing field `audio_filepath`",
        ),
        (
            r#"{"audio_filepath": "a.wav", "duration": 1}"#,
            "missing field `text`",
        ),
        (
            r#"{"audio_filepath": "a.wav", "text": "a"}"#,
            "missing field `duration`",
        ),
        (
            r#"{"audio_filepath": 3, "text": "a", "duration": 1}"#,
            "`audio_filepath`",
        ),
        (
            r#"{"audio_filepath": "a.wav", "text": 5, "duration": 1}"#,
            "`text`",
        ),
        (
            r#"{"audio_filepath": "a.wav", "text": "a", "duration": -1}"#,
            "`duration`",
        ),
        (
            r#"{"audio_filepath": "a.wav", "text": "a", "duration": "1"}"#,
            "`duration`",
        ),
    ];
    for (bad, needle) in cases {
        let text = format!("{good}\n{good}\n{bad}\n{good}\n");
        let err = parse(&text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/corpus/train.jsonl:3:"), "{msg}");
        assert!(msg.contains(needle), "{bad}: {msg}");
    }
}

#[test]
fn read_manifest_resolves_against_its_folder_and_reports_io_errors() {
    let dir = std::env::temp_dir().join(format!("fastctc-manifest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dev.jsonl");
    std::fs::write(
        &path,
        "{\"audio_filepath\": \"clips/x.flac\", \"text\": \"x\", \"duration\": 2.5}\n",
    )
    .unwrap();
    let entries = read_manifest(&path).unwrap();
    assert_eq!(entries[0].audio_filepath, dir.join("clips/x.flac"));
    let err = read_manifest(&dir.join("nope.jsonl")).unwrap_err();
    assert!(matches!(err, ManifestError::Io { .. }));
    assert!(err.to_string().contains("nope.jsonl"));
    std::fs::remove_dir_all(&dir).unwrap();
}
