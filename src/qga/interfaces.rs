//! `guest-network-get-interfaces` and `guest-network-get-route` replies,
//! walked as text (the elements stay slices of the reply, nothing is built
//! as a tree) and bounded: what is kept per interface, per MAC and per VM.

use super::protocol::{normalize_mac, parse_ip, text, MAX_TEXT_LEN};
use super::reply::{is_object, string};
use crate::text::one_line;
use serde_json::value::RawValue;
use serde_json::Value;
use std::net::IpAddr;

/// One entry of `guest-network-get-interfaces`.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestInterface {
    pub name: String,
    pub mac: Option<String>,
    pub ips: Vec<(IpAddr, u8)>,
}

/// Addresses kept per interface; a real NIC has a handful.
pub const MAX_ADDRESSES: usize = 32;
/// Guest interfaces kept per MAC (a bridge, bond or VLANs on one NIC).
pub const MAX_PER_MAC: usize = 16;
/// NICs kept from the guest's own list (socket mode).
pub const MAX_GUEST_NICS: usize = 64;
/// Default routes kept from `guest-network-get-route`.
pub const MAX_DEFAULT_ROUTES: usize = 256;
/// The MAC qemu-ga reports for loopback.
pub const ZERO_MAC: &str = "00:00:00:00:00:00";

/// Calls `each` with every element of the JSON array `text`, without
/// building the array: the elements stay slices of the text.
pub fn for_each_element<'de>(
    text: &'de str,
    what: &str,
    each: impl FnMut(&'de RawValue),
) -> Result<(), String> {
    struct Each<F>(F);
    impl<'de, F: FnMut(&'de RawValue)> serde::de::Visitor<'de> for Each<F> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
            while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                (self.0)(raw);
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    serde::Deserializer::deserialize_seq(&mut de, Each(each))
        .and_then(|()| de.end())
        .map_err(|_| format!("{what}: expected an array"))
}

#[derive(serde::Deserialize)]
struct InterfaceFields<'a> {
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(rename = "hardware-address", borrow, default)]
    mac: Option<&'a RawValue>,
    #[serde(rename = "ip-addresses", borrow, default)]
    ips: Option<&'a RawValue>,
}

#[derive(serde::Deserialize)]
struct AddressFields<'a> {
    #[serde(rename = "ip-address", borrow, default)]
    ip: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prefix: Option<&'a RawValue>,
}

/// The interfaces of one `guest-network-get-interfaces` reply worth keeping.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InterfaceList {
    /// In the agent's order within each MAC.
    pub kept: Vec<GuestInterface>,
    /// Interfaces with a MAC left out by the bounds (socket mode only).
    pub dropped: usize,
}

impl GuestInterface {
    /// One entry; `None` when it is not an object with a string name.
    fn from_raw(raw: &RawValue) -> Option<GuestInterface> {
        is_object(raw.get()).then_some(())?;
        let fields: InterfaceFields<'_> = serde_json::from_str(raw.get()).ok()?;
        let name = one_line(&string(fields.name)?, MAX_TEXT_LEN);
        let mac = string(fields.mac).and_then(|m| normalize_mac(&m));
        let mut ips = Vec::new();
        if let Some(list) = fields.ips {
            // Not an array: no addresses, like an interface without any.
            let _ = for_each_element(list.get(), "ip-addresses", |addr| {
                if ips.len() >= MAX_ADDRESSES {
                    return;
                }
                let Ok(addr) = serde_json::from_str::<AddressFields<'_>>(addr.get())
                    .map_err(|_| ())
                    .and_then(|a| {
                        if is_object(addr.get()) {
                            Ok(a)
                        } else {
                            Err(())
                        }
                    })
                else {
                    return;
                };
                let Some(ip) = string(addr.ip).and_then(|t| parse_ip(&t)) else {
                    return;
                };
                let max_prefix = if ip.is_ipv4() { 32 } else { 128 };
                let prefix = addr
                    .prefix
                    .and_then(|p| serde_json::from_str::<u64>(p.get()).ok())
                    .filter(|p| *p <= max_prefix)
                    .unwrap_or(max_prefix) as u8;
                ips.push((ip, prefix));
            });
        }
        Some(GuestInterface { name, mac, ips })
    }

