//! What vmnetprobe remembers between runs, kept in the state directory:
//! per VM the agent facts learned the expensive way (OS, the ping binary
//! that works, where the gateways came from), the VM's start time and the
//! consecutive-failure streaks; per selection the last probe result that
//! callers within `--min-interval` share.
//!
//! Facts are only trusted while the agent looks the same: the same version
//! and the same `guest-info` command list (read on every run anyway, as the
//! liveness check), the same VM start time, and an agent that answered on
//! the previous run. Anything else drops them and they are learned again.

use crate::memory::statedir::StateDir;
use crate::report::{GatewaySource, GuestOs, Report};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The per-VM file in the state directory.
pub const VMS_FILE: &str = "vms.json";
/// Lock guarding read-modify-write of [`VMS_FILE`].
pub const VMS_LOCK: &str = "vms";
/// Gateways found in the guest's route table are looked up again after
/// this long even when nothing else changed (a route changed in the guest
/// without its addresses changing).
pub const ROUTE_TTL: Duration = Duration::from_secs(600);
/// At most this many VMs are kept (the least recently seen go first).
pub const MAX_STORED_VMS: usize = 2048;
/// VMs not probed for this long are forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);
const FORMAT_VERSION: u32 = 1;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The identity a VM's state is kept under: its UUID when known, else the
/// agent socket path (socket mode), else its name.
pub fn vm_key(name: &str, uuid: Option<&str>, socket: Option<&std::path::Path>) -> String {
    match (uuid, socket) {
        (Some(uuid), _) => format!("uuid:{}", uuid.to_ascii_lowercase()),
        (None, Some(path)) => format!("socket:{}", path.display()),
        (None, None) => format!("name:{name}"),
    }
}

/// Facts about a VM's guest agent that cost agent commands (some of them
/// `guest-exec`, logged in the guest) to learn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentFacts {
    pub version: String,
    /// [`commands_fingerprint`] of `guest-info`'s command list when
    /// learned: the list itself can be 4096 names long.
    #[serde(default, rename = "commands_fingerprint")]
    pub commands: u64,
    /// Linux or Windows (an unknown OS is never cached).
    pub os: GuestOs,
    /// The Linux ping binary that worked.
    #[serde(default)]
    pub ping_path: Option<String>,
    /// Gateways from the guest's routes, while they last.
    #[serde(default)]
    pub routes: Option<RouteMemo>,
}

/// Gateways as the guest's own routes gave them (agent route command or
/// the guest's route table), with the addresses the NICs had then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteMemo {
    pub learned_ms: u64,
    /// By MAC.
    pub nics: BTreeMap<String, RouteEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteEntry {
    pub ips: Vec<IpAddr>,
    pub gateway: Option<IpAddr>,
    pub source: Option<GatewaySource>,
    /// Further ECMP next hops.
    #[serde(default)]
    pub more: Vec<IpAddr>,
}

/// Everything kept about one VM.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmState {
    pub name: String,
    #[serde(default)]
    pub facts: Option<AgentFacts>,
    /// When the VM (its QEMU process, or its agent socket) started, if known.
    #[serde(default)]
    pub started_ms: Option<u64>,
    /// Consecutive failed probes per component (`nic:<mac>`, `external:<addr>`).
    #[serde(default)]
    pub streaks: BTreeMap<String, u32>,
    #[serde(default)]
    pub seen_ms: u64,
    /// Where the VM was listed (`libvirt:URI`); a full listing of that
    /// source drops the VMs it no longer has.
    #[serde(default)]
    pub source: String,
}

/// The content of [`VMS_FILE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmStore {
    pub format: u32,
    pub vms: BTreeMap<String, VmState>,
}

impl Default for VmStore {
    fn default() -> Self {
        VmStore {
            format: FORMAT_VERSION,
            vms: BTreeMap::new(),
        }
    }
}

