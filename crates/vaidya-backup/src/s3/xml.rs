//! A small element tree for S3's XML responses.
//!
//! Why a tree rather than serde structs: ListObjectVersions interleaves `<Version>` and
//! `<DeleteMarker>` elements and their order matters (grouped by key, newest first); a tree
//! keeps document order without relying on how a serde mapping handles mixed lists. The
//! documents are small (the caller bounds the body size) and shallow (bounded here).

use quick_xml::Reader;
use quick_xml::events::Event;

/// S3 responses nest three or four levels; anything deeper is not a response we understand.
const MAX_DEPTH: usize = 16;

#[derive(Debug, Default)]
pub(crate) struct Element {
    pub name: String,
    /// The element's own text (entities resolved), concatenated; empty for containers.
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of the first child called `name`, trimmed.
    pub fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }
}

/// Parses a whole document into its root element. Namespaces are dropped (S3 puts everything
/// in one default namespace).
pub(crate) fn parse(bytes: &[u8]) -> Result<Element, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "response is not UTF-8".to_string())?;
    let mut reader = Reader::from_str(text);
    // Open elements, innermost last; the root is returned when it closes.
    let mut stack: Vec<Element> = Vec::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("malformed XML at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("XML nested deeper than {MAX_DEPTH} levels"));
                }
                stack.push(Element { name: local_name(start.local_name().as_ref())?, ..Default::default() });
            }
            Event::Empty(empty) => {
                let element = Element { name: local_name(empty.local_name().as_ref())?, ..Default::default() };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => return Ok(element),
                }
            }
            Event::End(_) => {
                let Some(done) = stack.pop() else {
                    return Err("XML closes an element it never opened".into());
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(done),
                }
            }
            Event::Text(t) => {
                if let Some(open) = stack.last_mut() {
                    let s = t.xml_content().map_err(|e| format!("XML text: {e}"))?;
                    open.text.push_str(&s);
                }
            }
            Event::CData(c) => {
                if let Some(open) = stack.last_mut() {
                    let s = c.xml_content().map_err(|e| format!("XML CDATA: {e}"))?;
                    open.text.push_str(&s);
                }
            }
            // quick-xml reports `&amp;` and `&#38;` as their own events between text pieces.
            Event::GeneralRef(r) => {
                if let Some(open) = stack.last_mut() {
                    if let Some(c) = r.resolve_char_ref().map_err(|e| format!("XML character reference: {e}"))? {
                        open.text.push(c);
                    } else {
                        let name = r.xml_content().map_err(|e| format!("XML reference: {e}"))?;
                        match quick_xml::escape::resolve_predefined_entity(&name) {
                            Some(s) => open.text.push_str(s),
                            None => return Err(format!("unknown XML entity &{name};")),
                        }
                    }
                }
            }
            Event::Eof => return Err("XML ends before its root element closes".into()),
            // Declaration, comments, processing instructions, doctype: nothing to keep.
            _ => {}
        }
    }
}

fn local_name(raw: &[u8]) -> Result<String, String> {
    std::str::from_utf8(raw).map(str::to_owned).map_err(|_| "XML element name is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_document_order_and_resolves_entities() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>b</Name><IsTruncated>false</IsTruncated>
  <DeleteMarker><Key>a&amp;b</Key><VersionId>3</VersionId></DeleteMarker>
  <Version><Key>a&#38;b</Key><VersionId>2</VersionId><Size>5</Size></Version>
  <Version><Key>c</Key><VersionId>1</VersionId><Owner/></Version>
</ListVersionsResult>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "ListVersionsResult");
        let names: Vec<&str> = root.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Name", "IsTruncated", "DeleteMarker", "Version", "Version"]);
        assert_eq!(root.children[2].text_of("Key"), Some("a&b"));
        assert_eq!(root.children[3].text_of("Key"), Some("a&b"));
        assert_eq!(root.children[4].child("Owner").map(|o| o.text.as_str()), Some(""));
    }

    #[test]
    fn rejects_truncated_and_deep_documents() {
        assert!(parse(b"<Error><Code>x</Code>").is_err());
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes()).is_err());
        assert!(parse(b"").is_err());
    }
}
