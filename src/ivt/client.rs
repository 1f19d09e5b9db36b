//! The client's address (contract section 8): the TCP peer, or, when the peer is a trusted
//! proxy, the right-most `X-Forwarded-For` address that is not itself trusted.
//!
//! Right-most, because each proxy appends the address it received the request from: whatever
//! stands left of the last trusted hop was written by the client, who can write anything
//! (`X-Forwarded-For: 1.2.3.4` sent by a bot straight to a trusted load balancer arrives as
//! `1.2.3.4, <bot>`).

use std::net::IpAddr;

use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` is believed (`REGIE_TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// A `REGIE_TRUSTED_PROXIES` entry that is not an address or a CIDR range.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR range")]
pub struct BadProxyRange(String);

impl TrustedProxies {
    /// Parses comma-separated CIDRs (`10.0.0.0/8, 2001:db8::/32`); a bare address is a range
    /// of one. Empty: no proxy is trusted.
    pub fn parse(setting: &str) -> Result<Self, BadProxyRange> {
        setting
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| BadProxyRange(entry.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client's address for a request from `peer` carrying these `X-Forwarded-For` header
    /// values (in the order received). Hops are read from the right; the first one that is not
    /// trusted is the client. A malformed hop ends the walk: the last trusted hop is then the
    /// best address known, as it is when every hop is trusted.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        for value in forwarded_for.rev() {
            let Ok(value) = std::str::from_utf8(value) else {
                return client;
            };
            for hop in value.rsplit(',') {
                let Some(address) = parse_hop(hop) else {
                    return client;
                };
                client = address;
                if !self.trusts(address) {
                    return address;
                }
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an IPv4 or IPv6 address, possibly with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`) as some proxies write them.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(address) = hop.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (inside, _) = rest.split_once(']')?;
        return inside.parse::<IpAddr>().ok().map(canonical);
    }
    let (host, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// IPv4 addresses seen through an IPv6 socket (`::ffff:1.2.3.4`) are the IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn client(trusted: &str, peer: &str, headers: &[&str]) -> IpAddr {
        TrustedProxies::parse(trusted)
            .unwrap()
            .client(ip(peer), headers.iter().map(|h| h.as_bytes()))
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() {
        assert_eq!(
            client("", "203.0.113.7", &["198.51.100.1"]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn a_header_from_an_untrusted_peer_is_ignored() {
        assert_eq!(
            client("10.0.0.0/8", "203.0.113.7", &["198.51.100.1"]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_right_most_untrusted_address_is_the_client() {
        assert_eq!(
            client(
                "10.0.0.0/8",
                "10.0.0.2",
                &["198.51.100.1, 203.0.113.9, 10.0.0.5"]
            ),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_spoofed_left_most_address_does_not_make_a_bot_someone_else() {
        // The bot sent `X-Forwarded-For: 192.0.2.1`; the proxy appended the bot's address.
        assert_eq!(
            client("10.0.0.1", "10.0.0.1", &["192.0.2.1, 203.0.113.66"]),
            ip("203.0.113.66")
        );
    }

    #[test]
    fn several_header_lines_are_one_list_in_order() {
        assert_eq!(
            client(
                "10.0.0.0/8",
                "10.0.0.2",
                &["198.51.100.1", "203.0.113.9, 10.0.0.7"]
            ),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_malformed_hop_stops_the_walk_at_the_last_trusted_address() {
        assert_eq!(
            client(
                "10.0.0.0/8",
                "10.0.0.2",
                &["198.51.100.1, not-an-ip, 10.0.0.9"]
            ),
            ip("10.0.0.9")
        );
        assert_eq!(client("10.0.0.0/8", "10.0.0.2", &[""]), ip("10.0.0.2"));
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.2", &["999.1.1.1"]),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn a_header_that_is_not_utf8_leaves_the_peer() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let headers: [&[u8]; 1] = [&[0xff, 0xfe]];
        assert_eq!(
            trusted.client(ip("10.0.0.2"), headers.into_iter()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn when_every_hop_is_trusted_the_left_most_is_the_client() {
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.2", &["10.1.1.1, 10.0.0.3"]),
            ip("10.1.1.1")
        );
        assert_eq!(client("10.0.0.0/8", "10.0.0.2", &[]), ip("10.0.0.2"));
    }

    #[test]
    fn ipv6_addresses_ranges_and_ports_are_understood() {
        assert_eq!(
            client(
                "2001:db8::/32",
                "2001:db8::1",
                &["2a01:e0a::5, [2001:db8::7]:443"]
            ),
            ip("2a01:e0a::5")
        );
        assert_eq!(
            client("2001:db8::/32", "2001:db8::1", &["[2a01:e0a::5]:8080"]),
            ip("2a01:e0a::5")
        );
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.2", &["203.0.113.9:5555"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn an_ipv4_mapped_peer_is_its_ipv4_address() {
        assert_eq!(
            client("10.0.0.0/8", "::ffff:10.0.0.2", &["203.0.113.9"]),
            ip("203.0.113.9")
        );
        assert_eq!(client("", "::ffff:203.0.113.9", &[]), ip("203.0.113.9"));
    }

    #[test]
    fn the_setting_takes_ranges_and_bare_addresses_and_refuses_garbage() {
        let trusted = TrustedProxies::parse(" 10.0.0.0/8, 192.0.2.1 ,2001:db8::/32,").unwrap();
        assert_eq!(trusted.0.len(), 3);
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert!(TrustedProxies::parse("10.0.0.0/8,nope").is_err());
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
    }
}
