//! Which addresses Vigil may connect to on a camera's behalf.
//!
//! Whoever may create a Camera chooses the address a recorder (live RTSP) and a backfill Job
//! (ONVIF, RTSP replay, playback templates) connect to, from inside the cluster. Without a
//! policy that is a way to reach what the pod can reach: the cloud metadata service, the API
//! server, kubelets, other pods. Every connection to a camera therefore resolves the host once,
//! checks the resolved address here, and connects to that very address (so a DNS answer that
//! changes between the check and the connect cannot slip through).
//!
//! The rules, in order:
//! 1. Never a camera: unspecified (`0.0.0.0/8`, `::`), multicast, broadcast.
//! 2. `deny` of the pool refuses.
//! 3. Protected ranges — loopback, link-local (`169.254.0.0/16` with the metadata address,
//!    `fe80::/10`), the cluster's service and pod ranges and the API server — are refused
//!    unless an `allow` entry *inside* that range contains the address (`127.0.0.1/32` allows
//!    a local camera proxy; `0.0.0.0/0` does not open loopback).
//! 4. With an `allow` list, only what it contains; without one, any other unicast address
//!    (private and public).
//!
//! Pure: parsing and matching, no I/O. The resolving and connecting is in `vigil_media::netguard`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::CameraNetworks;

/// An address range, `10.0.0.0/8` or `fd00::/8`; host bits are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// A CIDR that does not parse. The text is the input, cut short (it comes from a spec).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrError(pub String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an address range like 10.0.0.0/8 or fd00::/8",
            self.0
        )
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// A range from an address and a prefix length; host bits are cleared.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return None;
        }
        Some(Cidr {
            network: mask(addr, prefix),
            prefix,
        })
    }

    /// The range holding just `addr`.
    pub fn host(addr: IpAddr) -> Cidr {
        let addr = canonical(addr);
        Cidr {
            network: addr,
            prefix: if addr.is_ipv4() { 32 } else { 128 },
        }
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        addr.is_ipv4() == self.network.is_ipv4() && mask(addr, self.prefix) == self.network
    }

    /// True when every address of `self` lies in `outer`.
    pub fn is_inside(&self, outer: &Cidr) -> bool {
        self.prefix >= outer.prefix && outer.contains(self.network)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `a.b.c.d/n`, `x::y/n`, or a bare address (one host).
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let bad = || CidrError(s.chars().take(64).collect());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => {
                let p: u8 = p.parse().map_err(|_| bad())?;
                (a.parse::<IpAddr>().map_err(|_| bad())?, Some(p))
            }
            None => (s.trim().parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        match prefix {
            Some(p) => Cidr::new(addr, p).ok_or_else(bad),
            None => Ok(Cidr::host(addr)),
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are the IPv4 address they carry.
fn canonical(addr: IpAddr) -> IpAddr {
    addr.to_canonical()
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix.min(32))
            };
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix.min(128))
            };
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

/// Why an address is refused. `as_str` is the condition reason's detail and the log field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// `0.0.0.0/8`, `::`, multicast, broadcast: not a camera's address.
    NotUnicast,
    Loopback,
    /// `169.254.0.0/16` (cloud metadata services live here) or `fe80::/10`.
    LinkLocal,
    /// The cluster's service or pod range.
    ClusterNetwork,
    /// The Kubernetes API server.
    ApiServer,
    /// In the pool's `cameraNetworks.deny`.
    Denied,
    /// The pool has an `allow` list and the address is not in it.
    NotAllowed,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NotUnicast => "not a unicast address",
            Refusal::Loopback => "loopback",
            Refusal::LinkLocal => "link-local (metadata service range)",
            Refusal::ClusterNetwork => "the cluster's service or pod network",
            Refusal::ApiServer => "the Kubernetes API server",
            Refusal::Denied => "in cameraNetworks.deny",
            Refusal::NotAllowed => "not in cameraNetworks.allow",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The compiled policy of one pool (or one file-mode configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    /// Refused unless explicitly allowed from inside, with the reason given.
    protected: Vec<(Cidr, Refusal)>,
}

