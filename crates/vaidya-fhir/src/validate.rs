//! Validation of resources in FHIR JSON form (https://hl7.org/fhir/R4/json.html) against the
//! base R4 model: known elements only, JSON value types, cardinality, choice types, primitive
//! formats, codes of required bindings, and plausible references. Invariants (FHIRPath
//! constraints) and profiles are out of scope.
//!
//! The walk allocates nothing on valid input: the current location is kept as a stack of
//! borrowed path segments and formatted only when an issue is reported.

use crate::model::{
    Elem, MAX_CHOICES_PER_STRUCT, Max, Model, Primitive, Prop, Special, Struct, StructId, ValueKind,
};
use crate::outcome::{Issue, IssueType};
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// Validation stops collecting after this many issues (and says so in one more issue).
pub const MAX_ISSUES: usize = 100;

/// Strings may not exceed 1 MB (https://hl7.org/fhir/R4/datatypes.html#string).
const MAX_STRING_BYTES: usize = 1024 * 1024;

/// Validates `resource`, a resource in FHIR JSON form. On failure returns every issue found
/// (up to [`MAX_ISSUES`]), each located by a FHIRPath-like expression such as
/// `Patient.name[0].given[1]`.
pub fn validate_resource(resource: &Value) -> Result<(), Vec<Issue>> {
    let mut validator = Validator {
        model: Model::r4(),
        path: Vec::with_capacity(16),
        issues: Vec::new(),
    };
    validator.resource(resource);
    if validator.issues.is_empty() {
        Ok(())
    } else {
        Err(validator.issues)
    }
}

/// One step of the location of the value being validated.
#[derive(Clone, Copy)]
enum Segment<'a> {
    /// The resource type at the root: `Patient`.
    Root(&'a str),
    /// A property: `.name`.
    Property(&'a str),
    /// An array index: `[0]`.
    Index(usize),
}

struct Validator<'a> {
    model: &'static Model,
    path: Vec<Segment<'a>>,
    issues: Vec<Issue>,
}

impl<'a> Validator<'a> {
    // --- issue reporting --------------------------------------------------------------------

    fn is_full(&self) -> bool {
        self.issues.len() >= MAX_ISSUES
    }

    /// Reports an issue at the current location.
    fn report(&mut self, code: IssueType, diagnostics: String) {
        if self.is_full() {
            return;
        }
        let mut issue = Issue::error(code, diagnostics);
        if !self.path.is_empty() {
            issue = issue.at(self.location());
        }
        self.issues.push(issue);
        if self.is_full() {
            self.issues.push(Issue::error(
                IssueType::TooCosts,
                format!("validation stopped after {MAX_ISSUES} issues"),
            ));
        }
    }

    /// Reports an issue about the property `name` of the current object.
    fn report_at(&mut self, name: &'a str, code: IssueType, diagnostics: String) {
        self.path.push(Segment::Property(name));
        self.report(code, diagnostics);
        self.path.pop();
    }

    fn location(&self) -> String {
        let mut location = String::new();
        for segment in &self.path {
            match segment {
                Segment::Root(name) => location.push_str(name),
                Segment::Property(name) => {
                    if !location.is_empty() {
                        location.push('.');
                    }
                    location.push_str(name);
                }
                Segment::Index(index) => {
                    let _ = write!(location, "[{index}]");
                }
            }
        }
        location
    }

    // --- resources and objects --------------------------------------------------------------

    /// The root resource: its location starts with its type name.
    fn resource(&mut self, value: &'a Value) {
        let Some((object, type_name, id)) = self.resource_type(value) else {
            return;
        };
        self.path.push(Segment::Root(type_name));
        self.object(object, id);
        self.path.pop();
    }

    /// A resource inside another (contained, `Bundle.entry.resource`, `Parameters...resource`),
    /// validated as a resource of its own `resourceType`.
    fn nested_resource(&mut self, value: &'a Value) {
        if let Some((object, _, id)) = self.resource_type(value) {
            self.object(object, id);
        }
    }