    /// The interfaces that can matter, within fixed bounds whatever the
    /// guest sends: with `host_macs` (the host's NICs), those with one of
    /// these MACs; without (socket mode), up to [`MAX_GUEST_NICS`] MACs,
    /// those with an address first. At most [`MAX_PER_MAC`] per MAC and
    /// [`MAX_ADDRESSES`] addresses each.
    pub fn parse_text(text: &str, host_macs: &[String]) -> Result<InterfaceList, String> {
        // (MAC, interfaces), for MACs with addresses and for MACs without.
        let mut with_ips: Vec<(String, Vec<GuestInterface>)> = Vec::new();
        let mut without: Vec<(String, Vec<GuestInterface>)> = Vec::new();
        let mut dropped = 0;
        for_each_element(text, "guest-network-get-interfaces", |raw| {
            let Some(iface) = GuestInterface::from_raw(raw) else {
                return;
            };
            let Some(mac) = iface.mac.clone() else {
                return;
            };
            let tier = if !host_macs.is_empty() {
                if !host_macs.contains(&mac) {
                    return;
                }
                &mut with_ips
            } else if mac == ZERO_MAC {
                return;
            } else if iface.ips.is_empty() {
                &mut without
            } else {
                &mut with_ips
            };
            let full = host_macs.is_empty() && tier.len() >= MAX_GUEST_NICS;
            match tier.iter_mut().find(|(m, _)| *m == mac) {
                Some((_, group)) if group.len() < MAX_PER_MAC => group.push(iface),
                Some(_) => dropped += 1,
                None if full => dropped += 1,
                None => tier.push((mac, vec![iface])),
            }
        })?;
        // MACs without addresses fill what MACs with addresses left over.
        for (mac, group) in without {
            if let Some((_, kept)) = with_ips.iter_mut().find(|(m, _)| *m == mac) {
                let room = MAX_PER_MAC.saturating_sub(kept.len());
                dropped += group.len().saturating_sub(room);
                kept.extend(group.into_iter().take(room));
            } else if with_ips.len() < MAX_GUEST_NICS {
                with_ips.push((mac, group));
            } else {
                dropped += group.len();
            }
        }
        let kept = with_ips.into_iter().flat_map(|(_, group)| group).collect();
        Ok(InterfaceList {
            kept,
            dropped: if host_macs.is_empty() { dropped } else { 0 },
        })
    }
}

/// One entry of `guest-network-get-route` (qemu-ga 9.1+, Linux).
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub iface: String,
    /// The next hop of a default route, if this is one.
    pub default_gateway: Option<IpAddr>,
    /// Lower wins; IPv6 ECMP next hops are sibling routes of one metric.
    pub metric: i64,
}

impl Route {
    /// The default routes of a `guest-network-get-route` reply (at most
    /// [`MAX_DEFAULT_ROUTES`]); other routes are skipped as they are read,
    /// so a guest with a full routing table costs no memory.
    pub fn parse_text(text: &str) -> Result<Vec<Self>, String> {
        let mut out = Vec::new();
        for_each_element(text, "guest-network-get-route", |raw| {
            if out.len() >= MAX_DEFAULT_ROUTES {
                return;
            }
            let Ok(entry) = serde_json::from_str::<Value>(raw.get()) else {
                return;
            };
            if let Some(route) = Route::from_entry(&entry).filter(|r| r.default_gateway.is_some()) {
                out.push(route);
            }
        })?;
        Ok(out)
    }

