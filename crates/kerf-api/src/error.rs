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

/// The problems with one input source (a file, or `-` for stdin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceError {
    /// The file as the user named it; `<stdin>` for `-`.
    pub source: String,
    /// Documents that are not valid YAML (or JSON), each message with its line: the
    /// source's other documents are still read.
    pub syntax: Vec<String>,
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
    /// Every syntax error and every invalid object in every input, so one bad document
    /// does not hide the others.
    #[error("{}", render_invalid(.0))]
    Invalid(Vec<SourceError>),
    /// The inputs hold no object at all (kubectl: "no objects passed to apply"); an
    /// empty plan would read as "nothing to do" when the wrong path was given.
    #[error(
        "no objects passed: {} hold{} no Kubernetes objects (a directory is read for .yaml, .yml and .json files)",
        .0.join(", "),
        if .0.len() == 1 { "s" } else { "" }
    )]
    NoObjects(Vec<String>),
}

fn render_invalid(sources: &[SourceError]) -> String {
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let n_syntax: usize = sources.iter().map(|s| s.syntax.len()).sum();
    let n_fields: usize = sources.iter().map(|s| s.errors.len()).sum();
    let mut out = match (n_syntax, n_fields) {
        (0, n) => count(n, "invalid field"),
        (n, 0) => count(n, "syntax error"),
        (s, f) => format!(
            "{} and {}",
            count(s, "syntax error"),
            count(f, "invalid field")
        ),
    };
    out.push(':');
    for s in sources {
        for message in &s.syntax {
            out.push_str(&format!("\n  {}: {message}", s.source));
        }
        for e in &s.errors {
            out.push_str(&format!("\n  {}: {e}", s.source));
        }
    }
    out
}