    /// Checks that `value` is an object with a concrete `resourceType`, and finds its struct.
    fn resource_type(
        &mut self,
        value: &'a Value,
    ) -> Option<(&'a Map<String, Value>, &'a str, StructId)> {
        let Value::Object(object) = value else {
            self.report(
                IssueType::Structure,
                format!(
                    "expected a resource (a JSON object), found {}",
                    json_kind(value)
                ),
            );
            return None;
        };
        let type_name = match object.get("resourceType") {
            Some(Value::String(type_name)) => type_name,
            Some(other) => {
                let diagnostics =
                    format!("resourceType must be a string, found {}", json_kind(other));
                self.report(IssueType::Structure, diagnostics);
                return None;
            }
            None => {
                self.report(IssueType::Required, "missing resourceType".to_string());
                return None;
            }
        };
        if !self.model.is_resource_type(type_name) {
            let diagnostics = format!("unknown resourceType '{type_name}'");
            self.report(IssueType::NotSupported, diagnostics);
            return None;
        }
        let id = self
            .model
            .struct_id(type_name)
            .expect("every resource type has a struct");
        Some((object, type_name, id))
    }

    /// A JSON object that must conform to the struct `id`.
    fn object(&mut self, object: &'a Map<String, Value>, id: StructId) {
        if object.is_empty() {
            self.report(
                IssueType::Structure,
                "empty object: an object must have at least one property".to_string(),
            );
            return;
        }
        let model = self.model;
        let st = &model.structs[id as usize];
        let mut present: u64 = 0;
        // Which variant each choice element has taken in this object (u8::MAX: none yet).
        let mut variants = [u8::MAX; MAX_CHOICES_PER_STRUCT];
        for (key, value) in object {
            if self.is_full() {
                return;
            }
            if key == "resourceType" && st.is_resource {
                continue; // checked by the caller, which chose this struct from it
            }
            let (name, is_extension_sibling) = match key.strip_prefix('_') {
                Some(name) => (name, true),
                None => (key.as_str(), false),
            };
            let Some(prop) = st.props.get(name) else {
                self.report_at(
                    key,
                    IssueType::Structure,
                    format!("unknown element '{key}'"),
                );
                continue;
            };
            let elem = &st.elements[prop.elem as usize];
            if let Some(slot) = elem.choice_slot {
                let taken = &mut variants[slot as usize];
                if *taken != u8::MAX && *taken != prop.variant {
                    let diagnostics = format!("only one variant of '{}' may be present", elem.name);
                    self.report_at(key, IssueType::Structure, diagnostics);
                    continue;
                }
                *taken = prop.variant;
            }
            present |= 1 << prop.elem;
            self.path.push(Segment::Property(key));
            if is_extension_sibling {
                self.primitive_extension(object, name, value, prop.kind, elem);
            } else {
                self.element(object, key, value, prop, elem);
            }
            self.path.pop();
        }
        self.required_elements(st, present);
    }

    fn required_elements(&mut self, st: &Struct, present: u64) {
        for &index in &st.required {
            if present & (1 << index) == 0 {
                let elem = &st.elements[index as usize];
                let diagnostics = format!(
                    "minimum cardinality {} not met for '{}'",
                    elem.min, elem.name
                );
                self.report(IssueType::Required, diagnostics);
            }
        }
    }

    // --- elements ---------------------------------------------------------------------------

    /// The value of property `key` (not an `_` sibling), at the current location.
    fn element(
        &mut self,
        object: &'a Map<String, Value>,
        key: &str,
        value: &'a Value,
        prop: &Prop,
        elem: &Elem,
    ) {
        if elem.max == Max::Bounded(0) {
            self.report(
                IssueType::Structure,
                format!(
                    "element '{}' is not allowed here (maximum cardinality 0)",
                    elem.name
                ),
            );
            return;
        }
        if !elem.is_array() {
            match value {
                Value::Array(_) => {
                    let diagnostics = format!(
                        "expected a single value for '{}' (maximum cardinality 1), found an array",
                        elem.name
                    );
                    self.report(IssueType::Structure, diagnostics);
                }
                Value::Null => {
                    self.report(IssueType::Structure, "null is not allowed here".to_string())
                }
                _ => self.single_value(value, prop, elem),
            }
            return;
        }
        let Value::Array(items) = value else {
            let diagnostics = format!(
                "expected an array for '{}' (a repeating element), found {}",
                elem.name,
                json_kind(value)
            );
            self.report(IssueType::Structure, diagnostics);
            return;
        };
        if items.is_empty() {
            self.report(
                IssueType::Structure,
                "empty array: omit the element instead".to_string(),
            );
            return;
        }
        self.array_length(items.len(), elem);
        for (index, item) in items.iter().enumerate() {
            self.path.push(Segment::Index(index));
            if item.is_null() {
                // Nulls only hold the place of a value that exists only as an extension in
                // the `_name` sibling array.
                let placeholder = matches!(prop.kind, ValueKind::Primitive(..))
                    && sibling_item(object, &format!("_{key}"), index)
                        .is_some_and(|item| !item.is_null());
                if !placeholder {
                    self.report(IssueType::Structure, "null is not allowed here".to_string());
                }
            } else {
                self.single_value(item, prop, elem);
            }
            self.path.pop();
            if self.is_full() {
                return;
            }
        }
    }

