//! Client addresses behind reverse proxies (OPS-1 hygiene): `X-Forwarded-For` is believed only
//! when the connection comes from a configured trusted proxy; then the client is the rightmost
//! address in the header that is not itself a trusted proxy. Everything else uses the peer
//! address, so a client cannot choose the IP its rate limits and audit records see.

use std::net::IpAddr;

/// One trusted network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    fn contains(self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The trusted proxies (empty: trust no forwarding header, the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Net>);

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and CIDR networks, e.g.
    /// `10.0.0.0/8, 192.168.1.7, fd00::/8`.
    ///
    /// # Errors
    /// The first entry that is not an address or network.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                Net::parse(s).ok_or_else(|| format!("{s:?} is not an IP address or CIDR network"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether `ip` is a trusted proxy.
    #[must_use]
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client address of a request from `peer` with these `X-Forwarded-For` values.
    #[must_use]
    pub fn client_ip<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl Iterator<Item = &'a str>,
    ) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let hops: Vec<&str> = forwarded_for
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.iter().rev() {
            // A malformed hop ends the trust chain: use the last address known to be real.
            let Ok(ip) = hop.parse::<IpAddr>() else {
                return Some(peer);
            };
            if !self.trusts(ip) {
                return Some(ip);
            }
        }
        Some(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7, fd00::/8").unwrap();
        let xff = |v: &'static str| std::iter::once(v);
        // Not from a proxy: the header is ignored, whatever it says.
        assert_eq!(
            proxies.client_ip(Some(ip("203.0.113.5")), xff("1.2.3.4")),
            Some(ip("203.0.113.5"))
        );
        // From a proxy: the rightmost untrusted hop.
        assert_eq!(
            proxies.client_ip(Some(ip("10.1.2.3")), xff("1.2.3.4, 198.51.100.9, 10.9.9.9")),
            Some(ip("198.51.100.9"))
        );
        assert_eq!(
            proxies.client_ip(Some(ip("192.168.1.7")), xff("2001:db8::1")),
            Some(ip("2001:db8::1"))
        );
        // Nothing usable: the proxy itself.
        assert_eq!(
            proxies.client_ip(Some(ip("10.1.2.3")), std::iter::empty()),
            Some(ip("10.1.2.3"))
        );
        assert_eq!(
            proxies.client_ip(Some(ip("10.1.2.3")), xff("garbage")),
            Some(ip("10.1.2.3"))
        );
        // IPv4-mapped IPv6 peers match IPv4 networks.
        assert!(proxies.trusts(ip("::ffff:10.0.0.1")));
        assert!(!proxies.trusts(ip("192.168.1.8")));
        // The default trusts nobody.
        assert_eq!(
            TrustedProxies::default().client_ip(Some(ip("10.1.2.3")), xff("1.2.3.4")),
            Some(ip("10.1.2.3"))
        );
    }

    #[test]
    fn bad_entries_are_named() {
        assert!(
            TrustedProxies::parse("10.0.0.0/33")
                .unwrap_err()
                .contains("10.0.0.0/33")
        );
        assert!(TrustedProxies::parse("proxy.local").is_err());
        assert_eq!(
            TrustedProxies::parse("").unwrap(),
            TrustedProxies::default()
        );
        assert!(
            TrustedProxies::parse("0.0.0.0/0")
                .unwrap()
                .trusts(ip("8.8.8.8"))
        );
    }
}
