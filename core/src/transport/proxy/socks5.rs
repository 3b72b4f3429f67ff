//! SOCKS5 (RFC 1928) with username/password authentication (RFC 1929): asks a SOCKS proxy for
//! a TCP connection to a host. Pure: [`super::tunnel`] does the I/O.

use std::net::IpAddr;

use super::{credentials::Credentials, failure::ProxyFailure};

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0x00;
const USER_PASSWORD: u8 = 0x02;
const NONE_ACCEPTABLE: u8 = 0xff;
const CONNECT: u8 = 1;

/// Where the tunnel goes: a name the proxy resolves (`socks5h://`) or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    Name(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Greeting,
    Auth,
    Connect,
    Done,
}

/// One SOCKS5 handshake: feed it what the proxy sent, write what it returns.
pub(super) struct Handshake {
    stage: Stage,
    credentials: Option<Credentials>,
    target: Target,
    port: u16,
}

/// What the handshake needs next.
#[derive(PartialEq, Eq)]
pub(super) enum Step {
    /// More bytes from the proxy.
    Read,
    /// `consumed` bytes were read; write `send` to the proxy and read on.
    Write { consumed: usize, send: Vec<u8> },
    /// The tunnel is open after `consumed` bytes.
    Open { consumed: usize },
}

/// Hand-written: a `Write` may carry the RFC 1929 password.
impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Read => f.write_str("Read"),
            Step::Write { consumed, send } => f
                .debug_struct("Write")
                .field("consumed", consumed)
                .field("send", &format_args!("<{} bytes>", send.len()))
                .finish(),
            Step::Open { consumed } => f.debug_struct("Open").field("consumed", consumed).finish(),
        }
    }
}

impl Handshake {
    /// A handshake for a connection to `target:port`, offering `credentials` if any, and the
    /// greeting to send first.
    pub(super) fn start(
        target: Target,
        port: u16,
        credentials: Option<Credentials>,
    ) -> Result<(Self, Vec<u8>), ProxyFailure> {
        if let Target::Name(n) = &target
            && (n.is_empty() || n.len() > 255)
        {
            return Err(ProxyFailure::Protocol(format!(
                "a host name of {} bytes (SOCKS5 carries 1 to 255)",
                n.len()
            )));
        }
        if let Some(c) = &credentials
            && (c.user.is_empty() || c.user.len() > 255 || c.password.len() > 255)
        {
            return Err(ProxyFailure::Protocol(
                "a user name of 1 to 255 bytes and a password of at most 255 (RFC 1929)".into(),
            ));
        }
        let greeting = match credentials {
            Some(_) => vec![VERSION, 2, NO_AUTH, USER_PASSWORD],
            None => vec![VERSION, 1, NO_AUTH],
        };
        let me = Self {
            stage: Stage::Greeting,
            credentials,
            target,
            port,
        };
        Ok((me, greeting))
    }

    /// Reads the proxy's bytes in `buf` (everything unread so far).
    pub(super) fn advance(&mut self, buf: &[u8]) -> Result<Step, ProxyFailure> {
        match self.stage {
            Stage::Greeting => {
                let [version, method] = match buf.get(..2) {
                    Some(&[v, m]) => [v, m],
                    _ => return Ok(Step::Read),
                };
                if version != VERSION {
                    return Err(not_socks5(version));
                }
                match method {
                    NO_AUTH => {
                        self.stage = Stage::Connect;
                        Ok(Step::Write {
                            consumed: 2,
                            send: self.connect_request(),
                        })
                    }
                    USER_PASSWORD => match &self.credentials {
                        Some(c) => {
                            self.stage = Stage::Auth;
                            let mut send = vec![1, c.user.len() as u8];
                            send.extend_from_slice(c.user.as_bytes());
                            send.push(c.password.len() as u8);
                            send.extend_from_slice(c.password.as_bytes());
                            Ok(Step::Write { consumed: 2, send })
                        }
                        None => Err(ProxyFailure::CredentialsRequired),
                    },
                    NONE_ACCEPTABLE if self.credentials.is_none() => {
                        Err(ProxyFailure::CredentialsRequired)
                    }
                    other => Err(ProxyFailure::Protocol(format!(
                        "no authentication method in common (proxy chose {other:#04x})"
                    ))),
                }
            }
            Stage::Auth => {
                let [version, status] = match buf.get(..2) {
                    Some(&[v, s]) => [v, s],
                    _ => return Ok(Step::Read),
                };
                // RFC 1929's subnegotiation has version 1 (some servers answer 5).
                if version != 1 && version != VERSION {
                    return Err(ProxyFailure::Protocol(format!(
                        "an authentication answer of version {version}"
                    )));
                }
                if status != 0 {
                    return Err(ProxyFailure::CredentialsRejected);
                }
                self.stage = Stage::Connect;
                Ok(Step::Write {
                    consumed: 2,
                    send: self.connect_request(),
                })
            }
            Stage::Connect => {
                let Some(&[version, reply, _, kind]) = buf.get(..4) else {
                    return Ok(Step::Read);
                };
                if version != VERSION {
                    return Err(not_socks5(version));
                }
                if reply != 0 {
                    return Err(ProxyFailure::Refused {
                        target: self.target_text(),
                        reason: format!("SOCKS5 reply {reply}: {}", reply_text(reply)),
                    });
                }
                let address = match kind {
                    1 => 4,
                    4 => 16,
                    3 => match buf.get(4) {
                        Some(&len) => 1 + usize::from(len),
                        None => return Ok(Step::Read),
                    },
                    other => {
                        return Err(ProxyFailure::Protocol(format!(
                            "a bound address of unknown type {other}"
                        )));
                    }
                };
                let len = 4 + address + 2;
                if buf.len() < len {
                    return Ok(Step::Read);
                }
                self.stage = Stage::Done;
                Ok(Step::Open { consumed: len })
            }
            Stage::Done => Ok(Step::Open { consumed: 0 }),
        }
    }

