//! `pulselink listen`: inbound events as JSON lines on stdout.

use std::io::{BufWriter, Write};

use pulselink::Client;
use serde_json::Value;

use crate::{connection::Connection, states::log_states};

/// A `--subscribe EVENT=JSON` option: the event sent on every connect and its argument.
#[derive(Clone, Debug)]
pub(crate) struct Subscription {
    event: String,
    arg: Value,
}

/// Parses `EVENT=JSON`; the JSON is the event's single argument.
pub(crate) fn parse_subscription(s: &str) -> Result<Subscription, String> {
    let (event, json) = s
        .split_once('=')
        .ok_or_else(|| format!("expected EVENT=JSON, got {s:?}"))?;
    if event.is_empty() {
        return Err("the subscription's event name is empty".into());
    }
    let arg = serde_json::from_str(json).map_err(|e| format!("subscription JSON: {e}"))?;
    Ok(Subscription {
        event: event.to_owned(),
        arg,
    })
}

/// Events taken from the client per batch written.
const BATCH: usize = 1024;

/// Writes events as JSON lines: `{"namespace":…,"event":…,"args":[…]}`.
///
/// The arguments are the library's validated JSON text, spliced in as they are rather than
/// parsed again (a second validation pass cost about a tenth of `listen`'s time). The line's
/// head — namespace and event name, quoted — is kept from the previous event, since a stream
/// mostly repeats one event.
#[derive(Default)]
struct Lines {
    namespace: String,
    event: String,
    head: Vec<u8>,
}

impl Lines {
    /// Writes one event's line, newline included.
    fn write(
        &mut self,
        out: &mut impl Write,
        namespace: &str,
        event: &str,
        args: &str,
    ) -> std::io::Result<()> {
        if self.head.is_empty() || self.namespace != namespace || self.event != event {
            namespace.clone_into(&mut self.namespace);
            event.clone_into(&mut self.event);
            self.head.clear();
            self.head.extend_from_slice(b"{\"namespace\":");
            serde_json::to_writer(&mut self.head, namespace)?;
            self.head.extend_from_slice(b",\"event\":");
            serde_json::to_writer(&mut self.head, event)?;
            self.head.extend_from_slice(b",\"args\":");
        }
        out.write_all(&self.head)?;
        // A line break can only be whitespace between tokens (JSON strings escape theirs), as
        // a server that pretty-prints may send; one would split the line, so it becomes a space.
        if args.bytes().any(|b| b == b'\n' || b == b'\r') {
            let flat: String = args
                .chars()
                .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
                .collect();
            out.write_all(flat.as_bytes())?;
        } else {
            out.write_all(args.as_bytes())?;
        }
        out.write_all(b"}\n")
    }
}

/// Connects, subscribes, and prints events until `count` or until stdout closes.
pub(crate) async fn run(
    conn: Connection,
    namespaces: Vec<String>,
    count: Option<u64>,
    subscriptions: Vec<Subscription>,
) -> pulselink::Result<()> {
    let client = Client::new(conn.config(&namespaces)?)?;
    log_states(&client);
    let mut events = client.events();
    for ns in namespaces.iter().skip(1) {
        client.socket(ns)?;
    }
    // Declared before connecting, so they go out (and are answered) on every connect before
    // anything else. The listener's store is in memory: nothing outlives the run.
    for s in subscriptions {
        client.subscribe(&s.event, s.arg, None).await?;
    }
    client.connect().await?;
    let mut seen = 0u64;
    // Written in batches: everything ready is written, then flushed once before waiting for
    // more, so a reader (a terminal, `jq`, a file) sees each event as soon as the client
    // would have handed over the next one, without a write per event at high rates.
    let mut stdout = BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let mut batch = Vec::with_capacity(BATCH);
    let mut lines = Lines::default();
    'events: while events.recv_many(&mut batch, BATCH).await > 0 {
        for ev in batch.drain(..) {
            let written = lines.write(&mut stdout, ev.namespace(), ev.name(), ev.args_json());
            if written.is_err() {
                break 'events; // stdout closed (e.g. piped into `head`)
            }
            seen += 1;
            if count.is_some_and(|n| seen >= n) {
                break 'events;
            }
        }
        if stdout.flush().is_err() {
            break;
        }
    }
    let _ = stdout.flush();
    drop(stdout);
    client.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(lines: &mut Lines, namespace: &str, event: &str, args: &str) -> Value {
        let mut out = Vec::new();
        lines.write(&mut out, namespace, event, args).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "one line: {text:?}");
        assert!(text.ends_with('\n'));
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_line_holds_the_event_and_its_arguments_as_sent() {
        let mut lines = Lines::default();
        let args = r#"[{"n":1,"s":"a\nb"},2]"#;
        assert_eq!(
            line(&mut lines, "/", "metric:recorded", args),
            serde_json::json!({"namespace": "/", "event": "metric:recorded", "args": [{"n": 1, "s": "a\nb"}, 2]})
        );
        // The head kept from the previous event is replaced when either name changes, and
        // names are escaped.
        assert_eq!(
            line(&mut lines, "/rooms/\"r1\"", "metric:recorded", "[]"),
            serde_json::json!({"namespace": "/rooms/\"r1\"", "event": "metric:recorded", "args": []})
        );
        assert_eq!(
            line(&mut lines, "/rooms/\"r1\"", "tab\there", "[3]"),
            serde_json::json!({"namespace": "/rooms/\"r1\"", "event": "tab\there", "args": [3]})
        );
    }

    #[test]
    fn a_line_is_byte_for_byte_what_serde_json_writes() {
        let mut out = Vec::new();
        Lines::default()
            .write(
                &mut out,
                "/rooms/\"r1\"",
                "tab\there é",
                r#"[{"a":"x\"y"},1]"#,
            )
            .unwrap();
        let expected =
            r#"{"namespace":"/rooms/\"r1\"","event":"tab\there é","args":[{"a":"x\"y"},1]}"#;
        assert_eq!(String::from_utf8(out).unwrap(), format!("{expected}\n"));
    }

    #[test]
    fn arguments_a_server_pretty_printed_stay_on_one_line() {
        let mut lines = Lines::default();
        assert_eq!(
            line(&mut lines, "/", "e", "[\r\n  {\"a\": \"x\\ny\"},\n  1\n]"),
            serde_json::json!({"namespace": "/", "event": "e", "args": [{"a": "x\ny"}, 1]})
        );
    }
}
