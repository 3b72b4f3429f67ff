//! What the CLI tells the user about the connection on stderr.

use pulselink::{Client, Notice, State};

/// Prints state changes and notices to stderr until the client closes.
pub(crate) fn log_states(client: &Client) {
    let mut states = client.states();
    let mut notices = client.notices();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = states.changed() => {
                    if changed.is_err() { break; }
                    let s = states.borrow_and_update().clone();
                    eprintln!("state: {}", describe(&s));
                    if s == State::Closed { break; }
                }
                n = notices.recv() => match n {
                    Ok(Notice::ConnectFailed { error, .. }) => eprintln!("connect failed: {error}"),
                    Ok(Notice::ConnectError { namespace, message, will_retry }) => eprintln!(
                        "{namespace} refused: {message}{}",
                        if will_retry { " (retrying with fresh credentials)" } else { "" }
                    ),
                    Ok(Notice::Disconnected { reason }) => eprintln!("disconnected: {reason:?}"),
                    Ok(Notice::ServerError { code, message }) => {
                        eprintln!("server error {code}: {message}")
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                },
            }
        }
    });
}

pub(crate) fn describe(s: &State) -> String {
    match s {
        State::Reconnecting { attempt, delay } => {
            format!(
                "reconnecting (attempt {attempt} in {} ms)",
                delay.as_millis()
            )
        }
        State::Unauthorized { message } => format!("unauthorized: {message}"),
        other => format!("{other:?}").to_lowercase(),
    }
}
