//! A resource's JSON, split so that the writer can stamp `id` and `meta` on it without parsing
//! or serialising anything: those costs stay on the caller's threads, off the single writer.

use serde_json::Value;

/// The serialised parts of a resource other than `resourceType`, `id`, `meta.versionId` and
/// `meta.lastUpdated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// Remaining `meta` members as `"k":v,"k":v` (may be empty).
    meta_rest: Vec<u8>,
    /// Remaining top-level members as `"k":v,"k":v` (may be empty).
    fields: Vec<u8>,
}

impl Body {
    pub fn from_resource(resource: &Value) -> Body {
        let mut meta_rest = Vec::new();
        let mut fields = Vec::with_capacity(1024);
        if let Value::Object(obj) = resource {
            for (k, v) in obj {
                match k.as_str() {
                    "resourceType" | "id" => {}
                    "meta" => {
                        if let Value::Object(meta) = v {
                            for (mk, mv) in meta {
                                if mk != "versionId" && mk != "lastUpdated" {
                                    push_member(&mut meta_rest, mk, mv);
                                }
                            }
                        }
                    }
                    _ => push_member(&mut fields, k, v),
                }
            }
        }
        Body { meta_rest, fields }
    }

    /// The resource as it would be stored, without version and time: for looking at what it
    /// says (whose it is, its labels) before it is written.
    pub fn preview(&self, rtype: &str, id: &str) -> Vec<u8> {
        self.assemble(rtype, id, 0, "")
    }

    /// The stored JSON: `resourceType`, `id` and `meta` first, then the rest as given.
    pub(crate) fn assemble(&self, rtype: &str, id: &str, version: u64, last_updated: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.fields.len() + self.meta_rest.len() + 128);
        out.extend_from_slice(b"{\"resourceType\":");
        write_str(&mut out, rtype);
        out.extend_from_slice(b",\"id\":");
        write_str(&mut out, id);
        out.extend_from_slice(b",\"meta\":{\"versionId\":\"");
        out.extend_from_slice(version.to_string().as_bytes());
        out.extend_from_slice(b"\",\"lastUpdated\":");
        write_str(&mut out, last_updated);
        if !self.meta_rest.is_empty() {
            out.push(b',');
            out.extend_from_slice(&self.meta_rest);
        }
        out.push(b'}');
        if !self.fields.is_empty() {
            out.push(b',');
            out.extend_from_slice(&self.fields);
        }
        out.push(b'}');
        out
    }
}

fn push_member(out: &mut Vec<u8>, key: &str, value: &Value) {
    if !out.is_empty() {
        out.push(b',');
    }
    write_str(out, key);
    out.push(b':');
    serde_json::to_writer(&mut *out, value).expect("writing JSON to a Vec cannot fail");
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing JSON to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn assembled_json_has_stamped_id_and_meta_first_and_keeps_everything_else() {
        let r = json!({"name": [{"family": "शर्मा \"q\""}], "resourceType": "Patient", "id": "client-id",
                       "meta": {"versionId": "9", "tag": [{"code": "vip"}], "lastUpdated": "2000-01-01T00:00:00Z"}, "active": true});
        let bytes = Body::from_resource(&r).assemble("Patient", "p1", 3, "2026-01-02T03:04:05.678Z");
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with(r#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"3","lastUpdated":"2026-01-02T03:04:05.678Z","tag":"#), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v, json!({"resourceType": "Patient", "id": "p1",
            "meta": {"versionId": "3", "lastUpdated": "2026-01-02T03:04:05.678Z", "tag": [{"code": "vip"}]},
            "name": [{"family": "शर्मा \"q\""}], "active": true}));
    }

    #[test]
    fn a_bare_resource_assembles_to_valid_json() {
        let bytes = Body::from_resource(&json!({"resourceType": "Basic"})).assemble("Basic", "b", 1, "t");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v, json!({"resourceType": "Basic", "id": "b", "meta": {"versionId": "1", "lastUpdated": "t"}}));
    }
}
