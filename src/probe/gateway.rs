//! Finding each NIC's gateway: from the agent's route table (qemu-ga 9.1+),
//! from `ip route` / `route print` run in the guest, or from the libvirt
//! network the NIC is attached to. Every address is parsed as an IP literal.

use crate::qga::protocol::parse_ip;
use crate::qga::Route;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Where `ip` lives; tried in order (usrmerge and older layouts).
pub const LINUX_IP_PATHS: &[&str] = &["/sbin/ip", "/usr/sbin/ip", "/bin/ip", "/usr/bin/ip"];
pub const WINDOWS_ROUTE_PATH: &str = r"C:\Windows\System32\ROUTE.EXE";

pub fn linux_route_args() -> Vec<String> {
    ["route", "show", "default"].map(String::from).to_vec()
}

/// The IPv6 default routes: `ip route show default` lists IPv4 only.
pub fn linux_route6_args() -> Vec<String> {
    ["-6", "route", "show", "default"]
        .map(String::from)
        .to_vec()
}

pub fn windows_route_args() -> Vec<String> {
    ["print", "-4", "0.0.0.0"].map(String::from).to_vec()
}

/// Next hops kept per interface; an ECMP route has a handful.
pub const MAX_NEXT_HOPS: usize = 8;

/// Interface name → the next hops of its default route: every next hop of
/// the lowest-metric default (ECMP spreads traffic over all of them, so
/// all are checked).
pub type NextHops = BTreeMap<String, Vec<IpAddr>>;

/// Collects (iface, gateway, metric) candidates: per interface only the
/// lowest metric counts, and IPv4 wins over IPv6.
#[derive(Default)]
struct HopCollector {
    best: BTreeMap<String, (bool, i64, Vec<IpAddr>)>,
}

impl HopCollector {
    fn add(&mut self, iface: &str, gateway: IpAddr, metric: i64) {
        let v4 = gateway.is_ipv4();
        let entry = self
            .best
            .entry(iface.to_string())
            .or_insert_with(|| (v4, metric, Vec::new()));
        let better = (v4 && !entry.0) || (v4 == entry.0 && metric < entry.1);
        if better {
            *entry = (v4, metric, Vec::new());
        } else if v4 != entry.0 || metric != entry.1 {
            return;
        }
        if !entry.2.contains(&gateway) && entry.2.len() < MAX_NEXT_HOPS {
            entry.2.push(gateway);
        }
    }

    fn finish(self) -> NextHops {
        self.best
            .into_iter()
            .filter(|(_, (_, _, hops))| !hops.is_empty())
            .map(|(iface, (_, _, hops))| (iface, hops))
            .collect()
    }
}

/// Next hops from `guest-network-get-route`.
pub fn gateways_from_routes(routes: &[Route]) -> NextHops {
    let mut hops = HopCollector::default();
    for route in routes {
        if let Some(gateway) = route.default_gateway {
            hops.add(&route.iface, gateway, route.metric);
        }
    }
    hops.finish()
}

/// Next hops from `ip route show default` (iproute2 and busybox):
/// `default via 192.0.2.1 dev eth0 proto static metric 100`, or an ECMP
/// route: a `default ... metric 100` line followed by indented
/// `nexthop via 192.0.2.1 dev eth0 weight 1` lines.
pub fn gateways_from_ip_route(output: &str) -> NextHops {
    let mut hops = HopCollector::default();
    // The metric of the default route whose nexthop lines follow.
    let mut multipath: Option<i64> = None;
    for line in output.lines().take(1024) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str| {
            words
                .iter()
                .position(|w| *w == key)
                .and_then(|i| words.get(i + 1))
        };
        let metric = after("metric").and_then(|m| m.parse().ok()).unwrap_or(0);
        let indented = line.starts_with([' ', '\t']);
        match words.first() {
            Some(&"default") => {
                multipath = after("via").is_none().then_some(metric);
            }
            Some(&"nexthop") if indented => {}
            _ => {
                multipath = None;
                continue;
            }
        }
        let metric = match (words.first(), multipath) {
            (Some(&"nexthop"), Some(m)) => m,
            (Some(&"nexthop"), None) => continue,
            _ => metric,
        };
        if let (Some(via), Some(dev)) = (after("via").and_then(|v| parse_ip(v)), after("dev")) {
            hops.add(dev, via, metric);
        }
    }
    hops.finish()
}

/// Adds the IPv6 next hops of interfaces that have no IPv4 ones.
pub fn merge_ipv6(into: &mut NextHops, v6: NextHops) {
    for (iface, hops) in v6 {
        into.entry(iface).or_insert(hops);
    }
}

/// Interface address → gateway from Windows `route print -4 0.0.0.0` rows:
/// `0.0.0.0  0.0.0.0  192.0.2.1  192.0.2.10  25` (headers are localised,
/// rows are numbers; "On-link" gateways are skipped).
pub fn gateways_from_route_print(output: &str) -> BTreeMap<IpAddr, IpAddr> {
    let mut out = BTreeMap::new();
    for line in output.lines().take(1024) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 4 || words[0] != "0.0.0.0" || words[1] != "0.0.0.0" {
            continue;
        }
        if let (Some(gateway), Some(interface)) = (parse_ip(words[2]), parse_ip(words[3])) {
            out.entry(interface).or_insert(gateway);
        }
    }
    out
}

