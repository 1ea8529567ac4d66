//! Key path → line/column in a spec file, so every problem can point at the
//! text the user wrote. JSON is YAML, so one reader serves both formats.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::Problem;

/// Where each key path of a document starts (`fields[2].default` → (14, 14)).
#[derive(Debug, Default)]
pub struct Locations(HashMap<String, (usize, usize)>);

impl Locations {
    /// Build the index; a document that does not parse gives an empty index.
    pub fn of(text: &str) -> Locations {
        Locations::read(text, serde_saphyr::Options::default())
    }

    /// The index of a document whose only faults are duplicate keys (the
    /// last one is indexed) or non-finite floats: what a parse error of
    /// those kinds needs to be reported at its key path.
    pub fn of_lenient(text: &str) -> Locations {
        let mut options = serde_saphyr::Options::default();
        options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
        options.non_finite_float_policy = serde_saphyr::NonFiniteFloatPolicy::AsString;
        Locations::read(text, options)
    }

    fn read(text: &str, options: serde_saphyr::Options) -> Locations {
        let mut out = Locations::default();
        if let Ok(root) = serde_saphyr::from_str_with_options::<Spanned<Node>>(text, options) {
            out.record(String::new(), &root);
        }
        out
    }

    /// The key path whose value starts exactly at `at`.
    pub fn path_at(&self, at: (usize, usize)) -> Option<&str> {
        self.0.iter().filter(|(_, l)| **l == at).map(|(p, _)| p.as_str()).max_by_key(|p| p.len())
    }

    /// The path of the mapping entry `key` whose value is the first one at
    /// or after `at` (a duplicate key's retained value follows the key).
    pub fn path_of_key_after(&self, key: &str, at: (usize, usize)) -> Option<&str> {
        self.0
            .iter()
            .filter(|(p, l)| **l >= at && (p.as_str() == key || p.ends_with(&format!(".{key}"))))
            .min_by_key(|(_, l)| **l)
            .map(|(p, _)| p.as_str())
    }

    /// `problem` with the location of its key path.
    pub fn locate(&self, mut problem: Problem) -> Problem {
        problem.location = self.find(&problem.path);
        problem
    }

    /// The location of `path`, or of its nearest ancestor that has one.
    pub fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut path = path;
        loop {
            if let Some(at) = self.0.get(path) {
                return Some(*at);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }

    fn record(&mut self, path: String, node: &Spanned<Node>) {
        let at = (node.referenced.line() as usize, node.referenced.column() as usize);
        match &node.value {
            Node::Map(entries) => {
                for (key, child) in entries {
                    let child_path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    self.record(child_path, child);
                }
            }
            Node::Seq(items) => {
                for (i, child) in items.iter().enumerate() {
                    self.record(format!("{path}[{i}]"), child);
                }
            }
            Node::Scalar => {}
        }
        self.0.insert(path, at);
    }
}

/// A YAML document reduced to its shape, each child with its position.
enum Node {
    Map(Vec<(String, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<serde_json::Value>()? {
            let key = match key {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            entries.push((key, map.next_value::<Spanned<Node>>()?));
        }
        Ok(Node::Map(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_paths_have_lines_and_columns() {
        let text = "source: nats\nfields:\n  - name: topic\n    type: string\n  - name: b\n    default: 3\n";
        let loc = Locations::of(text);
        assert_eq!(loc.find("source"), Some((1, 9)));
        assert_eq!(loc.find("fields[1].default"), Some((6, 14)));
        assert_eq!(loc.find("fields[1].missing"), Some((5, 5)));
    }

    #[test]
    fn json_is_located_too() {
        let loc = Locations::of("{\n  \"source\": \"nats\",\n  \"fields\": [{\"name\": 1}]\n}");
        assert_eq!(loc.find("source").map(|l| l.0), Some(2));
        assert_eq!(loc.find("fields[0].name").map(|l| l.0), Some(3));
    }
}
