//! Maps a field path (`handlers.health.timeout`) to its line and column in the YAML source.
//!
//! `yaml_serde` exposes no spans, but every error raised by a `Visitor` gets the position of
//! the event being deserialized. [`locate`] walks the document with a `DeserializeSeed` that
//! follows the path and, on arriving at the wanted key or value, fails on purpose with a
//! sentinel message; the error's [`yaml_serde::Location`] is the answer. One extra parse per
//! problem is cheap for a config file and needs no second YAML parser.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A field path such as `jobs[1].name`; built by the validator, shown in messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(pub(crate) Vec<Seg>);

impl FieldPath {
    /// The path one key deeper.
    pub(crate) fn key(&self, key: &str) -> FieldPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        FieldPath(segs)
    }

    /// The path one index deeper.
    pub(crate) fn index(&self, index: usize) -> FieldPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        FieldPath(segs)
    }

    /// The path one step up; the root stays the root.
    pub(crate) fn parent(&self) -> FieldPath {
        let mut segs = self.0.clone();
        segs.pop();
        FieldPath(segs)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Whether a problem is about a mapping key itself or the value under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The key (for a sequence element: the element), e.g. a field that is not allowed there.
    Key,
    /// The value, e.g. a duration that is out of range.
    Value,
}

/// The message of the deliberate error; no real YAML error says this.
const SENTINEL: &str = "\u{0}autopilot-config-locate\u{0}";

/// The 1-based `(line, column)` of `path` in `text`, or `None` when the path is not in the file
/// (or the file does not parse).
pub(crate) fn locate(text: &str, path: &FieldPath, target: Target) -> Option<(usize, usize)> {
    let finder = Finder {
        rest: &path.0,
        target,
    };
    let de = yaml_serde::Deserializer::from_str(text);
    match finder.deserialize(de) {
        Ok(()) => None,
        Err(err) if err.to_string().contains(SENTINEL) => {
            err.location().map(|loc| (loc.line(), loc.column()))
        }
        Err(_) => None,
    }
}

/// Like [`locate`], but when the path is absent falls back to the key of the nearest ancestor
/// that is present (a missing field is reported where its parent is).
pub(crate) fn locate_or_parent(
    text: &str,
    path: &FieldPath,
    target: Target,
) -> Option<(usize, usize)> {
    if let Some(pos) = locate(text, path, target) {
        return Some(pos);
    }
    let mut path = path.parent();
    while !path.0.is_empty() {
        if let Some(pos) = locate(text, &path, Target::Key) {
            return Some(pos);
        }
        path = path.parent();
    }
    None
}

/// Follows `rest` into the document; fails with [`SENTINEL`] on arrival.
struct Finder<'p> {
    rest: &'p [Seg],
    target: Target,
}

impl<'de> DeserializeSeed<'de> for Finder<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Finder<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        self.deserialize(de)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        self.deserialize(de)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.rest.split_first() else {
            return Err(de::Error::custom(SENTINEL));
        };
        let wanted = match first {
            Seg::Index(n) => Some(*n),
            Seg::Key(_) => None,
        };
        let mut i = 0;
        loop {
            if Some(i) == wanted {
                // A sequence element has no key; both targets mean the element itself.
                let target = if rest.is_empty() {
                    Target::Value
                } else {
                    self.target
                };
                match seq.next_element_seed(Finder { rest, target })? {
                    Some(()) => return Ok(()),
                    None => return Ok(()),
                }
            }
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.rest.split_first() else {
            return Err(de::Error::custom(SENTINEL));
        };
        let wanted = match first {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        };
        let stop_at_key = rest.is_empty() && self.target == Target::Key;
        while let Some(matched) = map.next_key_seed(KeySeed {
            wanted,
            fail_on_match: stop_at_key,
        })? {
            if matched {
                return map.next_value_seed(Finder {
                    rest,
                    target: self.target,
                });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

impl Finder<'_> {
    /// A scalar is a leaf: found if the path ends here, otherwise the path is not in the file.
    fn scalar<E: de::Error>(self) -> Result<(), E> {
        if self.rest.is_empty() {
            Err(E::custom(SENTINEL))
        } else {
            Ok(())
        }
    }
}

/// Reads one mapping key; says whether it is the wanted one, or fails there on purpose.
struct KeySeed<'p> {
    wanted: Option<&'p str>,
    fail_on_match: bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        self.check(key)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        self.check(&v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

impl KeySeed<'_> {
    fn check<E: de::Error>(self, key: &str) -> Result<bool, E> {
        let matched = self.wanted == Some(key);
        if matched && self.fail_on_match {
            Err(E::custom(SENTINEL))
        } else {
            Ok(matched)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(segs: &[&str]) -> FieldPath {
        FieldPath(
            segs.iter()
                .map(|s| match s.parse::<usize>() {
                    Ok(n) => Seg::Index(n),
                    Err(_) => Seg::Key((*s).to_owned()),
                })
                .collect(),
        )
    }

    const DOC: &str = "\
# comment
node:
  name: a
handlers:
  health:
    exec: [check.sh]
    interval: 5s
    timeout:   10s
  preStart: { exec: [x], timeout: 3s }
jobs:
  - name: one
    interval: 1s
  - { name: two, interval: 2s }
";

    #[test]
    fn finds_block_values_and_keys() {
        let p = path(&["handlers", "health", "timeout"]);
        assert_eq!(locate(DOC, &p, Target::Value), Some((8, 16)));
        assert_eq!(locate(DOC, &p, Target::Key), Some((8, 5)));
        assert_eq!(
            locate(DOC, &path(&["node", "name"]), Target::Value),
            Some((3, 9))
        );
    }

    #[test]
    fn finds_flow_values() {
        let p = path(&["handlers", "preStart", "timeout"]);
        assert_eq!(locate(DOC, &p, Target::Value), Some((9, 35)));
        assert_eq!(locate(DOC, &p, Target::Key), Some((9, 26)));
    }

    #[test]
    fn finds_sequence_elements() {
        assert_eq!(
            locate(DOC, &path(&["jobs", "1", "name"]), Target::Value),
            Some((13, 13))
        );
        assert_eq!(
            locate(DOC, &path(&["jobs", "0", "interval"]), Target::Key),
            Some((12, 5))
        );
        assert_eq!(
            locate(
                DOC,
                &path(&["handlers", "health", "exec", "0"]),
                Target::Value
            ),
            Some((6, 12))
        );
    }

    #[test]
    fn absent_paths_are_none_or_fall_back_to_the_parent_key() {
        let p = path(&["handlers", "health", "cwd"]);
        assert_eq!(locate(DOC, &p, Target::Value), None);
        assert_eq!(locate_or_parent(DOC, &p, Target::Value), Some((5, 3)));
        assert_eq!(locate(DOC, &path(&["jobs", "7"]), Target::Value), None);
        assert_eq!(
            locate_or_parent(DOC, &path(&["process"]), Target::Key),
            None
        );
        assert_eq!(
            locate(DOC, &path(&["node", "name", "x"]), Target::Value),
            None
        );
    }

    #[test]
    fn broken_yaml_is_none() {
        assert_eq!(
            locate("a: [\n]]\nb: 1\n", &path(&["b"]), Target::Value),
            None
        );
    }

    #[test]
    fn displays_dotted_paths() {
        assert_eq!(path(&["jobs", "1", "name"]).to_string(), "jobs[1].name");
        assert_eq!(FieldPath::default().to_string(), "");
    }
}
