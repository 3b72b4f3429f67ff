//! Arguments as they cross the API: a JSON array text plus binary attachments, referenced from
//! the JSON by `{"_placeholder":true,"num":N}` objects at any depth (Socket.IO's encoding of
//! binary, used by every language binding).
//!
//! One contract for every call that takes arguments: the JSON is an array, every placeholder
//! names an attachment that exists, and every attachment is named by a placeholder. A call that
//! cannot carry binary (a subscription, the envelope protocol) refuses attachments with the same
//! error in every language, because the refusal is made here and in the client, not in the
//! bindings.

use serde::Serialize;
use serde_json::Value;

use crate::{
    codec::{json::RawJson, socketio},
    error::{Error, Result},
};

/// Arguments of an outgoing event or acknowledgement: a JSON array plus binary attachments.
///
/// Build from a single value (`json!({...}).into()`), from several ([`Args::list`]), from
/// JSON text and attachments ([`Args::from_parts`]), or with binary parts ([`Args::binary`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub(crate) json: RawJson,
    pub(crate) attachments: Vec<Vec<u8>>,
}

impl Args {
    /// No arguments.
    pub fn none() -> Self {
        Self::from_value_array(Value::Array(Vec::new()))
    }

    /// Several JSON arguments.
    pub fn list(values: impl IntoIterator<Item = Value>) -> Self {
        Self::from_value_array(Value::Array(values.into_iter().collect()))
    }

    /// Any serializable values as the argument list, e.g. `Args::serialize(&(a, b))` for two.
    pub fn serialize<T: Serialize + ?Sized>(args: &T) -> Result<Self> {
        let v = serde_json::to_value(args).map_err(|e| Error::InvalidArgs(e.to_string()))?;
        match v {
            Value::Array(_) => Ok(Self::from_value_array(v)),
            other => Ok(Self::list([other])),
        }
    }

    /// A JSON array text used as-is (no re-encoding), e.g. `[{"bpm":72}]`.
    pub fn from_json_array(text: impl Into<String>) -> Result<Self> {
        Self::from_parts(text.into(), Vec::new())
    }

    /// A JSON array text and the attachments its placeholders name: what the language bindings
    /// pass. Refuses text that is not a JSON array, a placeholder naming a missing attachment,
    /// and an attachment no placeholder names.
    pub fn from_parts(json: String, attachments: Vec<Vec<u8>>) -> Result<Self> {
        let json = RawJson::from_string(json).map_err(|e| Error::InvalidArgs(e.to_string()))?;
        if !json.get().trim_start().starts_with('[') {
            return Err(Error::InvalidArgs("arguments must be a JSON array".into()));
        }
        let args = Self { json, attachments };
        args.check()?;
        Ok(args)
    }

    /// Arguments that reference binary attachments with [`socketio::placeholder`] values at
    /// any depth.
    pub fn with_attachments(args: Value, attachments: Vec<Vec<u8>>) -> Result<Self> {
        if !args.is_array() {
            return Err(Error::InvalidArgs("arguments must be a JSON array".into()));
        }
        let mut a = Self::from_value_array(args);
        a.attachments = attachments;
        a.check()?;
        Ok(a)
    }

    /// Appends a binary argument (sent as an attachment).
    pub fn binary(mut self, bytes: Vec<u8>) -> Self {
        let mut items: Vec<Value> = serde_json::from_str(self.json.get()).unwrap_or_default();
        items.push(socketio::placeholder(self.attachments.len()));
        self.attachments.push(bytes);
        let attachments = std::mem::take(&mut self.attachments);
        Self {
            attachments,
            ..Self::from_value_array(Value::Array(items))
        }
    }

    /// The JSON array text.
    pub fn json(&self) -> &str {
        self.json.get()
    }

    /// The attachments.
    pub fn attachments(&self) -> &[Vec<u8>] {
        &self.attachments
    }

    /// The JSON text and the attachments, taken apart.
    pub(crate) fn into_parts(self) -> (String, Vec<Vec<u8>>) {
        (self.json.into_string(), self.attachments)
    }

    fn from_value_array(v: Value) -> Self {
        // Serializing a Value cannot fail, and its text is valid JSON.
        Self {
            json: RawJson::validated(v.to_string()),
            attachments: Vec::new(),
        }
    }