fn same_subnet(a: IpAddr, b: IpAddr, prefix: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let prefix = u32::from(prefix.min(32));
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let prefix = u32::from(prefix.min(128));
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// The libvirt network address (the host side of a NAT/routed/isolated
/// network) whose subnet holds one of the NIC's addresses.
pub fn gateway_from_network(network: &[(IpAddr, u8)], nic_ips: &[IpAddr]) -> Option<IpAddr> {
    network.iter().find_map(|(gateway, prefix)| {
        nic_ips
            .iter()
            .any(|ip| ip != gateway && same_subnet(*ip, *gateway, *prefix))
            .then_some(*gateway)
    })
}

/// Whether `gateway` lies in the subnet of any of the NIC's addresses.
pub fn in_nic_subnet(gateway: IpAddr, nic_ips: &[(IpAddr, u8)]) -> bool {
    nic_ips
        .iter()
        .any(|(ip, prefix)| same_subnet(*ip, gateway, *prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn route(iface: &str, gw: Option<&str>, metric: i64) -> Route {
        Route {
            iface: iface.into(),
            default_gateway: gw.map(ip),
            metric,
        }
    }

    #[test]
    fn route_table_prefers_ipv4_per_interface() {
        let routes = vec![
            route("eth0", Some("fd00::1"), 0),
            route("eth0", Some("192.0.2.1"), 100),
            route("eth0", Some("192.0.2.254"), 200),
            route("eth1", None, 0),
            route("eth2", Some("fd00::1"), 1024),
            route("eth2", Some("fd00::2"), 1024),
            route("eth2", Some("fd00::3"), 2048),
        ];
        let map = gateways_from_routes(&routes);
        assert_eq!(map.get("eth0"), Some(&vec![ip("192.0.2.1")]));
        assert!(!map.contains_key("eth1"));
        // IPv6 ECMP: sibling routes of one metric, every next hop kept.
        assert_eq!(map.get("eth2"), Some(&vec![ip("fd00::1"), ip("fd00::2")]));
    }

    #[test]
    fn ip_route_output_of_iproute2_and_busybox() {
        let out = "default via 192.0.2.1 dev eth0 proto static metric 100 \ndefault via 10.0.0.1 dev eth1\ndefault dev ppp0 scope link\n";
        let map = gateways_from_ip_route(out);
        assert_eq!(map.get("eth0"), Some(&vec![ip("192.0.2.1")]));
        assert_eq!(map.get("eth1"), Some(&vec![ip("10.0.0.1")]));
        assert_eq!(map.len(), 2);
        assert!(gateways_from_ip_route("default via $(reboot) dev eth0").is_empty());
        // A backup route with a higher metric is not a next hop.
        let out = "default via 192.0.2.1 dev eth0 metric 100\ndefault via 192.0.2.9 dev eth0 metric 200\n";
        assert_eq!(
            gateways_from_ip_route(out).get("eth0"),
            Some(&vec![ip("192.0.2.1")])
        );
    }

    #[test]
    fn ecmp_routes_give_every_next_hop() {
        let out = "default proto static metric 100 \n\tnexthop via 192.0.2.1 dev eth0 weight 1 \n\tnexthop via 192.0.2.2 dev eth0 weight 1 \n\tnexthop via 198.51.100.1 dev eth1 weight 1 \n";
        let map = gateways_from_ip_route(out);
        assert_eq!(
            map.get("eth0"),
            Some(&vec![ip("192.0.2.1"), ip("192.0.2.2")])
        );
        assert_eq!(map.get("eth1"), Some(&vec![ip("198.51.100.1")]));
        // IPv6, as `ip -6 route show default` prints it.
        let out = "default metric 1024 pref medium\n\tnexthop via fe80::1 dev eth0 weight 1 \n\tnexthop via fe80::2 dev eth0 weight 1 \n";
        assert_eq!(
            gateways_from_ip_route(out).get("eth0"),
            Some(&vec![ip("fe80::1"), ip("fe80::2")])
        );
        // A nexthop line that follows no multipath default is not one.
        let out = "192.0.2.0/24 proto static\n\tnexthop via 192.0.2.7 dev eth0\n";
        assert!(gateways_from_ip_route(out).is_empty());
        let mut v4 = gateways_from_ip_route("default via 192.0.2.1 dev eth0\n");
        merge_ipv6(
            &mut v4,
            gateways_from_ip_route(
                "default via fe80::1 dev eth0 proto ra\ndefault via fe80::1 dev eth1 proto ra\n",
            ),
        );
        assert_eq!(v4.get("eth0"), Some(&vec![ip("192.0.2.1")]));
        assert_eq!(v4.get("eth1"), Some(&vec![ip("fe80::1")]));
    }

    #[test]
    fn route_print_rows() {
        let out = "===========\nIPv4 Route Table\nActive Routes:\nNetwork Destination        Netmask          Gateway       Interface  Metric\n          0.0.0.0          0.0.0.0      192.0.2.1    192.0.2.10     25\n          0.0.0.0          0.0.0.0         On-link    10.1.1.5     25\n";
        let map = gateways_from_route_print(out);
        assert_eq!(map.get(&ip("192.0.2.10")), Some(&ip("192.0.2.1")));
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn network_gateway_must_share_the_subnet() {
        let net = vec![(ip("192.0.2.1"), 24), (ip("fd00::1"), 64)];
        assert_eq!(
            gateway_from_network(&net, &[ip("192.0.2.10")]),
            Some(ip("192.0.2.1"))
        );
        assert_eq!(
            gateway_from_network(&net, &[ip("fd00::5")]),
            Some(ip("fd00::1"))
        );
        assert_eq!(gateway_from_network(&net, &[ip("198.51.100.2")]), None);
        assert!(in_nic_subnet(ip("10.0.0.1"), &[(ip("10.0.0.9"), 8)]));
        assert!(!in_nic_subnet(ip("10.0.0.1"), &[(ip("11.0.0.9"), 8)]));
        assert!(in_nic_subnet(ip("1.2.3.4"), &[(ip("5.6.7.8"), 0)]));
    }
}
