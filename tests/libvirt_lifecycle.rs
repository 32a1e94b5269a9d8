//! Domain lifecycle and vmnetprobe's domain metadata against libvirt's
//! built-in `test:///default` driver (a real libvirt, no QEMU): a paused
//! domain is listed with its reason, and the settings in its metadata reach
//! the target, validated. Real QEMU guests: tests/lab_lifecycle.rs.
//!
//! `test:///default` keeps one state per process, shared by every
//! connection: the domains here have names of their own, and nothing counts
//! the whole list (tests/libvirt_inventory.rs does, in its own process).
#![cfg(feature = "libvirt")]

use virt::connect::Connect;
use virt::domain::Domain;
use vmnetprobe::inventory::libvirt::LibvirtInventory;
use vmnetprobe::inventory::metadata::{KEY, NAMESPACE};
use vmnetprobe::inventory::{Inventory, Lifecycle, PauseReason, VmTarget};

const URI: &str = "test:///default";

/// A transient test-driver domain, destroyed on drop.
struct TestDomain(Domain);

impl TestDomain {
    fn start(conn: &Connect, name: &str, metadata: &str) -> TestDomain {
        let xml = format!(
            "<domain type='test'><name>{name}</name><memory>65536</memory>\
             <metadata>{metadata}</metadata><os><type>hvm</type></os><devices/></domain>"
        );
        TestDomain(conn.create_domain_xml(&xml, 0).expect("create test domain"))
    }
}

impl Drop for TestDomain {
    fn drop(&mut self) {
        let _ = self.0.destroy();
    }
}

fn listed(inventory: &LibvirtInventory, name: &str) -> Option<VmTarget> {
    inventory
        .list(&[])
        .expect("list")
        .into_iter()
        .find(|t| t.name == name)
}

#[test]
fn a_paused_domain_is_listed_host_wide_with_its_reason() {
    let conn = Connect::open(Some(URI)).expect("test driver");
    let dom = TestDomain::start(&conn, "lc-paused", "");
    let inventory = LibvirtInventory::open(URI).expect("test driver");
    assert_eq!(
        listed(&inventory, "lc-paused").map(|t| t.lifecycle),
        Some(Lifecycle::Running)
    );
    dom.0.suspend().expect("suspend");
    let target = listed(&inventory, "lc-paused").expect("a paused VM is not skipped");
    assert_eq!(target.lifecycle, Lifecycle::Paused(PauseReason::User));
    // Asked again after an agent failure, the host says the same.
    assert_eq!(
        target.connector.lifecycle(),
        Some(Lifecycle::Paused(PauseReason::User))
    );
    dom.0.resume().expect("resume");
    assert_eq!(target.connector.lifecycle(), Some(Lifecycle::Running));
    drop(dom);
    assert!(listed(&inventory, "lc-paused").is_none(), "destroyed: gone");
}

#[test]
fn settings_from_domain_metadata_as_virsh_sets_them() {
    let conn = Connect::open(Some(URI)).expect("test driver");
    let dom = TestDomain::start(&conn, "lc-settings", "");
    let inventory = LibvirtInventory::open(URI).expect("test driver");
    let settings = |inv: &LibvirtInventory| {
        inv.list(&["lc-settings".into()]).expect("list")[0]
            .settings
            .clone()
    };
    assert_eq!(settings(&inventory), Ok(Default::default()));
    // What `virsh metadata DOM --uri NAMESPACE --key vmnetprobe --set XML` does.
    let set = |xml: &str| {
        dom.0
            .set_metadata(
                virt::sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
                Some(xml),
                Some(KEY),
                Some(NAMESPACE),
                virt::sys::VIR_DOMAIN_AFFECT_LIVE,
            )
            .expect("set metadata")
    };
    set("<probe><maintenance>disk swap</maintenance><external>198.51.100.7</external></probe>");
    let got = settings(&inventory).expect("valid");
    assert_eq!(got.maintenance.as_deref(), Some("disk swap"));
    assert_eq!(got.external, Some("198.51.100.7".parse().unwrap()));
    set("<probe><external>198.51.100.7 -f</external></probe>");
    let err = settings(&inventory).unwrap_err();
    assert!(err.contains("is not an IP address"), "{err}");
}
