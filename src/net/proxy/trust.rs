//! `trust_proxy`: which peers may tell the client's address in a forwarding header, and reading it
//! from the right so that a client cannot choose its own address by sending the header itself.

use std::net::{IpAddr, SocketAddr};

use super::{forwarded, ClientAddr, Peer};

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TrustProxy {
    /// Forwarding headers are ignored.
    #[default]
    Nobody,
    /// The nearest `n` hops are proxies (the socket peer is the first).
    Hops(usize),
    /// Peers in these networks are proxies.
    Networks(Vec<Network>),
}

/// An IP network: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `address` or `address/prefix`; host bits are ignored.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = text
            .split_once('/')
            .map_or((text, None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network"))?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0..{bits}"))?,
        };
        // An IPv4-mapped network (`::ffff:10.0.0.0/104`) is the IPv4 network: peers are compared as
        // IPv4.
        let (addr, prefix) = match addr.to_canonical() {
            IpAddr::V4(v4) if addr.is_ipv6() => (IpAddr::V4(v4), prefix.saturating_sub(96)),
            canonical => (canonical, prefix),
        };
        Ok(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), self.prefix, 32)
                    == masked(u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128)
                    == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits >> (width - prefix)
    }
}

/// Which header carries the chain of addresses. Only one is read: reading both would let a client
/// spoof its address through the one the proxy does not set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardHeader {
    #[default]
    XForwardedFor,
    Forwarded,
}

/// The server's `trust_proxy` and `proxy_header` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    pub proxies: TrustProxy,
    pub header: ForwardHeader,
}

impl Trust {
    /// The client of a request from `peer`: walking the forwarding header from the right, every
    /// address said by a trusted proxy is believed, up to the first that is not a trusted proxy.
    pub fn resolve(&self, peer: Peer, headers: &[httparse::Header<'_>]) -> ClientAddr {
        let direct = ClientAddr {
            addr: peer.addr,
            proxy_ip: peer.balancer,
        };
        if self.proxies == TrustProxy::Nobody {
            return direct;
        }
        let name = match self.header {
            ForwardHeader::XForwardedFor => "x-forwarded-for",
            ForwardHeader::Forwarded => "forwarded",
        };
        let values = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value);
        let chain = match self.header {
            ForwardHeader::XForwardedFor => forwarded::x_forwarded_for(values),
            ForwardHeader::Forwarded => forwarded::forwarded(values),
        };
        let mut client = peer.addr.ip().to_canonical();
        let mut hops = 0;
        for entry in chain.iter().rev() {
            if !self.trusts(client, hops) {
                break;
            }
            let Some(ip) = *entry else { break };
            client = ip;
            hops += 1;
        }
        if hops == 0 {
            return direct;
        }
        ClientAddr {
            addr: SocketAddr::new(client, 0),
            proxy_ip: Some(peer.addr.ip()),
        }
    }