    fn array_length(&mut self, count: usize, elem: &Elem) {
        if count < elem.min as usize {
            self.report(
                IssueType::Required,
                format!(
                    "minimum cardinality {} not met for '{}'",
                    elem.min, elem.name
                ),
            );
        }
        if !elem.allows_count(count) {
            self.report(
                IssueType::Structure,
                format!("too many values for '{}' ({count})", elem.name),
            );
        }
    }

    /// One value (an array item, or the value of a non-repeating element).
    fn single_value(&mut self, value: &'a Value, prop: &Prop, elem: &Elem) {
        match prop.kind {
            ValueKind::Primitive(primitive, _) => {
                if let Err((code, diagnostics)) = check_primitive(primitive, value) {
                    self.report(code, diagnostics);
                } else if let (Primitive::Code, Some(binding), Value::String(code)) =
                    (primitive, elem.binding, value)
                {
                    let value_set = self.model.value_set_at(binding);
                    if !value_set.contains_code(code) {
                        let diagnostics = format!(
                            "code '{code}' is not in the required value set {}",
                            value_set.url
                        );
                        self.report(IssueType::CodeInvalid, diagnostics);
                    }
                }
            }
            ValueKind::Complex(id, special) => {
                let Value::Object(object) = value else {
                    self.report(
                        IssueType::Structure,
                        format!("expected an object, found {}", json_kind(value)),
                    );
                    return;
                };
                self.object(object, id);
                match special {
                    Special::None => {}
                    Special::Reference => self.reference(object, prop.targets),
                    Special::Coding => {
                        if let Some(binding) = elem.binding {
                            self.bound_coding(object, binding);
                        }
                    }
                    Special::CodeableConcept => {
                        if let Some(binding) = elem.binding {
                            self.bound_codeable_concept(object, binding);
                        }
                    }
                }
            }
            ValueKind::Resource => self.nested_resource(value),
        }
    }

    /// The `_name` sibling of a primitive element: its id and extensions.
    fn primitive_extension(
        &mut self,
        object: &'a Map<String, Value>,
        name: &str,
        value: &'a Value,
        kind: ValueKind,
        elem: &Elem,
    ) {
        let ValueKind::Primitive(_, element_struct) = kind else {
            self.report(
                IssueType::Structure,
                format!("unknown element '_{name}': '{name}' is not a primitive"),
            );
            return;
        };
        if !elem.is_array() {
            match value {
                Value::Object(extension) => self.object(extension, element_struct),
                _ => self.report(
                    IssueType::Structure,
                    format!("expected an object, found {}", json_kind(value)),
                ),
            }
            return;
        }
        let Value::Array(items) = value else {
            self.report(
                IssueType::Structure,
                format!("expected an array, found {}", json_kind(value)),
            );
            return;
        };
        if items.is_empty() {
            self.report(
                IssueType::Structure,
                "empty array: omit the element instead".to_string(),
            );
            return;
        }
        // With a value array beside, the value side reports places where both are null.
        let has_values = if let Some(Value::Array(values)) = object.get(name) {
            if values.len() != items.len() {
                let diagnostics = format!(
                    "'_{name}' must have as many items as '{name}' ({})",
                    values.len()
                );
                self.report(IssueType::Structure, diagnostics);
            }
            true
        } else {
            self.array_length(items.len(), elem);
            false
        };
        for (index, item) in items.iter().enumerate() {
            self.path.push(Segment::Index(index));
            match item {
                Value::Object(extension) => self.object(extension, element_struct),
                Value::Null => {
                    if !has_values {
                        self.report(IssueType::Structure, "null is not allowed here".to_string());
                    }
                }
                _ => self.report(
                    IssueType::Structure,
                    format!("expected an object, found {}", json_kind(item)),
                ),
            }
            self.path.pop();
        }
    }

