//! `pulselink emit`: send one event, optionally wait for its acknowledgement.

use std::time::Duration;

use pulselink::{Args, Client, Error};
use serde_json::Value;

use crate::{connection::Connection, states::log_states};

/// What to send.
#[derive(clap::Args)]
pub(crate) struct Request {
    /// Event name, e.g. session:feedback
    event: String,
    /// The event's argument as JSON (one argument; use --args-array for several).
    json: String,
    /// Treat JSON as the array of all arguments instead of one argument.
    #[arg(long)]
    args_array: bool,
    /// Namespace to emit on.
    #[arg(long, default_value = "/")]
    namespace: String,
    /// Wait for the server's acknowledgement and print it.
    #[arg(long)]
    ack: bool,
    /// Acknowledgement timeout in milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout: u64,
}

pub(crate) async fn run(conn: Connection, req: Request) -> pulselink::Result<()> {
    let value: Value = serde_json::from_str(&req.json)
        .map_err(|e| Error::InvalidArgs(format!("JSON argument: {e}")))?;
    let args = if req.args_array {
        Args::from_json_array(value.to_string())?
    } else {
        Args::from(value)
    };
    let client = Client::new(conn.config(std::slice::from_ref(&req.namespace))?)?;
    log_states(&client);
    client.connect().await?;
    let socket = client.main_socket();
    let result = if req.ack {
        socket
            .emit_with_ack(&req.event, args, Duration::from_millis(req.timeout))
            .await
            .map(|reply| println!("{}", reply.args.get()))
    } else {
        socket.emit(&req.event, args).await
    };
    // close() writes what is queued before it says goodbye.
    client.close().await;
    result
}
