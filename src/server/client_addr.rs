//! The client's address behind a balancer: the PROXY protocol header at the start of a
//! connection (`server.proxy_protocol`; HAProxy's spec, versions 1 and 2, read with
//! the `ppp` crate) and `X-Forwarded-For` from `server.trusted_proxies`. The address
//! found feeds the per-IP limits and the access log.

use std::net::{IpAddr, SocketAddr};

use ppp::{v1, v2, HeaderResult, PartialResult};

/// What the start of a connection says about its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxied {
    /// More bytes are needed.
    Incomplete,
    /// A header of `consumed` bytes; `source` is the client (`None` for `LOCAL`,
    /// `UNKNOWN` or a non-IP family: the connection's own peer stands).
    Header { consumed: usize, source: Option<SocketAddr> },
    /// Not a PROXY protocol header: the connection is closed.
    Invalid(String),
}

/// Reads a PROXY protocol header (v2 binary or v1 text) at the start of `buf`.
pub fn parse_proxy(buf: &[u8]) -> Proxied {
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        return Proxied::Incomplete;
    }
    match result {
        HeaderResult::V1(Ok(h)) => Proxied::Header {
            consumed: h.header.len(),
            source: match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
                v1::Addresses::Unknown => None,
            },
        },
        HeaderResult::V2(Ok(h)) => Proxied::Header {
            consumed: h.len(),
            source: match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                _ => None,
            },
        },
        HeaderResult::V1(Err(e)) => Proxied::Invalid(format!("bad PROXY protocol header: {e}")),
        HeaderResult::V2(Err(e)) => Proxied::Invalid(format!("bad PROXY protocol header: {e}")),
    }
}

/// The client of a request from `peer` that carried `X-Forwarded-For: xff`: when `peer`
/// is a trusted proxy, the rightmost listed address that is not one (each proxy
/// appends the address it got the request from, so entries left of the first
/// untrusted one could be forged); otherwise `peer`.
pub fn forwarded_client(peer: IpAddr, xff: Option<&str>, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(&ip.to_canonical()));
    let Some(xff) = xff.filter(|_| !trusted.is_empty() && is_trusted(&peer)) else { return peer };
    let mut client = peer;
    for entry in xff.rsplit(',') {
        let Some(ip) = parse_entry(entry.trim()) else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an IP, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn proxy_v1_and_v2_headers_give_the_source_address() {
        let v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse_proxy(v1),
            Proxied::Header { consumed: 43, source: Some("203.0.113.7:51000".parse().unwrap()) }
        );
        assert_eq!(parse_proxy(b"PROXY TCP4 203.0.113.7 10.0"), Proxied::Incomplete);
        assert_eq!(parse_proxy(b"PROXY UNKNOWN\r\n"), Proxied::Header { consumed: 15, source: None });
        assert!(matches!(parse_proxy(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Proxied::Invalid(_)));
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v2.extend([0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0xC3, 0x50, 0x01, 0xBB]);
        let consumed = v2.len();
        v2.extend(b"GET / HTTP/1.1\r\n");
        assert_eq!(parse_proxy(&v2), Proxied::Header { consumed, source: Some("198.51.100.9:50000".parse().unwrap()) });
        assert_eq!(parse_proxy(&v2[..14]), Proxied::Incomplete);
        // LOCAL (a health check from the balancer itself): no address.
        let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(parse_proxy(&local), Proxied::Header { consumed: 16, source: None });
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let lb: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(forwarded_client(lb, Some("203.0.113.7"), &trusted), "203.0.113.7".parse::<IpAddr>().unwrap());
        // Rightmost untrusted entry; a forged left part is ignored.
        assert_eq!(
            forwarded_client(lb, Some("1.1.1.1, 203.0.113.7, 10.0.0.9"), &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(forwarded_client(lb, Some("[2001:db8::1]:443"), &trusted), "2001:db8::1".parse::<IpAddr>().unwrap());
        let outsider: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(forwarded_client(outsider, Some("203.0.113.7"), &trusted), outsider);
        assert_eq!(forwarded_client(lb, Some("203.0.113.7"), &[]), lb);
        assert_eq!(forwarded_client(lb, Some("garbage"), &trusted), lb);
        assert_eq!(forwarded_client(lb, None, &trusted), lb);
    }
}