    // --- references and codes -----------------------------------------------------------------

    /// `Reference.reference` must be a plausible reference; a relative one must name a type
    /// that the element allows.
    fn reference(&mut self, object: &'a Map<String, Value>, targets: Option<u32>) {
        let Some(Value::String(reference)) = object.get("reference") else {
            return;
        };
        self.path.push(Segment::Property("reference"));
        match classify_reference(reference) {
            Err(diagnostics) => self.report(IssueType::Value, diagnostics),
            Ok(Some(type_name)) => {
                if !self.model.is_resource_type(type_name) {
                    let diagnostics = format!(
                        "invalid reference '{reference}': unknown resource type '{type_name}'"
                    );
                    self.report(IssueType::Value, diagnostics);
                } else if let Some(targets) = targets {
                    let allowed = &self.model.reference_targets[targets as usize];
                    if !allowed.iter().any(|target| **target == *type_name) {
                        let allowed = allowed.join(", ");
                        let diagnostics = format!(
                            "a reference to {type_name} is not allowed here (allowed: {allowed})"
                        );
                        self.report(IssueType::Value, diagnostics);
                    }
                }
            }
            Ok(None) => {}
        }
        self.path.pop();
    }

    /// A Coding under a required binding must be in the value set.
    fn bound_coding(&mut self, coding: &'a Map<String, Value>, binding: u32) {
        let value_set = self.model.value_set_at(binding);
        let (Some(Value::String(code)), system) = (
            coding.get("code"),
            coding.get("system").and_then(Value::as_str),
        ) else {
            return; // no code: nothing to check (structure errors are reported elsewhere)
        };
        let valid = match system {
            Some(system) => value_set.contains(system, code),
            None => false,
        };
        if !valid {
            let system = system.unwrap_or("(no system)");
            let diagnostics = format!(
                "code '{code}' of {system} is not in the required value set {}",
                value_set.url
            );
            self.report_at("code", IssueType::CodeInvalid, diagnostics);
        }
    }

    /// A CodeableConcept under a required binding must have at least one coding from the value
    /// set (other codings may be translations).
    fn bound_codeable_concept(&mut self, concept: &'a Map<String, Value>, binding: u32) {
        let value_set = self.model.value_set_at(binding);
        let codings = concept
            .get("coding")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let in_value_set =
            |coding: &Value| match (coding["system"].as_str(), coding["code"].as_str()) {
                (Some(system), Some(code)) => value_set.contains(system, code),
                _ => false,
            };
        if codings.iter().any(in_value_set) {
            return;
        }
        let found: Vec<String> = codings
            .iter()
            .map(|coding| {
                format!(
                    "{}|{}",
                    coding["system"].as_str().unwrap_or(""),
                    coding["code"].as_str().unwrap_or("")
                )
            })
            .collect();
        let diagnostics = if found.is_empty() {
            format!(
                "a coding from the required value set {} is needed",
                value_set.url
            )
        } else {
            format!(
                "no coding is in the required value set {} (found {})",
                value_set.url,
                found.join(", ")
            )
        };
        self.report(IssueType::CodeInvalid, diagnostics);
    }
}