impl VmStore {
    /// The stored state, or an empty one (missing, damaged or of another format).
    pub fn load(dir: &StateDir) -> VmStore {
        dir.read::<VmStore>(VMS_FILE)
            .filter(|s| s.format == FORMAT_VERSION)
            .unwrap_or_default()
    }

    /// Drops VMs not seen for [`FORGET_AFTER`], VMs whose agent socket is
    /// gone, and the least recently seen beyond [`MAX_STORED_VMS`], so the
    /// file follows the VMs that exist, not every VM ever seen.
    pub fn prune(&mut self, now_ms: u64) {
        let limit = u64::try_from(FORGET_AFTER.as_millis()).unwrap_or(u64::MAX);
        self.vms.retain(|key, vm| {
            let socket_gone = key
                .strip_prefix("socket:")
                .is_some_and(|path| std::fs::symlink_metadata(path).is_err());
            now_ms.saturating_sub(vm.seen_ms) < limit && !socket_gone
        });
        if self.vms.len() > MAX_STORED_VMS {
            let mut seen: Vec<u64> = self.vms.values().map(|vm| vm.seen_ms).collect();
            seen.sort_unstable_by(|a, b| b.cmp(a));
            let cutoff = seen[MAX_STORED_VMS - 1];
            self.vms.retain(|_, vm| vm.seen_ms >= cutoff);
            // Ties at the cutoff: drop by key order until within the cap.
            while self.vms.len() > MAX_STORED_VMS {
                let Some(key) = self
                    .vms
                    .iter()
                    .find(|(_, vm)| vm.seen_ms == cutoff)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                self.vms.remove(&key);
            }
        }
    }

    /// After a listing of every VM of `source`: drops that source's VMs
    /// that were not listed (deleted, or no longer running: their facts
    /// would not survive a restart anyway).
    pub fn forget_unlisted(&mut self, source: &str, listed: &[&String]) {
        self.vms
            .retain(|key, vm| vm.source != source || listed.contains(&key));
    }
}

/// What a probe learned about one VM's agent facts.
#[derive(Debug, Clone, PartialEq)]
pub enum FactUpdate {
    /// Keep these (new or confirmed).
    Store(AgentFacts),
    /// The agent did not answer or changed: forget what was known.
    Forget,
}

/// The facts handed to the probes of one run and what they learned; shared
/// by the worker threads.
#[derive(Debug, Default)]
pub struct FactBook {
    /// VM name → state key, as the inventory resolved them.
    keys: BTreeMap<String, String>,
    known: BTreeMap<String, AgentFacts>,
    learned: Mutex<BTreeMap<String, FactUpdate>>,
}

impl FactBook {
    pub fn new(keys: BTreeMap<String, String>, known: BTreeMap<String, AgentFacts>) -> FactBook {
        FactBook {
            keys,
            known,
            learned: Mutex::new(BTreeMap::new()),
        }
    }

    /// The state key of the VM called `name`.
    pub fn key_for(&self, name: &str, uuid: Option<&str>) -> String {
        self.keys
            .get(name)
            .cloned()
            .unwrap_or_else(|| vm_key(name, uuid, None))
    }

    pub fn known(&self, key: &str) -> Option<&AgentFacts> {
        self.known.get(key)
    }

    pub fn learn(&self, key: String, update: FactUpdate) {
        if let Ok(mut learned) = self.learned.lock() {
            learned.insert(key, update);
        }
    }

    pub fn take_learned(&self) -> BTreeMap<String, FactUpdate> {
        self.learned
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }
}

/// A probe result shared by callers within `--min-interval`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredResult {
    /// The selection it answers, in full (the file name is only its hash).
    pub key: String,
    pub stored_ms: u64,
    pub report: Report,
}

/// A fingerprint of `guest-info`'s command list (name → enabled).
pub fn commands_fingerprint(commands: &BTreeMap<String, bool>) -> u64 {
    let text: String = commands
        .iter()
        .map(|(name, on)| format!("{name}={}\n", u8::from(*on)))
        .collect();
    fingerprint(&text)
}

