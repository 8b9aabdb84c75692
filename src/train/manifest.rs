//! JSON-lines manifests (NeMo's convention): one utterance per line,
//! `{"audio_filepath": "...", "text": "...", "duration": 1.23, ...}`.
//!
//! Relative audio paths are resolved against the folder holding the manifest, so a corpus folder can
//! be moved as a whole. Blank lines are skipped. Fields other than the three required ones (e.g.
//! `speaker`, `kind`) are kept, untouched, in [`ManifestEntry::extra`].

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// One utterance of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestEntry {
    /// The audio file: absolute as written, or joined to the manifest's folder when relative.
    pub audio_filepath: PathBuf,
    /// The transcript, as written (no normalisation is applied here).
    pub text: String,
    /// Duration in seconds, finite and `>= 0`, as stated by the manifest.
    pub duration: f64,
    /// Every other field of the line, by name.
    pub extra: Map<String, Value>,
    /// 1-based line number in the manifest, for error messages downstream.
    pub line: usize,
}

impl ManifestEntry {
    /// The `speaker` field when it is a string (or a number, rendered in decimal).
    pub fn speaker(&self) -> Option<String> {
        match self.extra.get("speaker")? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// What is wrong with a manifest; every variant names the file, and the line where there is one.
#[derive(Debug)]
#[non_exhaustive]
pub enum ManifestError {
    /// The manifest could not be read.
    Io {
        /// The manifest.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A line is not a JSON object.
    Json {
        /// The manifest.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parser's message.
        detail: String,
    },
    /// A required field is absent.
    MissingField {
        /// The manifest.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field's name.
        field: &'static str,
    },
    /// A field has the wrong type or an out-of-range value.
    InvalidField {
        /// The manifest.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field's name.
        field: &'static str,
        /// What was found and what was expected.
        detail: String,
    },
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ManifestError::Json { path, line, detail } => {
                write!(f, "{}:{line}: not a JSON object: {detail}", path.display())
            }
            ManifestError::MissingField { path, line, field } => {
                write!(f, "{}:{line}: missing field `{field}`", path.display())
            }
            ManifestError::InvalidField { path, line, field, detail } => {
                write!(f, "{}:{line}: field `{field}`: {detail}", path.display())
            }
        }
    }
}

impl std::error::Error for ManifestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ManifestError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads a JSON-lines manifest. Errors stop at the first bad line, naming the file and the line.
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestEntry>, ManifestError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ManifestError::Io { path: path.to_path_buf(), source })?;
    let base = path.parent().unwrap_or(Path::new(""));
    parse_manifest(&text, path, base)
}

/// Parses manifest text; `path` is only used in errors, `base` is the folder relative audio paths
/// are resolved against.
pub fn parse_manifest(text: &str, path: &Path, base: &Path) -> Result<Vec<ManifestEntry>, ManifestError> {
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        entries.push(parse_line(raw, path, base, line)?);
    }
    Ok(entries)
}

fn parse_line(raw: &str, path: &Path, base: &Path, line: usize) -> Result<ManifestEntry, ManifestError> {
    let value: Value = serde_json::from_str(raw).map_err(|e| ManifestError::Json {
        path: path.to_path_buf(),
        line,
        detail: e.to_string(),
    })?;
    let Value::Object(mut obj) = value else {
        return Err(ManifestError::Json {
            path: path.to_path_buf(),
            line,
            detail: "the line is valid JSON but not an object".into(),
        });
    };
    let missing = |field| ManifestError::MissingField { path: path.to_path_buf(), line, field };
    let invalid =
        |field, detail: String| ManifestError::InvalidField { path: path.to_path_buf(), line, field, detail };
    let audio = match obj.remove("audio_filepath") {
        None => return Err(missing("audio_filepath")),
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(v) => return Err(invalid("audio_filepath", format!("{v} is not a non-empty string"))),
    };
    let text = match obj.remove("text") {
        None => return Err(missing("text")),
        Some(Value::String(s)) => s,
        Some(v) => return Err(invalid("text", format!("{v} is not a string"))),
    };
    let duration = match obj.remove("duration") {
        None => return Err(missing("duration")),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(d) if d.is_finite() && d >= 0.0 => d,
            _ => return Err(invalid("duration", format!("{n} is not a finite number >= 0"))),
        },
        Some(v) => return Err(invalid("duration", format!("{v} is not a number"))),
    };
    let audio = PathBuf::from(audio);
    let audio_filepath = if audio.is_absolute() { audio } else { base.join(audio) };
    Ok(ManifestEntry { audio_filepath, text, duration, extra: obj, line })
}
