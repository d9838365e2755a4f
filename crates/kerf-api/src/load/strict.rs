//! Strict field validation, kubectl's default: a field the object's schema does not have
//! is an error naming its full path, not silently dropped, so `spec.limit` or a
//! container's `resource` cannot quietly mean "no limits" or "no requests".
//!
//! Detection wraps the typed deserialization with `serde_ignored`, so a field is unknown
//! exactly when the type kerf reads it into ignores it. The closest known name, when one
//! is close, comes from the type's JSON schema, generated only when a field is unknown.
//!
//! Not checked: `status`, which the API server owns and newer servers extend (kerf reads
//! a few fields of it and needs no more), and `apiVersion`/`kind`, checked before typing.

use schemars::JsonSchema;
use serde_json::Value;

use super::syntax::map_key;

/// One step of a path into an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// The steps from the object's root to an ignored field.
pub(crate) fn steps(path: &serde_ignored::Path<'_>) -> Vec<Step> {
    let mut out = Vec::new();
    let mut at = path;
    loop {
        match at {
            serde_ignored::Path::Root => break,
            serde_ignored::Path::Seq { parent, index } => {
                out.push(Step::Index(*index));
                at = parent;
            }
            serde_ignored::Path::Map { parent, key } => {
                out.push(Step::Key(key.clone()));
                at = parent;
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => at = parent,
        }
    }
    out.reverse();
    out
}

/// Whether an ignored field is one the user should hear about.
pub(crate) fn is_checked(steps: &[Step]) -> bool {
    match steps {
        [Step::Key(first), ..] if first == "status" => false,
        [Step::Key(only)] if only == "apiVersion" || only == "kind" => false,
        [Step::Key(first), Step::Key(second), ..]
            if first == "metadata" && second == "managedFields" =>
        {
            false
        }
        _ => true,
    }
}

/// `spec.containers[0].resource`, with map keys that read as more path quoted.
pub(crate) fn render(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(key) => {
                out = map_key(&out, key);
                if let Some(rest) = out.strip_prefix('.') {
                    out = rest.to_string();
                }
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The message for an unknown field of a `T`, with the closest known name when one is
/// close enough to be a likely typo.
pub(crate) fn message<T: JsonSchema>(steps: &[Step]) -> String {
    let path = render(steps);
    match suggestion::<T>(steps) {
        Some(name) => format!("unknown field {path:?}; did you mean {name}?"),
        None => {
            format!("unknown field {path:?}; it is not in the schema kerf reads this kind with")
        }
    }
}

fn suggestion<T: JsonSchema>(steps: &[Step]) -> Option<String> {
    let (Step::Key(unknown), parent) = steps.split_last()? else {
        return None;
    };
    let schema = schemars::schema_for!(T);
    let root = schema.as_value();
    let mut known = known_fields(root, parent)?;
    if parent.is_empty() {
        // Resource kinds' schemas leave these to the API server.
        known.extend(["apiVersion", "kind", "metadata"].map(String::from));
    }
    closest(unknown, &known)
}

/// The property names of the object at `steps` in a JSON schema, following `$ref`s and
/// the `anyOf`/`allOf` wrappers optional fields come in.
fn known_fields(root: &Value, steps: &[Step]) -> Option<Vec<String>> {
    let mut at = resolve(root, root)?;
    for step in steps {
        let next = match step {
            Step::Key(key) => at
                .get("properties")
                .and_then(|p| p.get(key))
                .or_else(|| at.get("additionalProperties").filter(|a| a.is_object()))?,
            Step::Index(_) => at.get("items")?,
        };
        at = resolve(root, next)?;
    }
    let properties = at.get("properties")?.as_object()?;
    Some(properties.keys().cloned().collect())
}

fn resolve<'a>(root: &'a Value, mut schema: &'a Value) -> Option<&'a Value> {
    // A bounded walk: schemas are finite, but a malformed one must not loop.
    for _ in 0..32 {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference
                .strip_prefix("#/$defs/")
                .or_else(|| reference.strip_prefix("#/definitions/"))?;
            schema = root
                .get("$defs")
                .or_else(|| root.get("definitions"))?
                .get(name)?;
            continue;
        }
        let wrapped = ["allOf", "anyOf", "oneOf"].iter().find_map(|k| {
            schema
                .get(*k)?
                .as_array()?
                .iter()
                .find(|s| s.get("type").and_then(Value::as_str) != Some("null"))
        });
        match wrapped {
            Some(inner) if schema.get("properties").is_none() => schema = inner,
            _ => return Some(schema),
        }
    }
    None
}

/// The known name nearest to `unknown`, ignoring case, if it is a plausible typo: at most
/// one edit for short names, a third of the length for longer ones.
fn closest(unknown: &str, known: &[String]) -> Option<String> {
    let unknown_lower = unknown.to_lowercase();
    let limit = (unknown.chars().count() / 3).max(1);
    known
        .iter()
        // Optimal string alignment: swapped neighbours are one edit (`wieght`).
        .map(|name| {
            (
                strsim::osa_distance(&unknown_lower, &name.to_lowercase()),
                name,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, name)| name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_near_their_field() {
        let known: Vec<String> = ["limits", "weight", "template", "disruption"]
            .map(String::from)
            .to_vec();
        assert_eq!(closest("limit", &known).as_deref(), Some("limits"));
        assert_eq!(closest("wieght", &known).as_deref(), Some("weight"));
        assert_eq!(closest("TEMPLATE", &known).as_deref(), Some("template"));
        assert_eq!(closest("replicas", &known), None);
    }

    #[test]
    fn paths_render_as_kubectl_spells_them() {
        let steps = [
            Step::Key("spec".into()),
            Step::Key("containers".into()),
            Step::Index(0),
            Step::Key("resource".into()),
        ];
        assert_eq!(render(&steps), "spec.containers[0].resource");
        let steps = [
            Step::Key("metadata".into()),
            Step::Key("labels".into()),
            Step::Key("example.com/x".into()),
        ];
        assert_eq!(render(&steps), "metadata.labels[\"example.com/x\"]");
    }
}
