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
use serde_json::{Value, value::RawValue};

use crate::{
    codec::{
        json::{self, RawJson},
        socketio,
    },
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

    /// An event's name and arguments from one JSON array, `["name", arg, ...]` (the shape
    /// Socket.IO gives an event). A binding builds it in one encode and hands it over as one
    /// string: in UniFFI's generated Python each string argument costs some 8 µs to lower, a
    /// sixth of an emit. Refuses text that is not such an array or whose name is empty.
    pub fn split_event(text: &str) -> Result<(String, Self)> {
        let invalid = |e: String| Error::InvalidArgs(e);
        json::check_depth(text).map_err(|e| invalid(e.to_string()))?;
        let items: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let Some(name) = items.first() else {
            return Err(invalid("an event needs a name".into()));
        };
        let name: String = serde_json::from_str(name.get())
            .map_err(|_| invalid("an event's name must be a string".into()))?;
        if name.is_empty() {
            return Err(invalid("event name is empty".into()));
        }
        // The arguments are the array's tail, taken from the text as it is: `[` and whatever
        // follows the name's comma, up to and with the closing `]`. Every item borrows from
        // `text`, so where the second one starts is an offset into it.
        let json = match items.get(1) {
            None => "[]".to_owned(),
            Some(second) => {
                let from = second.get().as_ptr() as usize - text.as_ptr() as usize;
                format!("[{}", text[from..].trim_end())
            }
        };
        let args = Self {
            json: RawJson::validated(json),
            attachments: Vec::new(),
        };
        args.check()?;
        Ok((name, args))
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
        // Serializing a Value cannot fail, and its text is valid JSON. `to_string` starts
        // from a buffer that fits a typical event; `Value`'s `Display` would grow one from
        // nothing, five reallocations for 130 bytes.
        Self {
            json: RawJson::validated(serde_json::to_string(&v).unwrap_or_default()),
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
        // Written inside its brackets, rather than moved into a one-item array first: that
        // array would be an allocation per emit.
        let mut text = Vec::with_capacity(128);
        text.push(b'[');
        let written = serde_json::to_writer(&mut text, &v);
        text.push(b']');
        match (written, String::from_utf8(text)) {
            (Ok(()), Ok(json)) => Self {
                json: RawJson::validated(json),
                attachments: Vec::new(),
            },
            // Neither happens (a Value always serializes, as UTF-8), but a fallback costs
            // nothing here.
            _ => Self::list([v]),
        }
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
    fn an_event_array_splits_into_its_name_and_its_arguments_as_written() {
        let split = |t: &str| Args::split_event(t).map(|(n, a)| (n, a.json().to_owned()));
        let ok = |n: &str, a: &str| Ok((n.to_owned(), a.to_owned()));
        assert_eq!(
            split(r#"["tick",{"a":[1,"]"]},2]"#),
            ok("tick", r#"[{"a":[1,"]"]},2]"#)
        );
        assert_eq!(split(r#"["tick"]"#), ok("tick", "[]"));
        assert_eq!(split(" [ \"t\\\"x\" , 1 ]\n"), ok("t\"x", "[1 ]"));
        assert_eq!(split(r#"["\u00e9v"]"#), ok("év", "[]"));
        for bad in [
            "[]",
            "[1]",
            r#"[null,1]"#,
            "{}",
            r#"["t","#,
            r#"[""]"#,
            r#"["t"] 1"#,
        ] {
            assert!(
                matches!(split(bad), Err(Error::InvalidArgs(_))),
                "{bad} was taken"
            );
        }
        let dangling = split(r#"["t",{"_placeholder":true,"num":0}]"#).unwrap_err();
        assert!(dangling.to_string().contains("names no attachment"));
        let deep = format!(r#"["t",{}1{}]"#, "[".repeat(200), "]".repeat(200));
        assert!(split(&deep).is_err(), "nesting past the codec's limit");
        // What a split gives is what the same event built from values gives.
        let (_, a) = Args::split_event(r#"["m",{"bpm":72}]"#).unwrap();
        assert_eq!(a, Args::from(json!({"bpm": 72})));
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

#[cfg(test)]
mod contract {
    //! The shared fixture `tests/fixtures/args.json`, run here against the core; pytest,
    //! JUnit and XCTest run the same file against their wrappers.

    use base64::{Engine as _, engine::general_purpose::STANDARD};
    use serde_json::Value;

    use super::*;
    use crate::{
        client::Client,
        codec::{engineio, socketio},
        config::ClientConfig,
    };

    fn fixture() -> Value {
        serde_json::from_str(include_str!("../../tests/fixtures/args.json")).unwrap()
    }

    fn blobs(list: &Value) -> Vec<Vec<u8>> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|b| STANDARD.decode(b.as_str().unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn encoded_arguments_go_on_the_wire_as_the_fixture_says() {
        let f = fixture();
        for case in f["encode"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let json = serde_json::to_string(&case["json"]).unwrap();
            let args = Args::from_parts(json, blobs(&case["attachments"]))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let n = args.attachments.len();
            let wire = engineio::encode_message(64, |m| {
                socketio::encode_event(m, "/", "e", &args.json, None, n)
            });
            assert_eq!(wire, case["wire"].as_str().unwrap(), "{name}");
        }
    }

    #[test]
    fn the_core_refuses_what_the_fixture_refuses() {
        let f = fixture();
        for case in f["refuse"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let json = case["json"].as_str().unwrap().to_owned();
            let refused = Args::from_parts(json, blobs(&case["attachments"]));
            assert!(
                matches!(refused, Err(Error::InvalidArgs(_))),
                "{name}: {refused:?}"
            );
        }
    }

    #[tokio::test]
    async fn calls_that_carry_json_only_refuse_binary() {
        let f = fixture();
        let client = Client::new(ClientConfig::new("http://127.0.0.1:9").unwrap()).unwrap();
        let bin = || Args::list([]).binary(vec![1]);
        for call in f["no_binary"].as_array().unwrap() {
            let refused = match call.as_str().unwrap() {
                "subscribe" => client.subscribe("room:subscribe", bin(), None).await,
                "unsubscribe" => client.unsubscribe("room:subscribe", bin()).await,
                other => panic!("the fixture names an unknown call {other}"),
            };
            assert!(
                matches!(&refused, Err(Error::InvalidArgs(m)) if m.contains("binary")),
                "{call}: {refused:?}"
            );
        }
        client.close().await;
    }
}