impl Default for AddressPolicy {
    /// The default of a pool without `cameraNetworks` in a process that knows nothing of its
    /// cluster: any unicast address but loopback and link-local.
    fn default() -> Self {
        AddressPolicy::new(&CameraNetworks::default(), &ClusterNetworks::default()).unwrap_or_else(
            |_| AddressPolicy {
                allow: vec![],
                deny: vec![],
                protected: base_protected(),
            },
        )
    }
}

/// What the process knows about its cluster: the service and pod ranges (from the chart, passed
/// by the operator as `VIGIL_CLUSTER_NETWORKS`) and the API server (`KUBERNETES_SERVICE_HOST`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterNetworks {
    pub ranges: Vec<Cidr>,
    pub api_servers: Vec<IpAddr>,
}

/// The environment variable the operator sets on recorder pods and Jobs: comma-separated CIDRs.
pub const CLUSTER_NETWORKS_ENV: &str = "VIGIL_CLUSTER_NETWORKS";

impl ClusterNetworks {
    /// Parses `VIGIL_CLUSTER_NETWORKS`-style text (CIDRs separated by commas or spaces) and an
    /// API server host (an address; a name is ignored, its Service address is in `ranges`).
    pub fn parse(ranges: &str, api_server_host: Option<&str>) -> Result<Self, CidrError> {
        let ranges = ranges
            .split([',', ' ', '\n'])
            .filter(|s| !s.trim().is_empty())
            .map(Cidr::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        let api_servers = api_server_host
            .and_then(|h| h.trim_matches(['[', ']']).parse::<IpAddr>().ok())
            .into_iter()
            .collect();
        Ok(ClusterNetworks {
            ranges,
            api_servers,
        })
    }

    /// From this process's environment (`VIGIL_CLUSTER_NETWORKS`, `KUBERNETES_SERVICE_HOST`).
    pub fn from_env() -> Result<Self, CidrError> {
        ClusterNetworks::parse(
            &std::env::var(CLUSTER_NETWORKS_ENV).unwrap_or_default(),
            std::env::var("KUBERNETES_SERVICE_HOST").ok().as_deref(),
        )
    }
}

fn base_protected() -> Vec<(Cidr, Refusal)> {
    let c = |s: &str| s.parse::<Cidr>().expect("built-in CIDR");
    vec![
        (c("127.0.0.0/8"), Refusal::Loopback),
        (c("::1/128"), Refusal::Loopback),
        (c("169.254.0.0/16"), Refusal::LinkLocal),
        (c("fe80::/10"), Refusal::LinkLocal),
    ]
}

impl AddressPolicy {
    pub fn new(spec: &CameraNetworks, cluster: &ClusterNetworks) -> Result<Self, CidrError> {
        let parse = |v: &[String]| {
            v.iter()
                .map(|s| s.parse::<Cidr>())
                .collect::<Result<Vec<_>, _>>()
        };
        let mut protected = base_protected();
        protected.extend(cluster.ranges.iter().map(|c| (*c, Refusal::ClusterNetwork)));
        protected.extend(
            cluster
                .api_servers
                .iter()
                .map(|a| (Cidr::host(*a), Refusal::ApiServer)),
        );
        // The most specific protected range names the reason (the API server inside the
        // service range is reported as the API server).
        protected.sort_by_key(|(c, _)| std::cmp::Reverse(c.prefix_len()));
        Ok(AddressPolicy {
            allow: parse(&spec.allow)?,
            deny: parse(&spec.deny)?,
            protected,
        })
    }

