//! Why a proxy did not open the way to the server: what every proxy error carries.

/// Why a proxy did not open the way to the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyFailure {
    /// No connection to the proxy itself (down, wrong address, reset).
    #[error("is unreachable: {0}")]
    Unreachable(String),
    /// The proxy asks for credentials (HTTP 407, or SOCKS5 user/password) and none are set.
    #[error("asks for credentials and none are configured")]
    CredentialsRequired,
    /// The proxy asks for an authentication scheme this client does not speak (NTLM,
    /// Negotiate/Kerberos); only Basic is supported.
    #[error("asks for {0} authentication; only Basic is supported")]
    UnsupportedAuth(String),
    /// The proxy refused the configured credentials.
    #[error("refused the credentials")]
    CredentialsRejected,
    /// The proxy would not connect to the server (HTTP 403 or 502, a SOCKS5 failure code).
    #[error("refused to connect to {target}: {reason}")]
    Refused {
        /// The server's host and port.
        target: String,
        /// The proxy's answer.
        reason: String,
    },
    /// The proxy answered with something that is not its protocol.
    #[error("sent {0}")]
    Protocol(String),
}
