//! A `#cloud-config-archive` read as PyYAML reads it for cloud-init, its items' `!!binary`
//! content decoded item by item: one item whose bytes are not UTF-8 text (gzip) is left out
//! alone, and the others' `!!binary` content still decodes.

use base64::Engine;
use serde_json::Value;
use serde_saphyr::granit_parser::{Event, Parser, Tag};

use super::yaml::{self, Allowance, YamlError};

/// An archive: its items, and the numbers (from 1) of those left out because their
/// `!!binary` content is not UTF-8 text.
pub struct Archive {
    pub value: Value,
    pub not_text: Vec<usize>,
}

/// Parses a `#cloud-config-archive` document, spending from `allowance`: its items' `!!binary`
/// content decoded, as PyYAML hands it to cloud-init (`content: !!binary IyEvYmluL3No…` is the
/// script itself). When one is not UTF-8 text, the archive is read again with its `!!binary`
/// content as base64 text and each item's decoded on its own: an item whose bytes are not text
/// is left out (cloud-init has no handler for them), the others apply.
pub fn parse(text: &str, allowance: &mut Allowance) -> Result<Archive, YamlError> {
    let first = match yaml::parse_archive(text, allowance) {
        Ok(value) => {
            return Ok(Archive {
                value,
                not_text: Vec::new(),
            });
        }
        Err(err) if err.is_over_allowance() => return Err(err),
        Err(err) => err,
    };
    let mut value = yaml::parse_value_within(text, allowance).map_err(|_| first)?;
    let binary = binary_items(text);
    let mut not_text = Vec::new();
    if let Value::Array(items) = &mut value {
        let mut number = 0;
        items.retain_mut(|item| {
            number += 1;
            let text = !binary.contains(&number) || decode_content(item);
            if !text {
                not_text.push(number);
            }
            text
        });
    }
    Ok(Archive { value, not_text })
}

/// Decodes an item's base64 `content` in place; false when it is not UTF-8 text.
fn decode_content(item: &mut Value) -> bool {
    let Some(Value::String(content)) = item.get_mut("content") else {
        return true;
    };
    let base64: String = content
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    match decoded {
        Some(text) => {
            *content = text;
            true
        }
        None => false,
    }
}

fn is_binary(tag: &Tag) -> bool {
    tag.suffix() == "binary" && matches!(tag.handle(), "tag:yaml.org,2002:" | "!!")
}

/// The numbers (from 1) of the top-level list's items that are mappings whose `content` is
/// tagged `!!binary`, read from the YAML events alone (no value built, aliases not expanded).
fn binary_items(text: &str) -> Vec<usize> {
    let mut found = Vec::new();
    // Collections open; items of the top-level list met; whether the current one is a
    // mapping, and the nodes (keys and values) of it completed; whether the next is content's.
    let (mut depth, mut item, mut in_map, mut nodes, mut content) = (0, 0, false, 0, false);
    for event in Parser::new_from_str(text) {
        let Ok((event, _)) = event else { break };
        let item_level = depth == 2 && in_map;
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if depth == 1 {
                    item += 1;
                    in_map = matches!(event, Event::MappingStart(..));
                    nodes = 0;
                }
                depth += 1;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                depth -= 1;
                if depth == 2 && in_map {
                    nodes += 1;
                    content = false;
                }
            }
            Event::Scalar(value, _, _, tag) if item_level => {
                if nodes % 2 == 0 {
                    content = value == "content";
                } else if content && tag.is_some_and(|tag| is_binary(&tag)) {
                    found.push(item);
                }
                nodes += 1;
            }
            Event::Alias(..) if item_level => {
                nodes += 1;
                content = false;
            }
            Event::Scalar(..) | Event::Alias(..) if depth == 1 => {
                item += 1;
                in_map = false;
            }
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_content_is_found_by_item() {
        let text = "- plain\n- {type: x, content: !!binary aGk=}\n- content: [a, {b: c}]\n  \
                    other: !!binary aGk=\n- &a {x: 1}\n- *a\n- content: !!binary |\n    aGk=\n";
        assert_eq!(binary_items(text), [2, 6]);
    }
}
