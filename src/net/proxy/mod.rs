//! Who the client is behind proxies: the PROXY protocol header of L4 load balancers (`protocol`) and
//! the forwarding headers of trusted HTTP proxies (`trust`, `forwarded`).

pub(super) mod forwarded;
pub(super) mod protocol;
mod trust;

use std::net::{IpAddr, SocketAddr};

pub use protocol::read_proxy_header;
pub use trust::{ForwardHeader, Network, Trust, TrustProxy};

/// The connection's peer as far as the transport says: the socket peer, or the source named by a
/// PROXY header (then `balancer` is the socket peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    pub balancer: Option<IpAddr>,
}

impl Peer {
    pub fn direct(addr: SocketAddr) -> Self {
        Self {
            addr,
            balancer: None,
        }
    }
}

/// The client of a request: its address (the port is 0 when a forwarding header named it) and the
/// proxy it was learned from, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub addr: SocketAddr,
    pub proxy_ip: Option<IpAddr>,
}
