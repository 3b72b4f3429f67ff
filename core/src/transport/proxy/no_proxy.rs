//! `NO_PROXY`: the hosts a connection reaches directly although a proxy is configured, with
//! curl's reading of the list (the one most tools share).

use std::net::IpAddr;

/// Hosts reached without the proxy.
///
/// A comma- (or space-) separated list, case-insensitive: `*` matches every host; a name
/// matches itself and its subdomains (`example.com` and `.example.com` both match
/// `api.example.com`); an IP address matches itself; `10.0.0.0/8` or `fd00::/8` match the
/// addresses in that block. A port after a name or address (`host:8080`) is ignored, as curl
/// does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    All,
    Domain(String),
    Ip(IpAddr),
    Block(IpAddr, u8),
}

impl NoProxy {
    /// Reads a `NO_PROXY` value. Entries that are neither names, addresses nor blocks are
    /// dropped: a typo must not send traffic to an unexpected place, and the remaining
    /// entries still apply.
    pub fn parse(list: &str) -> Self {
        let entries = list
            .split([',', ' '])
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .filter_map(entry)
            .collect();
        Self { entries }
    }

    /// Whether `host` (a name or an address, IPv6 with or without brackets) is reached
    /// directly.
    pub fn matches(&self, host: &str) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|e| match (e, ip) {
            (Entry::All, _) => true,
            (Entry::Ip(a), Some(ip)) => *a == ip,
            (Entry::Block(net, bits), Some(ip)) => in_block(ip, *net, *bits),
            (Entry::Domain(d), None) => {
                host == *d
                    || host
                        .strip_suffix(d.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            }
            _ => false,
        })
    }

    /// Whether the list is empty (every host goes through the proxy).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn entry(raw: &str) -> Option<Entry> {
    let raw = raw.to_ascii_lowercase();
    if raw == "*" {
        return Some(Entry::All);
    }
    if let Some((net, bits)) = raw.split_once('/') {
        let net = net
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok()?;
        let bits = bits.parse::<u8>().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        return (bits <= max).then_some(Entry::Block(net, bits));
    }
    if let Ok(ip) = raw
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Some(Entry::Ip(ip));
    }
    // `[::1]:8080`, `host:8080`: the port is not part of the match.
    let host = match raw.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => raw.as_str(),
    };
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Some(Entry::Ip(ip));
    }
    let domain = host.trim_start_matches("*.").trim_start_matches('.');
    let domain = domain.trim_end_matches('.');
    let valid = !domain.is_empty()
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    valid.then(|| Entry::Domain(domain.to_owned()))
}

fn in_block(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_themselves_and_their_subdomains_only() {
        let n = NoProxy::parse("example.com, .corp.local,Intranet");
        assert!(n.matches("example.com"));
        assert!(n.matches("api.example.com"));
        assert!(n.matches("API.Example.COM."));
        assert!(!n.matches("badexample.com"));
        assert!(!n.matches("example.com.evil.net"));
        assert!(n.matches("corp.local"));
        assert!(n.matches("db.corp.local"));
        assert!(n.matches("intranet"));
        assert!(!n.matches("127.0.0.1"));
    }

    #[test]
    fn addresses_blocks_ports_and_star() {
        let n = NoProxy::parse("127.0.0.1,10.0.0.0/8 ::1 fd00::/8 host:8080 [::2]:443");
        assert!(n.matches("127.0.0.1"));
        assert!(!n.matches("127.0.0.2"));
        assert!(n.matches("10.200.3.4"));
        assert!(!n.matches("11.0.0.1"));
        assert!(n.matches("[::1]"));
        assert!(n.matches("fd12::5"));
        assert!(!n.matches("fe80::1"));
        assert!(n.matches("host"));
        assert!(n.matches("::2"));
        assert!(NoProxy::parse("*").matches("anything.example"));
        assert!(NoProxy::parse("0.0.0.0/0").matches("8.8.8.8"));
    }

    #[test]
    fn garbage_entries_are_dropped_and_the_rest_apply() {
        let n = NoProxy::parse("10.0.0.0/99, !!, ,example.org");
        assert!(!n.matches("10.0.0.1"));
        assert!(n.matches("www.example.org"));
        assert!(NoProxy::parse(" , ").is_empty());
    }
}
