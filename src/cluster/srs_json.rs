//! SRS's answer envelope, `{"code":0,"data":{...}}`, read once for every SRS-shaped API we call
//! (coworkers' `/api/v1/clusters`, the forward backend): a non-zero code is a refusal, and
//! `data` must be an object.

use serde_json::{Map, Value};

/// What is wrong with an envelope (each caller maps it onto its own error type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The body does not parse as JSON.
    NotJson(String),
    /// The JSON is not an object.
    NotObject,
    /// A required field (`code`, `data`) is absent.
    Missing(&'static str),
    /// A field has the wrong JSON type: (field, what it should be).
    WrongType(&'static str, &'static str),
    /// `code` is not 0.
    Code(i64),
}

/// The `data` object of an answer whose `code` is 0.
pub fn data_object(body: &[u8]) -> Result<Map<String, Value>, EnvelopeError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let Value::Object(mut obj) = v else {
        return Err(EnvelopeError::NotObject);
    };
    let code = obj.get("code").ok_or(EnvelopeError::Missing("code"))?;
    let code = code
        .as_i64()
        .ok_or(EnvelopeError::WrongType("code", "an integer"))?;
    if code != 0 {
        return Err(EnvelopeError::Code(code));
    }
    match obj.remove("data") {
        None => Err(EnvelopeError::Missing("data")),
        Some(Value::Object(data)) => Ok(data),
        Some(_) => Err(EnvelopeError::WrongType("data", "an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes() {
        assert!(data_object(br#"{"code":0,"data":{"a":1}}"#)
            .unwrap()
            .contains_key("a"));
        assert_eq!(
            data_object(b"nope")
                .err()
                .map(|e| matches!(e, EnvelopeError::NotJson(_))),
            Some(true)
        );
        assert_eq!(data_object(b"[1]").err(), Some(EnvelopeError::NotObject));
        assert_eq!(
            data_object(br#"{"data":{}}"#).err(),
            Some(EnvelopeError::Missing("code"))
        );
        assert_eq!(
            data_object(br#"{"code":"0"}"#).err(),
            Some(EnvelopeError::WrongType("code", "an integer"))
        );
        assert_eq!(
            data_object(br#"{"code":403}"#).err(),
            Some(EnvelopeError::Code(403))
        );
        assert_eq!(
            data_object(br#"{"code":0}"#).err(),
            Some(EnvelopeError::Missing("data"))
        );
        assert_eq!(
            data_object(br#"{"code":0,"data":[]}"#).err(),
            Some(EnvelopeError::WrongType("data", "an object"))
        );
    }
}