/// The `index`th item of the array property `name` of `object`, if any.
fn sibling_item<'v>(object: &'v Map<String, Value>, name: &str, index: usize) -> Option<&'v Value> {
    object.get(name)?.as_array()?.get(index)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Sorts a reference into: relative (`Ok(Some(type))`), other plausible forms (`Ok(None)`:
/// absolute URL, `#contained`, `urn:uuid:`, `urn:oid:`, conditional `Type?query`), or invalid.
fn classify_reference(reference: &str) -> Result<Option<&str>, String> {
    let invalid = |why: &str| Err(format!("invalid reference '{reference}': {why}"));
    if reference.starts_with('#') {
        return Ok(None); // a contained resource (`#` alone: the container)
    }
    if let Some(uuid) = reference.strip_prefix("urn:uuid:") {
        return if is_uuid(uuid) {
            Ok(None)
        } else {
            invalid("not a UUID")
        };
    }
    if reference.starts_with("urn:oid:") {
        return if is_oid(reference) {
            Ok(None)
        } else {
            invalid("not an OID")
        };
    }
    if reference.bytes().any(|byte| byte.is_ascii_whitespace()) {
        return invalid("contains whitespace");
    }
    if has_url_scheme(reference) {
        return Ok(None);
    }
    // A conditional reference, resolved by the server when processing a transaction.
    if let Some((type_name, _query)) = reference.split_once('?') {
        return if type_name.is_empty() {
            invalid("expected Type?query")
        } else {
            Ok(Some(type_name))
        };
    }
    // Type/id or Type/id/_history/version
    let mut parts = reference.split('/');
    let (Some(type_name), Some(id)) = (parts.next(), parts.next()) else {
        return invalid("expected Type/id, an absolute URL, #id, urn:uuid: or urn:oid:");
    };
    if !is_id(id) {
        return invalid("the id is not a valid id");
    }
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => Ok(Some(type_name)),
        (Some("_history"), Some(version), None) if is_id(version) => Ok(Some(type_name)),
        _ => invalid("expected Type/id or Type/id/_history/version"),
    }
}

/// `scheme://...` with an RFC 3986 scheme.
fn has_url_scheme(text: &str) -> bool {
    let Some((scheme, _)) = text.split_once("://") else {
        return false;
    };
    let mut bytes = scheme.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.'))
}

// --- primitive formats ------------------------------------------------------------------------
// Hand-written equivalents of the regular expressions of the R4 primitive types (recorded in
// the model as `regex`), plus the range and calendar checks the expressions cannot express.

/// What is wrong with a primitive value: the issue type and the diagnostics.
type Problem = (IssueType, String);

fn wrong_json_type(expected: &str, value: &Value) -> Problem {
    (
        IssueType::Structure,
        format!("expected {expected}, found {}", json_kind(value)),
    )
}

/// Checks a primitive value's JSON type and format.
pub(crate) fn check_primitive(primitive: Primitive, value: &Value) -> Result<(), Problem> {
    use Primitive::*;
    match (primitive, value) {
        (Boolean, Value::Bool(_)) => Ok(()),
        (Boolean, _) => Err(wrong_json_type("a boolean (true or false)", value)),
        (Integer | PositiveInt | UnsignedInt, _) => check_integer(primitive, value),
        (Decimal, Value::Number(_)) => Ok(()),
        (Decimal, _) => Err(wrong_json_type("a number (decimal)", value)),
        (_, Value::String(text)) => check_string(primitive, text),
        (_, _) => Err(wrong_json_type(
            &format!("a string ({})", primitive.name()),
            value,
        )),
    }
}

fn check_integer(primitive: Primitive, value: &Value) -> Result<(), Problem> {
    let name = primitive.name();
    let Value::Number(number) = value else {
        return Err(wrong_json_type(&format!("a number ({name})"), value));
    };
    let Some(number) = number.as_i64() else {
        return Err((
            IssueType::Structure,
            format!("expected an integer ({name}), found {number}"),
        ));
    };
    let minimum = match primitive {
        Primitive::PositiveInt => 1,
        Primitive::UnsignedInt => 0,
        _ => i32::MIN as i64,
    };
    if number < minimum || number > i32::MAX as i64 {
        return Err((
            IssueType::Value,
            format!("{number} is out of range for {name}"),
        ));
    }
    Ok(())
}

