//! `pulselink emit`: send one event, optionally wait for its acknowledgement.

use std::time::Duration;

use pulselink::{Args, Client, Error};
use serde_json::Value;

use crate::{Connection, log_states};

pub(crate) struct Request {
    pub(crate) event: String,
    pub(crate) json: String,
    pub(crate) args_array: bool,
    pub(crate) namespace: String,
    pub(crate) ack: bool,
    pub(crate) timeout: u64,
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