    /// Whether `ip`, `hops` proxies away from the server, is a trusted proxy.
    fn trusts(&self, ip: IpAddr, hops: usize) -> bool {
        match &self.proxies {
            TrustProxy::Nobody => false,
            TrustProxy::Hops(n) => hops < *n,
            TrustProxy::Networks(networks) => networks.iter().any(|net| net.contains(ip)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str) -> Peer {
        Peer::direct(SocketAddr::new(ip.parse().unwrap(), 5000))
    }

    fn resolve(trust: &Trust, from: &str, header: (&str, &str)) -> (String, Option<String>) {
        let headers = [httparse::Header {
            name: header.0,
            value: header.1.as_bytes(),
        }];
        let client = trust.resolve(peer(from), &headers);
        (
            client.addr.ip().to_string(),
            client.proxy_ip.map(|ip| ip.to_string()),
        )
    }

    fn networks(list: &[&str]) -> Trust {
        Trust {
            proxies: TrustProxy::Networks(
                list.iter().map(|n| Network::parse(n).unwrap()).collect(),
            ),
            header: ForwardHeader::XForwardedFor,
        }
    }

    #[test]
    fn without_trust_the_header_is_ignored() {
        let xff = ("X-Forwarded-For", "1.2.3.4");
        assert_eq!(
            resolve(&Trust::default(), "10.0.0.1", xff),
            ("10.0.0.1".into(), None)
        );
    }

    #[test]
    fn hop_count_reads_that_many_entries_from_the_right() {
        let one = Trust {
            proxies: TrustProxy::Hops(1),
            ..Trust::default()
        };
        let two = Trust {
            proxies: TrustProxy::Hops(2),
            ..Trust::default()
        };
        // The client wrote "6.6.6.6" itself; the proxy appended the address it saw.
        let xff = ("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2");
        assert_eq!(
            resolve(&one, "10.0.0.1", xff),
            ("10.0.0.2".into(), Some("10.0.0.1".into()))
        );
        assert_eq!(
            resolve(&two, "10.0.0.1", xff),
            ("203.0.113.9".into(), Some("10.0.0.1".into()))
        );
        let short = ("x-forwarded-for", "203.0.113.9");
        assert_eq!(resolve(&two, "10.0.0.1", short).0, "203.0.113.9");
        assert_eq!(
            resolve(&one, "10.0.0.1", ("x-other", "1.1.1.1")),
            ("10.0.0.1".into(), None)
        );
    }

    #[test]
    fn networks_trust_only_listed_peers() {
        let trust = networks(&["10.0.0.0/8", "::1"]);
        let xff = ("X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.9.9.9");
        assert_eq!(resolve(&trust, "10.0.0.1", xff).0, "203.0.113.9");
        assert_eq!(resolve(&trust, "::1", xff).0, "203.0.113.9");
        assert_eq!(
            resolve(&trust, "192.0.2.1", xff),
            ("192.0.2.1".into(), None)
        );
        let all_trusted = ("X-Forwarded-For", "10.1.1.1, 10.2.2.2");
        assert_eq!(resolve(&trust, "10.0.0.1", all_trusted).0, "10.1.1.1");
        let garbage = ("X-Forwarded-For", "6.6.6.6, not-an-ip, 10.2.2.2");
        assert_eq!(resolve(&trust, "10.0.0.1", garbage).0, "10.2.2.2");
    }

    #[test]
    fn the_forwarded_header_is_read_only_when_chosen() {
        let trust = Trust {
            proxies: TrustProxy::Hops(1),
            header: ForwardHeader::Forwarded,
        };
        let header = ("Forwarded", "for=6.6.6.6, for=\"[2001:db8::7]:99\"");
        assert_eq!(resolve(&trust, "10.0.0.1", header).0, "2001:db8::7");
        assert_eq!(
            resolve(&trust, "10.0.0.1", ("X-Forwarded-For", "1.2.3.4")).0,
            "10.0.0.1"
        );
    }

    #[test]
    fn a_proxy_protocol_peer_keeps_its_balancer_when_no_header_is_used() {
        let trust = Trust {
            proxies: TrustProxy::Hops(1),
            ..Trust::default()
        };
        let from_balancer = Peer {
            addr: "198.51.100.4:1234".parse().unwrap(),
            balancer: Some("10.0.0.1".parse().unwrap()),
        };
        let client = trust.resolve(from_balancer, &[]);
        assert_eq!(client.addr, from_balancer.addr);
        assert_eq!(client.proxy_ip, from_balancer.balancer);
    }

    #[test]
    fn networks_parse_and_match() {
        let net = Network::parse("192.168.0.0/16").unwrap();
        assert!(net.contains("192.168.200.1".parse().unwrap()));
        assert!(net.contains("::ffff:192.168.0.9".parse().unwrap()));
        assert!(!net.contains("192.169.0.1".parse().unwrap()));
        assert!(Network::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Network::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8:1::5".parse().unwrap()));
        assert!(Network::parse("::ffff:10.0.0.0/104")
            .unwrap()
            .contains("10.9.9.9".parse().unwrap()));
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("example.com").is_err());
        assert!(Network::parse("10.0.0.0/x").is_err());
    }
}