fn check_string(primitive: Primitive, text: &str) -> Result<(), Problem> {
    use Primitive::*;
    if text.is_empty() {
        return Err((
            IssueType::Structure,
            "empty string: omit the element instead".to_string(),
        ));
    }
    if text
        .bytes()
        .any(|byte| byte < 0x20 && !matches!(byte, b'\t' | b'\r' | b'\n'))
    {
        return Err((
            IssueType::Value,
            "control characters are not allowed in strings".to_string(),
        ));
    }
    let valid = match primitive {
        String | Markdown => {
            if text.len() > MAX_STRING_BYTES {
                return Err((
                    IssueType::TooLong,
                    format!("string too long ({} bytes; at most 1 MB)", text.len()),
                ));
            }
            true
        }
        Code => is_code(text),
        Id => is_id(text),
        Uri | Url | Canonical => !text.bytes().any(|byte| byte.is_ascii_whitespace()),
        Oid => is_oid(text),
        Uuid => text.strip_prefix("urn:uuid:").is_some_and(is_uuid),
        Base64Binary => is_base64(text),
        Date => is_date(text),
        DateTime => is_date_time(text),
        Instant => is_instant(text),
        Time => is_time(text.as_bytes()),
        Xhtml => text.starts_with("<div"),
        Boolean | Integer | PositiveInt | UnsignedInt | Decimal => {
            unreachable!("not a string type")
        }
    };
    if valid {
        Ok(())
    } else {
        Err((IssueType::Value, format_error(primitive, text)))
    }
}

fn format_error(primitive: Primitive, text: &str) -> String {
    let shown: std::string::String = text.chars().take(100).collect();
    let hint = match primitive {
        Primitive::Id => " (1-64 of A-Z, a-z, 0-9, '-', '.')",
        Primitive::Code => " (no leading, trailing or repeated whitespace)",
        Primitive::Date => " (YYYY, YYYY-MM or YYYY-MM-DD)",
        Primitive::DateTime => {
            " (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.fff] with a time zone)"
        }
        Primitive::Instant => " (YYYY-MM-DDThh:mm:ss[.fff] with a time zone)",
        Primitive::Time => " (hh:mm:ss[.fff])",
        Primitive::Xhtml => " (must be a <div> element)",
        Primitive::Uri | Primitive::Url | Primitive::Canonical => " (no whitespace)",
        _ => "",
    };
    format!("'{shown}' is not a valid {}{hint}", primitive.name())
}

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// `[^\s]+(\s[^\s]+)*`: no leading, trailing or consecutive whitespace.
fn is_code(text: &str) -> bool {
    let bytes = text.as_bytes();
    let (first, last) = (bytes[0], bytes[bytes.len() - 1]);
    !is_whitespace(first)
        && !is_whitespace(last)
        && !bytes
            .windows(2)
            .any(|pair| is_whitespace(pair[0]) && is_whitespace(pair[1]))
}

/// `[A-Za-z0-9\-\.]{1,64}`
pub(crate) fn is_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.'))
}

/// `urn:oid:[0-2](\.(0|[1-9][0-9]*))+`
fn is_oid(text: &str) -> bool {
    let Some(oid) = text.strip_prefix("urn:oid:") else {
        return false;
    };
    let mut arcs = oid.split('.');
    let first_ok = arcs
        .next()
        .is_some_and(|arc| matches!(arc, "0" | "1" | "2"));
    let mut rest = 0;
    let rest_ok = arcs.all(|arc| {
        rest += 1;
        !arc.is_empty()
            && arc.bytes().all(|b| b.is_ascii_digit())
            && (arc == "0" || !arc.starts_with('0'))
    });
    first_ok && rest_ok && rest > 0
}

/// `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}` (lower case, as in R4).
fn is_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(index, &byte)| match index {
            8 | 13 | 18 | 23 => byte == b'-',
            _ => byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte),
        })
}

/// `(\s*([0-9a-zA-Z\+/=]){4}\s*)+`, with `=` only as padding at the end.
#[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` needs Rust 1.87; the workspace allows 1.85
fn is_base64(text: &str) -> bool {
    let mut count = 0usize;
    let mut padding = 0usize;
    for byte in text.bytes() {
        if is_whitespace(byte) {
            continue;
        }
        if byte == b'=' {
            padding += 1;
        } else if padding > 0 || !(byte.is_ascii_alphanumeric() || byte == b'+' || byte == b'/') {
            return false; // data after padding, or not in the alphabet
        }
        count += 1;
    }
    count > 0 && count % 4 == 0 && padding <= 2
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, a real calendar date, year 0001 to 9999.
fn is_date(text: &str) -> bool {
    parse_date(text.as_bytes()) == Some(text.len())
}

/// A date, or a full date with `Thh:mm:ss[.fff]` and a time zone.
fn is_date_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    match parse_date(bytes) {
        Some(end) if end == bytes.len() => true,
        Some(10) => bytes[10] == b'T' && is_time_with_zone(&bytes[11..]),
        _ => false,
    }
}