    /// Whether a camera connection may go to `addr`.
    pub fn check(&self, addr: IpAddr) -> Result<(), Refusal> {
        let addr = canonical(addr);
        if !is_unicast(addr) {
            return Err(Refusal::NotUnicast);
        }
        // NAT64 (64:ff9b::/96) reaches the IPv4 address it embeds: judge that one too.
        if let IpAddr::V6(v6) = addr
            && let [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] = v6.segments()
        {
            let v4 = Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
            self.check(IpAddr::V4(v4))?;
        }
        if self.deny.iter().any(|d| d.contains(addr)) {
            return Err(Refusal::Denied);
        }
        for (range, why) in &self.protected {
            if range.contains(addr) {
                let opened = self
                    .allow
                    .iter()
                    .any(|a| a.contains(addr) && a.is_inside(range));
                return if opened { Ok(()) } else { Err(*why) };
            }
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|a| a.contains(addr)) {
            return Err(Refusal::NotAllowed);
        }
        Ok(())
    }
}

fn is_unicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !(a.octets()[0] == 0 || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

/// Checks the `cameraNetworks` of a pool spec: every entry a CIDR. For the webhook and the
/// pool's `Invalid` report.
pub fn validate(spec: &CameraNetworks) -> Vec<(String, CidrError)> {
    let mut errors = vec![];
    for (list, entries) in [("allow", &spec.allow), ("deny", &spec.deny)] {
        for (i, s) in entries.iter().enumerate() {
            if let Err(e) = s.parse::<Cidr>() {
                errors.push((format!("spec.cameraNetworks.{list}[{i}]"), e));
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(allow: &[&str], deny: &[&str]) -> CameraNetworks {
        CameraNetworks {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn cluster() -> ClusterNetworks {
        ClusterNetworks::parse("10.96.0.0/12, 10.244.0.0/16", Some("10.96.0.1")).unwrap()
    }

    #[test]
    fn parses_and_prints_ranges() {
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            "fe80::1/10".parse::<Cidr>().unwrap().to_string(),
            "fe80::/10"
        );
        assert_eq!(
            "192.0.2.7".parse::<Cidr>().unwrap().to_string(),
            "192.0.2.7/32"
        );
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "cam.local/24",
            "10.0.0/8",
            "",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn default_refuses_loopback_link_local_and_metadata() {
        let p = AddressPolicy::default();
        for (a, why) in [
            ("127.0.0.1", Refusal::Loopback),
            ("127.8.9.10", Refusal::Loopback),
            ("::1", Refusal::Loopback),
            ("::ffff:127.0.0.1", Refusal::Loopback),
            ("169.254.169.254", Refusal::LinkLocal),
            ("::ffff:169.254.169.254", Refusal::LinkLocal),
            ("64:ff9b::a9fe:a9fe", Refusal::LinkLocal),
            ("fe80::1", Refusal::LinkLocal),
            ("0.0.0.0", Refusal::NotUnicast),
            ("::", Refusal::NotUnicast),
            ("224.0.0.1", Refusal::NotUnicast),
            ("255.255.255.255", Refusal::NotUnicast),
            ("ff02::1", Refusal::NotUnicast),
        ] {
            assert_eq!(p.check(ip(a)), Err(why), "{a}");
        }
        for a in [
            "10.0.0.5",
            "192.168.1.64",
            "172.16.3.4",
            "203.0.113.9",
            "fd00::5",
            "2001:db8::1",
        ] {
            assert_eq!(p.check(ip(a)), Ok(()), "{a}");
        }
    }

    #[test]
    fn cluster_ranges_and_api_server_are_refused() {
        let p = AddressPolicy::new(&CameraNetworks::default(), &cluster()).unwrap();
        assert_eq!(p.check(ip("10.96.0.1")), Err(Refusal::ApiServer));
        assert_eq!(p.check(ip("10.100.3.4")), Err(Refusal::ClusterNetwork));
        assert_eq!(p.check(ip("10.244.1.7")), Err(Refusal::ClusterNetwork));
        assert_eq!(p.check(ip("10.0.0.5")), Ok(()));
    }

    #[test]
    fn protected_ranges_open_only_from_inside() {
        // A wide allow does not open loopback or the metadata service...
        let p = AddressPolicy::new(&nets(&["0.0.0.0/0", "::/0"], &[]), &cluster()).unwrap();
        assert_eq!(p.check(ip("127.0.0.1")), Err(Refusal::Loopback));
        assert_eq!(p.check(ip("169.254.169.254")), Err(Refusal::LinkLocal));
        assert_eq!(p.check(ip("10.244.0.9")), Err(Refusal::ClusterNetwork));
        assert_eq!(p.check(ip("8.8.8.8")), Ok(()));
        // ...an entry inside the range does, for exactly what it holds.
        let p =
            AddressPolicy::new(&nets(&["127.0.0.1/32", "10.244.0.1/32"], &[]), &cluster()).unwrap();
        assert_eq!(p.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check(ip("127.0.0.2")), Err(Refusal::Loopback));
        assert_eq!(p.check(ip("10.244.0.1")), Ok(()));
        assert_eq!(p.check(ip("10.244.0.2")), Err(Refusal::ClusterNetwork));
        // With an allow list, nothing else.
        assert_eq!(p.check(ip("192.168.1.10")), Err(Refusal::NotAllowed));
    }

    #[test]
    fn deny_wins() {
        let p = AddressPolicy::new(
            &nets(&["10.0.0.0/8"], &["10.1.0.0/16"]),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(p.check(ip("10.1.2.3")), Err(Refusal::Denied));
        assert_eq!(p.check(ip("10.2.2.3")), Ok(()));
    }

    #[test]
    fn cluster_networks_from_text() {
        let c =
            ClusterNetworks::parse(" 10.96.0.0/12,10.244.0.0/16 ", Some("cluster.local")).unwrap();
        assert_eq!(c.ranges.len(), 2);
        assert!(c.api_servers.is_empty());
        assert!(ClusterNetworks::parse("10.96.0.0/12,nonsense", None).is_err());
        let c = ClusterNetworks::parse("", Some("[fd00::1]")).unwrap();
        assert_eq!(c.api_servers, vec![ip("fd00::1")]);
    }

    #[test]
    fn validate_names_the_bad_entry() {
        let e = validate(&nets(&["10.0.0.0/8", "ten"], &["x"]));
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].0, "spec.cameraNetworks.allow[1]");
        assert_eq!(e[1].0, "spec.cameraNetworks.deny[0]");
    }

    proptest! {
        #[test]
        fn a_range_contains_exactly_its_prefix(a in any::<u32>(), b in any::<u32>(), p in 0u8..=32) {
            let c = Cidr::new(IpAddr::V4(Ipv4Addr::from(a)), p).unwrap();
            let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            prop_assert!(c.contains(IpAddr::V4(Ipv4Addr::from(a))));
            prop_assert_eq!(c.contains(IpAddr::V4(Ipv4Addr::from(b))), a & m == b & m);
            // Its text parses back to itself.
            prop_assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c);
        }

        #[test]
        fn v6_ranges_contain_exactly_their_prefix(a in any::<u128>(), b in any::<u128>(), p in 0u8..=128) {
            let c = Cidr::new(IpAddr::V6(Ipv6Addr::from(a)), p).unwrap();
            let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            let (va, vb) = (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)));
            // IPv4-mapped addresses are judged as IPv4; leave them out of this property.
            prop_assume!(va.to_canonical().is_ipv6() && vb.to_canonical().is_ipv6());
            prop_assert_eq!(c.contains(vb), a & m == b & m);
        }

        #[test]
        fn loopback_and_link_local_never_pass_a_wide_allow(
            host in any::<u32>(),
            wide in 0u8..=8,
            link in any::<u16>(),
        ) {
            let p = AddressPolicy::new(
                &nets(&[&format!("0.0.0.0/{wide}"), "::/0"], &[]),
                &ClusterNetworks::default(),
            ).unwrap();
            let lo = Ipv4Addr::from((127u32 << 24) | (host & 0x00ff_ffff));
            let ll = Ipv4Addr::from((169u32 << 24) | (254 << 16) | link as u32);
            prop_assert!(p.check(IpAddr::V4(lo)).is_err());
            prop_assert!(p.check(IpAddr::V4(ll)).is_err());
            prop_assert!(p.check(IpAddr::V6(lo.to_ipv6_mapped())).is_err());
            prop_assert!(p.check(IpAddr::V6(ll.to_ipv6_mapped())).is_err());
        }

        #[test]
        fn a_denied_address_is_never_allowed(a in any::<u32>(), p in 0u8..=32) {
            let addr = IpAddr::V4(Ipv4Addr::from(a));
            let d = Cidr::new(addr, p).unwrap().to_string();
            let pol = AddressPolicy::new(&nets(&[&d, "0.0.0.0/0"], &[&d]), &ClusterNetworks::default()).unwrap();
            prop_assert!(pol.check(addr).is_err());
        }
    }
}
