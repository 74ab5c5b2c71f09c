//! Reading the `Parameters` resource that a FHIR operation takes: each accessor names the
//! parameter and its expected `value[x]` in the error, so that a client sees exactly what to fix.

use crate::error::ApiError;
use serde_json::Value;

/// The parameters of one operation call.
pub struct Params<'a> {
    operation: &'a str,
    list: &'a [Value],
}

impl<'a> Params<'a> {
    /// `value` must be a Parameters resource (an empty one has no `parameter`).
    pub fn new(operation: &'a str, value: &'a Value) -> Result<Params<'a>, ApiError> {
        if value["resourceType"] != "Parameters" {
            return Err(ApiError::bad_request(format!("{operation} takes a Parameters resource")));
        }
        let list = match value.get("parameter") {
            None => &[][..],
            Some(Value::Array(list)) => list.as_slice(),
            Some(_) => return Err(ApiError::bad_request("Parameters.parameter must be an array")),
        };
        Ok(Params { operation, list })
    }

    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.list.iter().find(|p| p["name"] == name)
    }

    fn typed(&self, name: &str, field: &str) -> Result<Option<&'a Value>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(p) => p
                .get(field)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("parameter '{name}' of {} needs {field}", self.operation))),
        }
    }

    /// A `valueString` (trimmed, non-empty, at most `max` bytes).
    pub fn text(&self, name: &str, max: usize) -> Result<Option<String>, ApiError> {
        let Some(v) = self.typed(name, "valueString")? else { return Ok(None) };
        v.as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= max)
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| ApiError::bad_request(format!("parameter '{name}' must be a non-empty valueString of at most {max} bytes")))
    }

    /// A `valueCode`.
    pub fn code(&self, name: &str) -> Result<Option<&'a str>, ApiError> {
        let Some(v) = self.typed(name, "valueCode")? else { return Ok(None) };
        v.as_str().map(Some).ok_or_else(|| ApiError::bad_request(format!("parameter '{name}' needs a valueCode string")))
    }

    /// A `valueDate` (checked by the caller's parser).
    pub fn date(&self, name: &str) -> Result<Option<&'a str>, ApiError> {
        let Some(v) = self.typed(name, "valueDate")? else { return Ok(None) };
        v.as_str().map(Some).ok_or_else(|| ApiError::bad_request(format!("parameter '{name}' needs a valueDate string")))
    }

    /// A `valueMoney`.
    pub fn money(&self, name: &str) -> Result<Option<&'a Value>, ApiError> {
        self.typed(name, "valueMoney")
    }

    /// A `valueReference` to a resource of `rtype`, as its id.
    pub fn reference(&self, name: &str, rtype: &str) -> Result<Option<String>, ApiError> {
        let Some(v) = self.typed(name, "valueReference")? else { return Ok(None) };
        let r = v["reference"].as_str().ok_or_else(|| ApiError::bad_request(format!("parameter '{name}' needs valueReference.reference")))?;
        let id = r.strip_prefix(rtype).and_then(|r| r.strip_prefix('/')).ok_or_else(|| ApiError::bad_request(format!("parameter '{name}' must reference a {rtype}")))?;
        super::check_id(id)?;
        Ok(Some(id.to_string()))
    }
}

/// A parameter that must be present.
pub fn required<T>(value: Option<T>, name: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::bad_request(format!("parameter '{name}' is required")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_typed_parameters_and_names_what_is_wrong() {
        let v = json!({"resourceType": "Parameters", "parameter": [
            {"name": "patient", "valueReference": {"reference": "Patient/p1"}},
            {"name": "mode", "valueCode": "cash"},
            {"name": "reason", "valueString": "  refund  "},
            {"name": "bad", "valueInteger": 3}
        ]});
        let p = Params::new("$x", &v).unwrap();
        assert_eq!(p.reference("patient", "Patient").unwrap().as_deref(), Some("p1"));
        assert!(p.reference("patient", "Practitioner").is_err());
        assert!(p.reference("patient", "Pat").is_err());
        assert_eq!(p.code("mode").unwrap(), Some("cash"));
        assert_eq!(p.text("reason", 10).unwrap().as_deref(), Some("refund"));
        assert!(p.text("reason", 3).is_err());
        assert!(p.text("bad", 10).is_err());
        assert_eq!(p.text("absent", 10).unwrap(), None);
        assert!(required(p.text("absent", 10).unwrap(), "absent").is_err());
        assert!(Params::new("$x", &json!({"resourceType": "Patient"})).is_err());
        assert!(Params::new("$x", &json!({"resourceType": "Parameters", "parameter": {}})).is_err());
        assert!(Params::new("$x", &json!({"resourceType": "Parameters"})).unwrap().get("a").is_none());
    }
}
