//! Reading a map file for `update`: one JSON object whose values are all
//! strings, no key twice, within a size limit.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::de::{self, Deserializer, MapAccess, Visitor};

/// Reads and checks the map in `path`. Files larger than `bytes_max` are
/// refused without being read whole.
pub fn read(path: &Path, bytes_max: usize) -> Result<BTreeMap<String, String>, String> {
    let name = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    let mut text = Vec::new();
    // One byte more than allowed tells "too large" from "exactly the limit".
    file.take(bytes_max as u64 + 1)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    if text.len() > bytes_max {
        return Err(format!("{name}: too large (limit {bytes_max} bytes)"));
    }
    parse(&text).map_err(|e| format!("{name}: {e}"))
}

/// Parses a JSON object of strings.
pub fn parse(text: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let map = deserializer
        .deserialize_map(StringMap)
        .map_err(|e| describe(&e))?;
    deserializer.end().map_err(|e| describe(&e))?;
    Ok(map)
}

fn describe(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof | Category::Io => format!("not valid JSON: {error}"),
        Category::Data => error.to_string(),
    }
}

/// Visits a JSON object, refusing values that are not strings and keys
/// given twice (which JSON parsers resolve differently).
struct StringMap;

impl<'de> Visitor<'de> for StringMap {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object whose values are strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = BTreeMap::new();
        while let Some(key) = access.next_key::<String>()? {
            let value: serde_json::Value = access.next_value()?;
            let serde_json::Value::String(value) = value else {
                return Err(de::Error::custom(format!(
                    "the value of {key:?} is {}, not a string",
                    kind(&value)
                )));
            };
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("key {key:?} is given twice")));
            }
            map.insert(key, value);
        }
        Ok(map)
    }
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn accepts_an_object_of_strings() {
        let map = parse(br#" {"a": "1", "b": ""} "#).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map["a"], "1");
        assert!(parse(b"{}").unwrap().is_empty());
    }

    #[test]
    fn refuses_what_is_not_an_object_of_strings() {
        for (text, says) in [
            (&br#"{"a": 1}"#[..], "not a string"),
            (br#"{"a": null}"#, "not a string"),
            (br#"{"a": "1", "a": "2"}"#, "given twice"),
            (br#"["a"]"#, "JSON object"),
            (br#""a""#, "JSON object"),
            (br#"{"a": "1"} x"#, "not valid JSON"),
            (br#"{"a": "1""#, "not valid JSON"),
            (b"", "not valid JSON"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(says), "{error:?} should say {says:?}");
            assert!(!error.contains('\n'));
        }
    }
}
