//! The one value type every YAML parse of the agent builds: a `serde_json::Value`, made the way
//! serde_json's own `Deserialize for Value` makes it (the same values, the same error texts),
//! which in a cloud-config also notes the `write_files` entries whose `content` is tagged
//! `!!binary`. One visitor type for both: each type read from YAML instantiates the parser's
//! deserializer again: a second, typed pass over the same text for the tags took 30,528 bytes
//! more of the size-bound static binary (agent/README.md, "Build").

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The YAML tag of a `!!binary` scalar.
pub const BINARY_TAG: &str = "tag:yaml.org,2002:binary";

/// What a parse found of `write_files` contents tagged `!!binary`: the index of each such entry
/// (its last `content`, as the last duplicate key wins). None is marked when an entry is not a
/// mapping or a `content` not a scalar (`Unreadable`), as a typed read of the entries would
/// have failed as a whole.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BinaryContents {
    binary: Vec<bool>,
    unreadable: bool,
}

impl BinaryContents {
    /// The indexes of the entries to read as base64, none when an entry was unreadable.
    pub fn entries(&self) -> impl Iterator<Item = usize> + '_ {
        let readable = !self.unreadable;
        self.binary
            .iter()
            .enumerate()
            .filter_map(move |(index, binary)| (readable && *binary).then_some(index))
    }

    fn set(&mut self, index: usize, binary: bool) {
        if self.binary.len() <= index {
            self.binary.resize(index + 1, false);
        }
        self.binary[index] = binary;
    }
}

/// Where in the document a node is, as far as `write_files` contents go.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// Anywhere nothing is noted.
    Elsewhere,
    /// The top-level mapping of a cloud-config.
    Top,
    /// The value of the top-level `write_files`.
    WriteFiles,
    /// The entry of `write_files` at this index.
    Entry(usize),
    /// The `content` of the entry at this index.
    Content(usize),
}

/// Reads one YAML node as a `serde_json::Value`.
pub struct Node<'m> {
    place: Place,
    marks: Option<&'m mut BinaryContents>,
}

impl<'m> Node<'m> {
    /// A document read as a plain value.
    pub fn plain() -> Self {
        Node {
            place: Place::Elsewhere,
            marks: None,
        }
    }

    /// A cloud-config document, its `write_files` contents tagged `!!binary` noted in `marks`.
    pub fn cloud_config(marks: &'m mut BinaryContents) -> Self {
        Node {
            place: Place::Top,
            marks: Some(marks),
        }
    }

