//! A source's text into documents, each labelled with where it starts.
//!
//! A syntax error is the source's problem, not the whole load's: when the stream does
//! not parse, it is split at its `---` lines and each document parsed alone, so the
//! documents around a broken one are still read and checked, and every broken one is
//! reported with its line in the file.

use serde_json::Value;

/// What one source holds.
pub(crate) struct Parsed {
    /// `(document 3 at line 41, value)`, in order.
    pub(crate) documents: Vec<(String, Value)>,
    /// One message per document that is not valid YAML (or a JSON file that is not
    /// valid JSON), with its line.
    pub(crate) syntax: Vec<String>,
}

pub(crate) fn parse(source: &str, text: &str) -> Parsed {
    // `kubectl get -o json` output is JSON, which serde_json reads many times faster than
    // a YAML parser; anything it cannot read goes to the YAML parser (JSON is YAML, and
    // flow-style YAML starts with `{` too).
    let mut json_error = None;
    if text.trim_start().starts_with('{') {
        let json: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .collect();
        match json {
            Ok(values) => {
                let documents = values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (format!("document {}", i + 1), v))
                    .collect();
                return Parsed {
                    documents,
                    syntax: Vec::new(),
                };
            }
            Err(e) => json_error = Some(e),
        }
    }
    let whole =
        serde_saphyr::from_multiple_with_options::<serde_saphyr::Spanned<Value>>(text, options());
    match whole {
        Ok(documents) => Parsed {
            documents: documents
                .into_iter()
                .enumerate()
                .map(|(i, d)| (label(i, d.referenced.line()), d.value))
                .collect(),
            syntax: Vec::new(),
        },
        // A `.json` file, or text that starts like JSON (a quoted key), was meant as JSON:
        // the JSON parser's error is the one that describes the mistake.
        Err(_) if json_error.is_some() && means_json(source, text) => Parsed {
            documents: Vec::new(),
            syntax: json_error
                .map(|e| format!("not valid JSON: {}", json_message(&e)))
                .into_iter()
                .collect(),
        },
        Err(_) => parse_each(text),
    }
}

/// Parses document by document, for a stream that does not parse as a whole.
fn parse_each(text: &str) -> Parsed {
    let mut parsed = Parsed {
        documents: Vec::new(),
        syntax: Vec::new(),
    };
    for (first_line, chunk) in split(text) {
        let offset = first_line - 1;
        match serde_saphyr::from_multiple_with_options::<serde_saphyr::Spanned<Value>>(
            chunk,
            options(),
        ) {
            Ok(documents) => {
                for d in documents {
                    let n = parsed.documents.len() + parsed.syntax.len();
                    parsed
                        .documents
                        .push((label(n, d.referenced.line() + offset), d.value));
                }
            }
            Err(e) => parsed.syntax.push(yaml_message(&e, offset)),
        }
    }
    parsed
}

/// The text split before each line that starts a document (`---`), with the line number
/// each part starts at; parts holding only comments and blank lines are left out. A
/// `---` at the start of a line cannot be content: the YAML spec forbids it inside
/// scalars, so this is where any parser would split.
fn split(text: &str) -> Vec<(u64, &str)> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let is_marker = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']));
        if is_marker && offset > start {
            parts.push((start_line, &text[start..offset]));
            start = offset;
            start_line = i as u64 + 1;
        }
        offset += line.len();
    }
    parts.push((start_line, &text[start..]));
    parts.retain(|(_, part)| {
        part.lines().any(|l| {
            let l = l.trim();
            !(l.is_empty() || l.starts_with('#') || l == "---" || l == "...")
        })
    });
    parts
}

fn label(index: usize, line: u64) -> String {
    format!("document {} at line {line}", index + 1)
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        // The default budget suits configuration files; `helm template` output for a big
        // cluster has thousands of documents and millions of nodes.
        budget: serde_saphyr::budget! {
            max_documents: 1_000_000,
            max_nodes: 100_000_000,
            max_events: 400_000_000,
        },
        with_snippet: false,
    }
}

fn means_json(source: &str, text: &str) -> bool {
    source.ends_with(".json") || text.trim_start().starts_with("{\"")
}

/// The parser's message in kerf's words, its line counted from the start of the file.
fn yaml_message(e: &serde_saphyr::Error, line_offset: u64) -> String {
    if let serde_saphyr::Error::DuplicateMappingKey { key, location } = e {
        let key = key
            .as_deref()
            .map_or_else(|| "a key".to_string(), |k| format!("key {k:?}"));
        return format!(
            "not valid YAML: {key} appears twice in one mapping at line {}, column {}; a key may appear once (kubectl rejects it too)",
            location.line() + line_offset,
            location.column()
        );
    }
    let options = serde_saphyr::render_options! {
        line_offset: line_offset,
        snippets: serde_saphyr::SnippetMode::Off,
    };
    format!("not valid YAML: {}", e.render_with_options(options))
}

/// serde_json's message, with the position written as the YAML parser writes it.
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) => format!("{message} at line {}, column {}", e.line(), e.column()),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_their_markers() {
        let text =
            "# leading comment\n---\na: 1\n--- \nb: |\n  ---\n  text\n---\n# only a comment\n";
        let parts: Vec<(u64, &str)> = split(text);
        assert_eq!(
            parts,
            [(2, "---\na: 1\n"), (4, "--- \nb: |\n  ---\n  text\n")]
        );
    }
}