    fn from_entry(entry: &Value) -> Option<Route> {
        let iface = entry.get("iface").and_then(text)?;
        let field = |key: &str| entry.get(key).and_then(Value::as_str).unwrap_or("");
        let default_gateway = match entry.get("version").and_then(Value::as_i64) {
            Some(4) => {
                let is_default = field("destination") == "0.0.0.0"
                    && (field("mask") == "0.0.0.0" || field("mask").is_empty());
                is_default.then(|| parse_ip(field("gateway"))).flatten()
            }
            // IPv6: the next hop is in `nexthop`, and prefix lengths are strings.
            Some(6) => {
                let is_default = field("destination") == "::" && field("desprefixlen") == "0";
                is_default.then(|| parse_ip(field("nexthop"))).flatten()
            }
            _ => None,
        }
        .filter(|gw| !gw.is_unspecified());
        let metric = entry.get("metric").and_then(Value::as_i64).unwrap_or(0);
        Some(Route {
            iface,
            default_gateway,
            metric,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn interfaces_parse_the_recorded_linux_reply() {
        let reply = json!([
            {"name":"lo","ip-addresses":[{"ip-address-type":"ipv4","ip-address":"127.0.0.1","prefix":8}],"hardware-address":"00:00:00:00:00:00"},
            {"name":"eth0","ip-addresses":[{"ip-address-type":"ipv4","ip-address":"192.168.122.226","prefix":24}],"hardware-address":"52:54:00:AA:DD:01"},
            {"name":"Loopback Pseudo-Interface 1"},
            {"name":"Ethernet 2","ip-addresses":[{"ip-address":"fe80::3a11:dfb6:9b8f:8241%6","prefix":64},{"ip-address":"not an ip","prefix":1},{"ip-address":"10.0.0.1","prefix":99}],"hardware-address":"bogus"}
        ]);
        // Socket mode: MACs are the NICs; loopback and MAC-less ones are not.
        let list = GuestInterface::parse_text(&reply.to_string(), &[])
            .unwrap()
            .kept;
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].name, "eth0");
        assert_eq!(list[0].mac.as_deref(), Some("52:54:00:aa:dd:01"));
        assert_eq!(list[0].ips, vec![("192.168.122.226".parse().unwrap(), 24)]);
        let one = GuestInterface::from_raw(&RawValue::from_string(reply[3].to_string()).unwrap())
            .unwrap();
        assert_eq!(one.mac, None);
        assert_eq!(
            one.ips,
            vec![
                ("fe80::3a11:dfb6:9b8f:8241".parse().unwrap(), 64),
                ("10.0.0.1".parse().unwrap(), 32)
            ]
        );
        assert!(GuestInterface::parse_text("{}", &[]).is_err());
    }

    #[test]
    fn interfaces_beyond_the_bounds_keep_the_nics_that_matter() {
        // 5000 address-less interfaces, then the one with the address.
        let mut list: Vec<Value> = (0..5000)
            .map(|i| json!({"name": format!("veth{i}"), "hardware-address": format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256)}))
            .collect();
        let addrs: Vec<Value> = (0..100)
            .map(|i| json!({"ip-address": format!("10.0.0.{i}"), "prefix": 24}))
            .collect();
        list.push(
            json!({"name": "eth0", "hardware-address": "52:54:00:aa:dd:01", "ip-addresses": addrs}),
        );
        let text = Value::Array(list).to_string();
        let socket = GuestInterface::parse_text(&text, &[]).unwrap();
        assert_eq!(socket.kept[0].name, "eth0", "addresses first");
        assert_eq!(socket.kept[0].ips.len(), MAX_ADDRESSES);
        assert_eq!(socket.kept.len(), MAX_GUEST_NICS);
        assert_eq!(socket.dropped, 5001 - MAX_GUEST_NICS);
        let host = GuestInterface::parse_text(
            &text,
            &["02:00:00:00:13:88".into(), "52:54:00:aa:dd:01".into()],
        )
        .unwrap();
        let names: Vec<&str> = host.kept.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            ["eth0"],
            "host-side MACs only (veth5000 does not exist)"
        );
    }

    #[test]
    fn hostile_interface_names_are_flattened() {
        let reply =
            json!([{"name":"eth0\n'; rm -rf / |x=1,", "hardware-address":"52:54:00:00:00:01"}]);
        let list = GuestInterface::parse_text(&reply.to_string(), &[])
            .unwrap()
            .kept;
        assert_eq!(list[0].name, "eth0 '; rm -rf / |x=1,");
    }

    #[test]
    fn routes_find_v4_and_v6_default_gateways() {
        let reply = json!([
            {"flags": 3, "metric": 0, "version": 4, "iface": "eth0", "destination": "0.0.0.0", "gateway": "192.0.2.1", "mask": "0.0.0.0"},
            {"flags": 1, "metric": 0, "version": 4, "iface": "eth0", "destination": "192.0.2.0", "gateway": "0.0.0.0", "mask": "255.255.255.0"},
            {"flags": 3, "source": "::", "metric": 1024, "version": 6, "nexthop": "fd00::1", "iface": "eth0", "destination": "::", "desprefixlen": "0"},
            {"flags": 18446744071564165121u64, "metric": -1, "version": 6, "nexthop": "::", "iface": "lo", "destination": "::", "desprefixlen": "0"},
            {"version": "4", "iface": "x", "destination": "0.0.0.0", "gateway": "1.2.3.4"}
        ]);
        let routes = Route::parse_text(&reply.to_string()).unwrap();
        assert_eq!(routes.len(), 2, "only default routes are kept");
        let gws: Vec<_> = routes.iter().filter_map(|r| r.default_gateway).collect();
        assert_eq!(
            gws,
            vec![
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "fd00::1".parse().unwrap()
            ]
        );
    }
}