    fn child(&mut self, place: Place) -> Node<'_> {
        match self.marks.as_deref_mut() {
            Some(marks) => Node {
                place,
                marks: Some(marks),
            },
            None => Node::plain(),
        }
    }

    fn unreadable(&mut self) {
        if let Some(marks) = self.marks.as_deref_mut() {
            marks.unreadable = true;
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self.place {
            Place::Content(_) if self.marks.is_some() => {
                // serde-saphyr's `Tagged` protocol: the node, then its tag.
                deserializer.deserialize_newtype_struct("__yaml_tagged", self)
            }
            _ => deserializer.deserialize_any(self),
        }
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any valid JSON value")
    }

    fn visit_bool<E>(mut self, value: bool) -> Result<Value, E> {
        self.not_a_mapping();
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(mut self, value: i64) -> Result<Value, E> {
        self.not_a_mapping();
        Ok(Value::Number(value.into()))
    }

    fn visit_i128<E: de::Error>(mut self, value: i128) -> Result<Value, E> {
        self.not_a_mapping();
        let de = de::value::I128Deserializer::new(value);
        serde::Deserialize::deserialize(de).map(Value::Number)
    }

    fn visit_u64<E>(mut self, value: u64) -> Result<Value, E> {
        self.not_a_mapping();
        Ok(Value::Number(value.into()))
    }

    fn visit_u128<E: de::Error>(mut self, value: u128) -> Result<Value, E> {
        self.not_a_mapping();
        let de = de::value::U128Deserializer::new(value);
        serde::Deserialize::deserialize(de).map(Value::Number)
    }

    fn visit_f64<E>(mut self, value: f64) -> Result<Value, E> {
        self.not_a_mapping();
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        self.visit_string(String::from(value))
    }

    fn visit_string<E>(mut self, value: String) -> Result<Value, E> {
        self.not_a_mapping();
        Ok(Value::String(value))
    }

    fn visit_none<E>(mut self) -> Result<Value, E> {
        self.not_a_mapping();
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_unit<E>(mut self) -> Result<Value, E> {
        self.not_a_mapping();
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        if let Place::Content(index) = self.place {
            // The `Tagged` pair: the content as any other node, then its tag.
            let value = seq
                .next_element_seed(self.child(Place::Elsewhere))?
                .unwrap_or(Value::Null);
            let tag = seq.next_element_seed(Tag)?;
            if matches!(value, Value::Array(_) | Value::Object(_)) {
                self.unreadable();
            }
            let binary = tag.is_some_and(|tag| tag == BINARY_TAG || tag == "!!binary");
            if let Some(marks) = self.marks.as_deref_mut() {
                marks.set(index, binary);
            }
            return Ok(value);
        }
        self.not_a_mapping();
        if let Place::WriteFiles = self.place
            && let Some(marks) = self.marks.as_deref_mut()
        {
            *marks = BinaryContents::default();
        }
        let mut vec = Vec::new();
        loop {
            let place = match self.place {
                Place::WriteFiles => Place::Entry(vec.len()),
                _ => Place::Elsewhere,
            };
            match seq.next_element_seed(self.child(place))? {
                Some(elem) => vec.push(elem),
                None => break,
            }
        }
        Ok(Value::Array(vec))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        // serde_json reads the first key as `KeyClassifier` does, the others as `String`s.
        let Some(first_key) = map.next_key_seed(FirstKey)? else {
            return Ok(Value::Object(Map::new()));
        };
        let mut values = Map::new();
        let mut key = first_key;
        loop {
            let place = match (self.place, key.as_str()) {
                (Place::Top, "write_files") => Place::WriteFiles,
                (Place::Entry(index), "content") => Place::Content(index),
                _ => Place::Elsewhere,
            };
            let value = map.next_value_seed(self.child(place))?;
            values.insert(key, value);
            match map.next_key::<String>()? {
                Some(next) => key = next,
                None => break,
            }
        }
        Ok(Value::Object(values))
    }
}

impl Node<'_> {
    /// A node that is no mapping: an entry of `write_files` that a typed read refuses.
    fn not_a_mapping(&mut self) {
        if let Place::Entry(_) = self.place {
            self.unreadable();
        }
    }
}

/// serde_json's first map key (`KeyClassifier`): a string, "a string key" when it is not.
struct FirstKey;

impl<'de> DeserializeSeed<'de> for FirstKey {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FirstKey {
    type Value = String;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<String, E> {
        Ok(s.to_owned())
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<String, E> {
        Ok(s)
    }
}

/// The tag serde-saphyr hands after a `Tagged` node, when it has one.
struct Tag;

impl<'de> DeserializeSeed<'de> for Tag {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        serde::Deserialize::deserialize(deserializer)
    }
}

thread_local! {
    /// Whether [`Parsed`] notes `write_files` contents: only inside [`Parsed::cloud_config`].
    static CLOUD_CONFIG: Cell<bool> = const { Cell::new(false) };
}

/// A parsed document, with what it had of `write_files` contents tagged `!!binary` (nothing
/// noted outside [`Parsed::cloud_config`]). The parser takes a type, not a seed: this one type
/// serves every parse.
#[derive(Debug)]
pub struct Parsed {
    pub value: Value,
    pub binary: BinaryContents,
}

impl Parsed {
    /// Runs `parse` (a parse into [`Parsed`]) reading its document as a cloud-config.
    pub fn cloud_config<T>(parse: impl FnOnce() -> T) -> T {
        CLOUD_CONFIG.set(true);
        let parsed = parse();
        CLOUD_CONFIG.set(false);
        parsed
    }
}

impl<'de> de::Deserialize<'de> for Parsed {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut binary = BinaryContents::default();
        let node = if CLOUD_CONFIG.get() {
            Node::cloud_config(&mut binary)
        } else {
            Node::plain()
        };
        let value = node.deserialize(deserializer)?;
        Ok(Parsed { value, binary })
    }
}