/// `YYYY-MM-DDThh:mm:ss[.fff]` and a time zone.
fn is_instant(text: &str) -> bool {
    let bytes = text.as_bytes();
    parse_date(bytes) == Some(10)
        && bytes.len() > 11
        && bytes[10] == b'T'
        && is_time_with_zone(&bytes[11..])
}

/// Parses the longest date prefix (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`); returns its length.
fn parse_date(bytes: &[u8]) -> Option<usize> {
    let year = digits(bytes, 0, 4)?;
    if year == 0 {
        return None;
    }
    if bytes.get(4) != Some(&b'-') {
        return Some(4);
    }
    let month = digits(bytes, 5, 2)?;
    if !(1..=12).contains(&month) {
        return None;
    }
    if bytes.get(7) != Some(&b'-') {
        return Some(7);
    }
    let day = digits(bytes, 8, 2)?;
    if day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some(10)
}

#[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` needs Rust 1.87; the workspace allows 1.85
fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `hh:mm:ss[.fff]`, nothing after.
fn is_time(bytes: &[u8]) -> bool {
    parse_time(bytes) == Some(bytes.len())
}

/// `hh:mm:ss[.fff]` followed by `Z` or `+hh:mm`/`-hh:mm` (offsets up to 14:00).
fn is_time_with_zone(bytes: &[u8]) -> bool {
    let Some(end) = parse_time(bytes) else {
        return false;
    };
    match &bytes[end..] {
        [b'Z'] => true,
        [b'+' | b'-', zone @ ..] if zone.len() == 5 && zone[2] == b':' => {
            match (digits(zone, 0, 2), digits(zone, 3, 2)) {
                (Some(hours), Some(minutes)) => {
                    (hours <= 13 && minutes <= 59) || (hours == 14 && minutes == 0)
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Parses `hh:mm:ss[.fff]` (seconds up to 60 for leap seconds); returns its length.
fn parse_time(bytes: &[u8]) -> Option<usize> {
    let hours = digits(bytes, 0, 2)?;
    let minutes = digits(bytes, 3, 2)?;
    let seconds = digits(bytes, 6, 2)?;
    if bytes[2] != b':' || bytes[5] != b':' || hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    if bytes.get(8) != Some(&b'.') {
        return Some(8);
    }
    let fraction = bytes[9..]
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    (fraction > 0).then_some(9 + fraction)
}

/// The number written with exactly `count` ASCII digits at `start`.
fn digits(bytes: &[u8], start: usize, count: usize) -> Option<u32> {
    let slice = bytes.get(start..start + count)?;
    slice.iter().try_fold(0u32, |value, &byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + (byte - b'0') as u32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(primitive: Primitive, value: Value) -> bool {
        check_primitive(primitive, &value).is_ok()
    }

    #[test]
    fn dates() {
        for good in ["2021", "2021-02", "2021-02-28", "2020-02-29", "0001-01-01"] {
            assert!(is_date(good), "{good}");
        }
        for bad in [
            "2021-13-45",
            "2021-02-29",
            "0000",
            "21",
            "2021-1",
            "2021-01-01T10:00:00Z",
            "2021-04-31",
            "2021-",
        ] {
            assert!(!is_date(bad), "{bad}");
        }
    }

    #[test]
    fn date_times_and_instants() {
        for good in [
            "2021",
            "2021-03",
            "2021-03-04",
            "2021-03-04T10:11:12Z",
            "2021-03-04T10:11:12.123+05:30",
            "2021-03-04T23:59:60-14:00",
        ] {
            assert!(is_date_time(good), "{good}");
        }
        for bad in [
            "2021-03-04T10:11Z",
            "2021-03-04T10:11:12",
            "2021-03-04T24:00:00Z",
            "2021-03-04T10:11:12+15:00",
            "2021-03-04 10:11:12Z",
            "2021-03-04T10:11:12.Z",
        ] {
            assert!(!is_date_time(bad), "{bad}");
        }
        assert!(is_instant("2015-02-07T13:28:17.239+02:00"));
        assert!(
            !is_instant("2015-02-07T13:28:17"),
            "an instant needs a time zone"
        );
        assert!(!is_instant("2015-02-07"));
    }

    #[test]
    fn times() {
        assert!(is_time(b"09:30:00"));
        assert!(is_time(b"09:30:00.5"));
        assert!(!is_time(b"09:30"));
        assert!(!is_time(b"09:30:00Z"));
        assert!(!is_time(b"25:00:00"));
    }

    #[test]
    fn identifiers_and_codes() {
        assert!(is_id("example-1.a"));
        assert!(!is_id("has_underscore"));
        assert!(!is_id(&"a".repeat(65)));
        assert!(is_code("active"));
        assert!(is_code("two words"));
        assert!(!is_code(" leading"));
        assert!(!is_code("trailing "));
        assert!(!is_code("double  space"));
        assert!(is_oid("urn:oid:2.16.840.1.113883"));
        assert!(!is_oid("urn:oid:3.1"));
        assert!(!is_oid("urn:oid:1"));
        assert!(!is_oid("urn:oid:1.02"));
        assert!(is_uuid("a0d04be4-ec8e-4d5b-8ca7-5d9ae8fbeb8a"));
        assert!(!is_uuid("A0D04BE4-EC8E-4D5B-8CA7-5D9AE8FBEB8A"));
    }

    #[test]
    fn base64() {
        assert!(is_base64("aGVsbG8="));
        assert!(is_base64("aGVs\nbG8h"));
        assert!(!is_base64("aGVsbG8"), "length not a multiple of 4");
        assert!(!is_base64("aG=sbG8="), "padding in the middle");
        assert!(!is_base64("aGVsbG8*"));
    }

    #[test]
    fn json_types_and_ranges() {
        assert!(check(Primitive::Decimal, json!(1.5)));
        assert!(!check(Primitive::Decimal, json!("1.5")));
        assert!(check(Primitive::Integer, json!(-3)));
        assert!(!check(Primitive::Integer, json!(1.5)));
        assert!(!check(Primitive::Integer, json!(3_000_000_000u64)));
        assert!(!check(Primitive::PositiveInt, json!(0)));
        assert!(check(Primitive::UnsignedInt, json!(0)));
        assert!(!check(Primitive::UnsignedInt, json!(-1)));
        assert!(!check(Primitive::Boolean, json!("true")));
        assert!(!check(Primitive::String, json!(5)));
        assert!(!check(Primitive::String, json!("")));
        assert!(!check(Primitive::String, json!("bell\u{7}")));
        assert!(check(Primitive::String, json!("tab\tand\nnewline")));
        assert!(!check(
            Primitive::String,
            json!("x".repeat(MAX_STRING_BYTES + 1))
        ));
        assert!(check(Primitive::Markdown, json!("**bold**")));
        assert!(!check(Primitive::Uri, json!("http://a b")));
        assert!(check(
            Primitive::Xhtml,
            json!("<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>")
        ));
        assert!(!check(Primitive::Xhtml, json!("<p>x</p>")));
    }

    #[test]
    fn references() {
        assert_eq!(classify_reference("Patient/123"), Ok(Some("Patient")));
        assert_eq!(
            classify_reference("Patient/123/_history/2"),
            Ok(Some("Patient"))
        );
        assert_eq!(
            classify_reference("Patient?identifier=x|1"),
            Ok(Some("Patient"))
        );
        assert_eq!(classify_reference("#contained"), Ok(None));
        assert_eq!(
            classify_reference("http://example.org/fhir/Patient/1"),
            Ok(None)
        );
        assert_eq!(
            classify_reference("urn:uuid:a0d04be4-ec8e-4d5b-8ca7-5d9ae8fbeb8a"),
            Ok(None)
        );
        assert_eq!(classify_reference("urn:oid:1.2.3"), Ok(None));
        assert!(classify_reference("Patient").is_err());
        assert!(classify_reference("Patient/has space").is_err());
        assert!(classify_reference("Patient/1/extra").is_err());
        assert!(classify_reference("urn:uuid:nope").is_err());
    }
}