    /// Checks that placeholders and attachments agree: each placeholder names an attachment
    /// that exists and each attachment is named. Text without a placeholder and no attachments
    /// (nearly every call) is not parsed again.
    pub(crate) fn check(&self) -> Result<()> {
        if self.attachments.is_empty() && !self.json.get().contains("_placeholder") {
            return Ok(());
        }
        let v: Value =
            serde_json::from_str(self.json.get()).map_err(|e| Error::InvalidArgs(e.to_string()))?;
        let mut named = vec![false; self.attachments.len()];
        let mut dangling = None;
        socketio::visit_placeholders(&v, &mut |num| match num {
            Some(n) if (n as usize) < named.len() => named[n as usize] = true,
            other => dangling = Some(other),
        });
        if let Some(num) = dangling {
            let which = num.map_or_else(|| "without a valid num".to_owned(), |n| format!("{n}"));
            return Err(Error::InvalidArgs(format!(
                "placeholder {which} names no attachment ({} given)",
                self.attachments.len()
            )));
        }
        if let Some(i) = named.iter().position(|n| !n) {
            return Err(Error::InvalidArgs(format!(
                "attachment {i} is named by no placeholder"
            )));
        }
        Ok(())
    }

    /// Refuses attachments where a call cannot carry them (`what` says which call).
    pub(crate) fn refuse_binary(&self, what: &str) -> Result<()> {
        if self.attachments.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgs(format!(
                "{what} cannot carry binary attachments"
            )))
        }
    }
}

impl From<Value> for Args {
    /// One argument.
    fn from(v: Value) -> Self {
        Self::list([v])
    }
}

impl From<()> for Args {
    /// No arguments.
    fn from(_: ()) -> Self {
        Self::none()
    }
}

/// The answer to an `emit_with_ack`.
#[derive(Debug, Clone, PartialEq)]
pub struct AckReply {
    /// The answer's arguments as a JSON array text.
    pub args: RawJson,
    /// Binary attachments of the answer.
    pub attachments: Vec<Vec<u8>>,
}

impl AckReply {
    /// The answer parsed into JSON values.
    pub fn values(&self) -> Result<Vec<Value>> {
        serde_json::from_str(self.args.get()).map_err(|e| Error::InvalidArgs(e.to_string()))
    }

    /// The answer deserialized into the app's type.
    pub fn args_as<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(self.args.get()).map_err(|e| Error::InvalidArgs(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn args_are_validated_when_built() {
        assert_eq!(Args::none().json(), "[]");
        assert_eq!(Args::from(json!({"a": 1})).json(), r#"[{"a":1}]"#);
        assert_eq!(Args::serialize(&(1, "b")).unwrap().json(), r#"[1,"b"]"#);
        assert!(Args::from_json_array("{}").is_err());
        assert!(Args::from_json_array("[1,").is_err());
        let bin = Args::list([json!("t")]).binary(vec![1]).binary(vec![2]);
        assert_eq!(
            bin.json(),
            r#"["t",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
        assert!(bin.check().is_ok());
        let missing =
            Args::with_attachments(json!([{"_placeholder": true, "num": 1}]), vec![vec![1]]);
        assert!(missing.is_err(), "placeholder 1 with one attachment");
        let unused = Args::with_attachments(json!([1]), vec![vec![1]]);
        assert!(unused.is_err(), "an attachment without a placeholder");
    }

    #[test]
    fn a_dangling_placeholder_is_refused_even_without_attachments() {
        let err = Args::from_json_array(r#"[{"_placeholder":true,"num":0}]"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("placeholder 0 names no attachment"),
            "{err}"
        );
        let err = Args::from_parts(r#"[{"_placeholder":true}]"#.into(), vec![vec![1]]);
        assert!(err.is_err(), "a placeholder without num");
        // The word alone, not as a placeholder object, is ordinary data.
        assert!(Args::from_json_array(r#"["_placeholder",{"_placeholder":false}]"#).is_ok());
        let ok = Args::from_parts(
            r#"[{"a":[{"_placeholder":true,"num":1}]},{"_placeholder":true,"num":0}]"#.into(),
            vec![vec![0], vec![1]],
        );
        assert!(ok.is_ok(), "{ok:?}");
    }
}