    fn connect_request(&self) -> Vec<u8> {
        let mut r = vec![VERSION, CONNECT, 0];
        match &self.target {
            Target::Ip(IpAddr::V4(a)) => {
                r.push(1);
                r.extend_from_slice(&a.octets());
            }
            Target::Ip(IpAddr::V6(a)) => {
                r.push(4);
                r.extend_from_slice(&a.octets());
            }
            Target::Name(n) => {
                r.push(3);
                r.push(n.len() as u8);
                r.extend_from_slice(n.as_bytes());
            }
        }
        r.extend_from_slice(&self.port.to_be_bytes());
        r
    }

    fn target_text(&self) -> String {
        match &self.target {
            Target::Name(n) => format!("{n}:{}", self.port),
            Target::Ip(ip) => std::net::SocketAddr::new(*ip, self.port).to_string(),
        }
    }
}

fn not_socks5(version: u8) -> ProxyFailure {
    ProxyFailure::Protocol(format!("an answer of version {version}, not SOCKS5"))
}

/// RFC 1928 §6's reply codes.
fn reply_text(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Option<Credentials> {
        Some(Credentials {
            user: "ann".into(),
            password: "pw".into(),
        })
    }

    #[test]
    fn with_credentials_authenticates_then_connects_by_name() {
        let (mut h, greeting) = Handshake::start(Target::Name("srv".into()), 443, creds()).unwrap();
        assert_eq!(greeting, [5, 2, 0, 2]);
        assert_eq!(h.advance(&[5]), Ok(Step::Read));
        assert_eq!(
            h.advance(&[5, 2]),
            Ok(Step::Write {
                consumed: 2,
                send: vec![1, 3, b'a', b'n', b'n', 2, b'p', b'w']
            })
        );
        assert_eq!(
            h.advance(&[1, 0]),
            Ok(Step::Write {
                consumed: 2,
                send: vec![5, 1, 0, 3, 3, b's', b'r', b'v', 1, 187]
            })
        );
        let reply = [5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90];
        assert_eq!(h.advance(&reply[..9]), Ok(Step::Read));
        assert_eq!(h.advance(&reply), Ok(Step::Open { consumed: 10 }));
    }

    #[test]
    fn without_credentials_connects_by_address() {
        let ip: IpAddr = "::1".parse().unwrap();
        let (mut h, greeting) = Handshake::start(Target::Ip(ip), 80, None).unwrap();
        assert_eq!(greeting, [5, 1, 0]);
        let Ok(Step::Write { send, .. }) = h.advance(&[5, 0]) else {
            panic!("no connect request")
        };
        assert_eq!(send[..4], [5, 1, 0, 4]);
        assert_eq!(send.len(), 4 + 16 + 2);
        let reply = [&[5u8, 0, 0, 3, 4][..], b"name", &[0, 80]].concat();
        assert_eq!(h.advance(&reply), Ok(Step::Open { consumed: 11 }));
    }

    #[test]
    fn refusals_are_typed() {
        let (mut h, _) = Handshake::start(Target::Name("srv".into()), 1, None).unwrap();
        assert_eq!(
            h.advance(&[5, 0xff]),
            Err(ProxyFailure::CredentialsRequired)
        );
        let (mut h, _) = Handshake::start(Target::Name("srv".into()), 1, None).unwrap();
        assert_eq!(h.advance(&[5, 2]), Err(ProxyFailure::CredentialsRequired));
        let (mut h, _) = Handshake::start(Target::Name("srv".into()), 1, creds()).unwrap();
        h.advance(&[5, 2]).unwrap();
        assert_eq!(h.advance(&[1, 1]), Err(ProxyFailure::CredentialsRejected));
        let (mut h, _) = Handshake::start(Target::Name("srv".into()), 9, None).unwrap();
        h.advance(&[5, 0]).unwrap();
        assert_eq!(
            h.advance(&[5, 5, 0, 1]),
            Err(ProxyFailure::Refused {
                target: "srv:9".into(),
                reason: "SOCKS5 reply 5: connection refused".into()
            })
        );
        let (mut h, _) = Handshake::start(Target::Name("srv".into()), 9, None).unwrap();
        assert!(matches!(
            h.advance(b"HTTP/1.1 400"),
            Err(ProxyFailure::Protocol(_))
        ));
        assert!(Handshake::start(Target::Name("x".repeat(256)), 1, None).is_err());
    }
}
