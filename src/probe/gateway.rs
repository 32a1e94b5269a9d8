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

pub fn windows_route_args() -> Vec<String> {
    ["print", "-4", "0.0.0.0"].map(String::from).to_vec()
}

/// Interface name → default gateway from `guest-network-get-route`. IPv4 wins
/// over IPv6 for the same interface; the first route listed wins otherwise.
pub fn gateways_from_routes(routes: &[Route]) -> BTreeMap<String, IpAddr> {
    let mut out: BTreeMap<String, IpAddr> = BTreeMap::new();
    for route in routes {
        let Some(gateway) = route.default_gateway else {
            continue;
        };
        match out.get(&route.iface) {
            Some(existing) if existing.is_ipv4() || gateway.is_ipv6() => {}
            _ => {
                out.insert(route.iface.clone(), gateway);
            }
        }
    }
    out
}

/// Interface name → gateway from `ip route show default` (iproute2 and busybox):
/// `default via 192.0.2.1 dev eth0 proto static metric 100`.
pub fn gateways_from_ip_route(output: &str) -> BTreeMap<String, IpAddr> {
    let mut out = BTreeMap::new();
    for line in output.lines().take(1024) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() != Some(&"default") {
            continue;
        }
        let after = |key: &str| {
            words
                .iter()
                .position(|w| *w == key)
                .and_then(|i| words.get(i + 1))
        };
        if let (Some(via), Some(dev)) = (after("via").and_then(|v| parse_ip(v)), after("dev")) {
            out.entry(dev.to_string()).or_insert(via);
        }
    }
    out
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

    #[test]
    fn route_table_prefers_ipv4_per_interface() {
        let routes = vec![
            Route {
                iface: "eth0".into(),
                default_gateway: Some(ip("fd00::1")),
            },
            Route {
                iface: "eth0".into(),
                default_gateway: Some(ip("192.0.2.1")),
            },
            Route {
                iface: "eth0".into(),
                default_gateway: Some(ip("192.0.2.254")),
            },
            Route {
                iface: "eth1".into(),
                default_gateway: None,
            },
        ];
        let map = gateways_from_routes(&routes);
        assert_eq!(map.get("eth0"), Some(&ip("192.0.2.1")));
        assert!(!map.contains_key("eth1"));
    }

    #[test]
    fn ip_route_output_of_iproute2_and_busybox() {
        let out = "default via 192.0.2.1 dev eth0 proto static metric 100 \ndefault via 10.0.0.1 dev eth1\ndefault dev ppp0 scope link\n";
        let map = gateways_from_ip_route(out);
        assert_eq!(map.get("eth0"), Some(&ip("192.0.2.1")));
        assert_eq!(map.get("eth1"), Some(&ip("10.0.0.1")));
        assert_eq!(map.len(), 2);
        assert!(gateways_from_ip_route("default via $(reboot) dev eth0").is_empty());
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