/// File and lock name for a selection key: `result-<hash>`.
pub fn result_name(key: &str) -> String {
    format!("result-{:016x}", fingerprint(key))
}

/// FNV-1a of `text`: stable across builds, not a secret-keeping hash.
pub fn fingerprint(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_prefer_uuid_then_socket_then_name() {
        assert_eq!(
            vm_key("a", Some("ABC-1"), Some("/x.sock".as_ref())),
            "uuid:abc-1"
        );
        assert_eq!(
            vm_key("a", None, Some("/x.sock".as_ref())),
            "socket:/x.sock"
        );
        assert_eq!(vm_key("a", None, None), "name:a");
    }

    #[test]
    fn result_names_are_stable_and_distinct() {
        assert_eq!(result_name(""), "result-cbf29ce484222325");
        assert_ne!(result_name("a"), result_name("b"));
    }

    #[test]
    fn old_vms_are_forgotten() {
        let mut store = VmStore::default();
        store.vms.insert(
            "name:old".into(),
            VmState {
                seen_ms: 1,
                ..VmState::default()
            },
        );
        let now = 40 * 24 * 3600 * 1000;
        store.vms.insert(
            "name:new".into(),
            VmState {
                seen_ms: now - 1000,
                ..VmState::default()
            },
        );
        store.prune(now);
        assert_eq!(store.vms.keys().collect::<Vec<_>>(), ["name:new"]);
    }

    #[test]
    fn gone_vms_and_the_oldest_beyond_the_cap_are_dropped() {
        let mut store = VmStore::default();
        for i in 0..(MAX_STORED_VMS as u64 + 10) {
            store.vms.insert(
                format!("uuid:{i}"),
                VmState {
                    seen_ms: 1_000 + i,
                    source: "libvirt:a".into(),
                    ..VmState::default()
                },
            );
        }
        store.vms.insert(
            "socket:/nonexistent/vmnetprobe/1.qga".into(),
            VmState {
                seen_ms: 1_000_000,
                ..VmState::default()
            },
        );
        store.prune(2_000_000);
        assert_eq!(store.vms.len(), MAX_STORED_VMS);
        assert!(!store.vms.contains_key("uuid:0"), "the oldest go first");
        assert!(!store.vms.keys().any(|k| k.starts_with("socket:")));
        let listed = format!("uuid:{}", MAX_STORED_VMS + 5);
        store.vms.insert(
            "uuid:other-host".into(),
            VmState {
                source: "libvirt:b".into(),
                ..VmState::default()
            },
        );
        store.forget_unlisted("libvirt:a", &[&listed]);
        let keys: Vec<&String> = store.vms.keys().collect();
        assert_eq!(keys, [&listed, "uuid:other-host"]);
    }

    #[test]
    fn the_store_survives_a_round_trip() {
        let mut store = VmStore::default();
        store.vms.insert(
            "uuid:x".into(),
            VmState {
                name: "vm1".into(),
                facts: Some(AgentFacts {
                    version: "7.2.22".into(),
                    commands: 42,
                    os: GuestOs::Windows,
                    ping_path: Some("/bin/ping".into()),
                    routes: Some(RouteMemo {
                        learned_ms: 5,
                        nics: [(
                            "52:54:00:aa:bb:01".to_string(),
                            RouteEntry {
                                ips: vec!["192.0.2.10".parse().unwrap()],
                                gateway: Some("192.0.2.1".parse().unwrap()),
                                source: Some(GatewaySource::GuestRouteTable),
                                more: vec!["192.0.2.2".parse().unwrap()],
                            },
                        )]
                        .into(),
                    }),
                }),
                started_ms: Some(7),
                streaks: [("nic:x".to_string(), 2)].into(),
                seen_ms: 9,
                source: "libvirt:qemu:///system".into(),
            },
        );
        let text = serde_json::to_string(&store).unwrap();
        assert_eq!(serde_json::from_str::<VmStore>(&text).unwrap(), store);
    }
}
