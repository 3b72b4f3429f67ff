//! JSON as text: a validated value kept unparsed ([`RawJson`]), a JSON pointer that parses only
//! the path it follows, and the small text edits the outbox makes to argument arrays. Shared
//! by every codec and protocol; nothing here knows a wire format.

use std::{borrow::Cow, collections::HashMap};

use serde_json::value::RawValue;

use super::CodecError;

/// The deepest nesting of arrays and objects a codec accepts: the most serde_json's
/// recursion limit parses, so whatever a codec admits `Event::args` can deserialize. The
/// bindings' parsers are recursive too, so a frame of a megabyte of `[` must not reach them.
pub const MAX_DEPTH: usize = 127;

/// Refuses JSON text nested deeper than [`MAX_DEPTH`]. The validating parsers skip over
/// nested values without a depth limit, so this is the one place depth is bounded. Cheap on
/// the hot path: it counts opening brackets first (a loop the compiler vectorises) and walks
/// the text only when there are enough of them to matter.
pub(crate) fn check_depth(text: &str) -> Result<(), CodecError> {
    let bytes = text.as_bytes();
    let opening = bytes.iter().filter(|&&c| c == b'[' || c == b'{').count();
    if opening <= MAX_DEPTH {
        return Ok(());
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &c in bytes {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(CodecError::TooDeep(MAX_DEPTH));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// A JSON value kept as validated text, so it is parsed once, by whoever needs its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawJson(String);

impl RawJson {
    /// Validates `text` as JSON.
    pub fn from_string(text: String) -> Result<Self, CodecError> {
        check_depth(&text)?;
        serde_json::from_str::<serde::de::IgnoredAny>(&text)
            .map_err(|e| CodecError::InvalidJson(e.to_string()))?;
        Ok(Self(text))
    }

    /// Wraps text that was validated as it was built (or before it was stored).
    pub(crate) fn validated(text: String) -> Self {
        Self(text)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        &self.0
    }

    /// The JSON text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The value at `pointer` (RFC 6901) inside the first element of the JSON array `args`,
/// as raw JSON text borrowed from `args`. Only the path is parsed; the rest is skipped.
pub(crate) fn lookup<'a>(args: &'a str, pointer: &str) -> Option<&'a RawValue> {
    let list: Vec<&'a RawValue> = serde_json::from_str(args).ok()?;
    let mut cur: &'a RawValue = list.first()?;
    if pointer.is_empty() {
        return Some(cur);
    }
    for seg in pointer.strip_prefix('/')?.split('/') {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        let text: &'a str = cur.get();
        cur = if text.starts_with('{') {
            let map: HashMap<Cow<'a, str>, &'a RawValue> = serde_json::from_str(text).ok()?;
            map.get(seg.as_str()).copied()?
        } else if text.starts_with('[') {
            let items: Vec<&'a RawValue> = serde_json::from_str(text).ok()?;
            items.get(seg.parse::<usize>().ok()?).copied()?
        } else {
            return None;
        };
    }
    Some(cur)
}

/// A string's contents or a number's digits; other values are not ids.
pub(crate) fn scalar_text(v: &RawValue) -> Option<String> {
    let t = v.get();
    if t.starts_with('"') {
        serde_json::from_str::<String>(t).ok()
    } else if t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Some(t.to_owned())
    } else {
        None
    }
}

/// Milliseconds since the epoch from an RFC 3339 string or a number.
pub(crate) fn timestamp_ms(v: &RawValue) -> Option<i64> {
    let t = v.get();
    if t.starts_with('"') {
        crate::time::parse_rfc3339(&serde_json::from_str::<String>(t).ok()?)
    } else {
        let n: f64 = t.parse().ok()?;
        Some(if n < 1e11 { n * 1000.0 } else { n } as i64)
    }
}

/// Appends `s` as a JSON string literal, as serde_json writes it. Event names, keys and field
/// names seldom need escaping: those are copied as they are, where `serde_json::to_string`
/// would allocate a buffer of its own for each (several per emit).
pub(crate) fn push_quoted(out: &mut String, s: &str) {
    // serde_json escapes `"`, `\` and control characters only; everything else, non-ASCII
    // text included, is written as it is.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // A &str always serializes.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

/// Appends the elements of `args` (a JSON array; the brackets are the caller's) with
/// `"field": value` added first in its first element, when that element is an object; false,
/// nothing appended, otherwise. `value` appends JSON text.
///
/// Pure text surgery, written straight into the packet: the arguments are neither parsed
/// again nor copied twice on every send.
pub(crate) fn push_with_field(
    out: &mut String,
    args: &str,
    field: &str,
    value: impl FnOnce(&mut String),
) -> bool {
    let Some(after_brace) = array_inner(args).strip_prefix('{') else {
        return false;
    };
    let empty = after_brace.trim_start().starts_with('}');
    out.push('{');
    push_quoted(out, field);
    out.push(':');
    value(out);
    if !empty {
        out.push(',');
    }
    out.push_str(after_brace);
    true
}

/// Appends the elements of `args` (a JSON array; the brackets are the caller's) and then
/// what `value` appends (JSON text) as a last element.
pub(crate) fn push_with_last(out: &mut String, args: &str, value: impl FnOnce(&mut String)) {
    let inner = array_inner(args);
    out.push_str(inner);
    if !inner.is_empty() {
        out.push(',');
    }
    value(out);
}

/// The elements of a JSON array text without the brackets (`[1,2]` → `1,2`).
pub(crate) fn array_inner(array: &str) -> &str {
    let t = array.trim();
    let t = t.strip_prefix('[').unwrap_or(t);
    let t = t.strip_suffix(']').unwrap_or(t);
    t.trim()
}

/// `args` (a JSON array) without its last element when that element is a string, and the
/// string's value; `None` for an empty array or a last element of another type.
pub(crate) fn split_last_string(args: &str) -> Option<(String, String)> {
    let items: Vec<&RawValue> = serde_json::from_str(args).ok()?;
    let last = *items.last()?;
    if !last.get().starts_with('"') {
        return None;
    }
    let value: String = serde_json::from_str(last.get()).ok()?;
    // The element is a slice of `args`; everything before it, less its comma, is kept.
    let start = last.get().as_ptr() as usize - args.as_ptr() as usize;
    let kept = args[..start].trim_end();
    let kept = kept.strip_suffix(',').unwrap_or(kept).trim_end();
    let mut rest = String::with_capacity(kept.len() + 1);
    rest.push_str(kept);
    rest.push(']');
    Some((rest, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_writes_what_serde_json_writes() {
        for s in [
            "metric:recorded",
            "",
            "naïve ✓ 日本",
            "a\"b",
            "back\\slash",
            "tab\tnew\nline",
            "\u{1}\u{1f}\u{7f}",
            "</script>",
        ] {
            let mut out = String::from("x");
            push_quoted(&mut out, s);
            assert_eq!(
                out,
                format!("x{}", serde_json::to_string(s).unwrap()),
                "{s:?}"
            );
        }
    }

    #[test]
    fn a_trailing_string_is_split_off() {
        let split = |a: &str| split_last_string(a);
        assert_eq!(
            split(r#"[{"a":1},"1796171162297-0"]"#),
            Some((r#"[{"a":1}]"#.into(), "1796171162297-0".into()))
        );
        assert_eq!(
            split(r#"["Q81-5fV.3"]"#),
            Some(("[]".into(), "Q81-5fV.3".into()))
        );
        assert_eq!(
            split(r#"[ "x\",\"y" , "o\u0031" ]"#),
            Some((r#"[ "x\",\"y"]"#.into(), "o1".into()))
        );
        assert_eq!(split(r#"[{"a":"b"}]"#), None);
        assert_eq!(split("[1]"), None);
        assert_eq!(split("[]"), None);
        assert_eq!(split("not json"), None);
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused_and_brackets_in_strings_do_not_count() {
        let nested = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert!(check_depth(&nested(MAX_DEPTH)).is_ok());
        assert!(matches!(
            check_depth(&nested(MAX_DEPTH + 1)),
            Err(CodecError::TooDeep(MAX_DEPTH))
        ));
        // Side by side is not nested.
        let wide = format!("[{}]", vec!["{}"; 1000].join(","));
        assert!(check_depth(&wide).is_ok());
        // Brackets inside strings (escaped quotes included) are text.
        let in_string = format!("[\"\\\"{}\"]", "[".repeat(1000));
        assert!(check_depth(&in_string).is_ok());
        // Everything the codec admits, serde_json can parse, and no more.
        assert!(serde_json::from_str::<serde_json::Value>(&nested(MAX_DEPTH)).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&nested(MAX_DEPTH + 1)).is_err());
    }

    #[test]
    fn ids_are_found_by_pointer() {
        let args = r#"[{"id":"m1","meta":{"eventId":7,"a/b":"s"}},2]"#;
        assert_eq!(lookup(args, "/id").unwrap().get(), r#""m1""#);
        assert_eq!(lookup(args, "/meta/eventId").unwrap().get(), "7");
        assert_eq!(lookup(args, "/meta/a~1b").unwrap().get(), r#""s""#);
        assert!(lookup(args, "/missing").is_none());
        assert!(lookup("[]", "/id").is_none());
        assert!(lookup(r#"[[10,20]]"#, "/1").is_some_and(|v| v.get() == "20"));
    }

    #[test]
    fn idempotency_key_goes_into_the_first_object_or_last() {
        let insert_field = |args: &str, field: &str, value: &str| {
            let mut out = String::from("[");
            push_with_field(&mut out, args, field, |o| o.push_str(value)).then(|| out + "]")
        };
        let append_arg = |args: &str, value: &str| {
            let mut out = String::from("[");
            push_with_last(&mut out, args, |o| o.push_str(value));
            out + "]"
        };
        assert_eq!(
            insert_field(r#"[{"bpm":72},1]"#, "k", r#""a-1""#).as_deref(),
            Some(r#"[{"k":"a-1","bpm":72},1]"#)
        );
        assert_eq!(
            insert_field("[ { } ]", "k", "1").as_deref(),
            Some(r#"[{"k":1 }]"#)
        );
        assert_eq!(insert_field("[1]", "k", "1"), None);
        assert_eq!(insert_field("[]", "k", "1"), None);
        assert_eq!(append_arg("[]", "{}"), "[{}]");
        assert_eq!(append_arg("[1, 2]", "3"), "[1, 2,3]");
        for text in [
            insert_field(r#"[{"a":[1,{"b":2}]}]"#, "k", "\"x\"").unwrap(),
            insert_field("[ {} ,3]", "k", "1").unwrap(),
            append_arg(r#"["x"]"#, r#"{"k":"y"}"#),
        ] {
            RawJson::from_string(text.clone()).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }
}
