//! Errors a user can act on: each names the file, the object, the field and what would be
//! valid.

use std::fmt;
use std::path::PathBuf;

/// One problem with one field of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// `Kind namespace/name` or `Kind name`, e.g. `NodePool default`.
    pub object: String,
    /// A JSON path into the object, e.g. `spec.template.spec.requirements[0].operator`.
    pub field: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl FieldError {
    pub fn new(
        object: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> FieldError {
        FieldError {
            object: object.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.field, self.message)
    }
}

/// A problem with one input source (a file, or `-` for stdin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceError {
    /// The file as the user named it; `<stdin>` for `-`.
    pub source: String,
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{source_name}: not valid YAML: {message}")]
    Yaml {
        source_name: String,
        message: String,
    },
    /// Every invalid object in every input, so one bad object does not hide the others.
    #[error("{}", render_invalid(.0))]
    Invalid(Vec<SourceError>),
}

fn render_invalid(sources: &[SourceError]) -> String {
    let n: usize = sources.iter().map(|s| s.errors.len()).sum();
    let mut out = format!("{n} invalid field{}:", if n == 1 { "" } else { "s" });
    for s in sources {
        for e in &s.errors {
            out.push_str(&format!("\n  {}: {e}", s.source));
        }
    }
    out
}
