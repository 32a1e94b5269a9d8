//! The libvirt inventory against libvirt's built-in `test:///default`
//! driver: listing, domain XML, network lookup, selection, and the agent
//! error path (the test driver has no agent).
#![cfg(feature = "libvirt")]

mod common;

use common::{stdout, vm, vmnetprobe};
use serde_json::Value;
use vmnetprobe::inventory::libvirt::LibvirtInventory;
use vmnetprobe::inventory::{ChannelState, Inventory, Lifecycle};

const URI: &str = "test:///default";

#[test]
fn lists_the_running_test_domain_with_its_nic_and_network() {
    let inventory = LibvirtInventory::open(URI).expect("test driver");
    let targets = inventory.list(&[]).expect("list");
    assert_eq!(targets.len(), 1);
    let test = &targets[0];
    assert_eq!(test.name, "test");
    assert_eq!(
        test.uuid.as_deref(),
        Some("6695eb01-f6a4-8304-79aa-97f2502e193f")
    );
    assert_eq!(test.lifecycle, Lifecycle::Running);
    assert_eq!(test.channel, ChannelState::Missing);
    assert_eq!(test.nics.len(), 1);
    let nic = &test.nics[0];
    assert_eq!(nic.mac, "aa:bb:cc:dd:ee:ff");
    assert_eq!(nic.network.as_deref(), Some("default"));
    assert_eq!(nic.host_dev.as_deref(), Some("testnet0"));
    // The test driver's "default" network: its address is the gateway candidate.
    assert!(
        nic.network_addresses
            .iter()
            .any(|(ip, prefix)| ip.to_string() == "192.168.122.1" && *prefix == 24),
        "{:?}",
        nic.network_addresses
    );
}

#[test]
fn selection_by_name_or_uuid_and_unknown_domains() {
    let inventory = LibvirtInventory::open(URI).expect("test driver");
    assert_eq!(inventory.list(&["test".into()]).expect("by name").len(), 1);
    assert_eq!(
        inventory
            .list(&["6695eb01-f6a4-8304-79aa-97f2502e193f".into()])
            .expect("by uuid")
            .len(),
        1
    );
    let err = inventory.list(&["nosuchvm".into()]).unwrap_err();
    assert!(err.0.contains("unknown domain 'nosuchvm'"), "{err}");
}

#[test]
fn binary_reports_the_missing_agent_channel_in_every_mode() {
    let out = vmnetprobe(&[
        "status",
        "--json",
        "--connect",
        URI,
        "--external",
        "198.51.100.1",
    ]);
    assert!(out.stderr.is_empty(), "libvirt must not print on stderr");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    let test = vm(&doc, "test");
    assert_eq!(test["code"], "no_agent_channel");
    assert_eq!(test["state"], "UNKNOWN");
    assert_eq!(test["nics"][0]["network"], "default");
    assert_eq!(test["nics"][0]["host_dev"], "testnet0");

    let out = vmnetprobe(&[
        "nagios",
        "--connect",
        URI,
        "--external",
        "198.51.100.1",
        "--agent-down-state",
        "critical",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let out = vmnetprobe(&["discover", "vms", "--connect", URI]);
    let rows: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        rows[0]["{#VM.UUID}"],
        "6695eb01-f6a4-8304-79aa-97f2502e193f"
    );
    let out = vmnetprobe(&["discover", "nics", "--connect", URI]);
    let rows: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(rows[0]["{#NIC.MAC}"], "aa:bb:cc:dd:ee:ff");
    assert_eq!(rows[0]["{#NIC.NETWORK}"], "default");
}

#[test]
fn unknown_domain_and_unreachable_libvirt_are_one_line_unknowns() {
    let out = vmnetprobe(&["nagios", "--connect", URI, "-d", "nosuchvm"]);
    assert_eq!(out.status.code(), Some(3));
    let text = stdout(&out);
    assert!(
        text.starts_with("VMNETPROBE UNKNOWN - unknown domain 'nosuchvm'"),
        "{text}"
    );
    let out = vmnetprobe(&[
        "nagios",
        "--connect",
        "qemu+unix:///system?socket=/nonexistent/sock",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stdout(&out).starts_with("VMNETPROBE UNKNOWN - cannot connect to libvirt"),
        "{}",
        stdout(&out)
    );
    assert!(out.stderr.is_empty());
}

/// A Nova-managed domain as OpenStack defines it (name `instance-0000xxxx`,
/// `<nova:instance>` metadata), in a test-driver node file of this test's own.
const NOVA_NODE: &str = r#"<node>
  <domain type="test">
    <name>instance-0000002a</name>
    <uuid>2a5e3c1d-7b2d-4e6f-8a9b-0c1d2e3f4a2a</uuid>
    <metadata>
      <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
        <nova:package version="27.1.0"/>
        <nova:name>web-frontend 1</nova:name>
        <nova:flavor name="m1.small"><nova:memory>2048</nova:memory></nova:flavor>
        <nova:owner>
          <nova:user uuid="7f0c">admin</nova:user>
          <nova:project uuid="9d1e">shop, prod</nova:project>
        </nova:owner>
      </nova:instance>
    </metadata>
    <memory>1048576</memory>
    <vcpu>1</vcpu>
    <os><type>hvm</type></os>
  </domain>
</node>
"#;

/// Nova's instance name and project ride along as labels in every output,
/// read by libvirt (test driver) from the domain XML; the VM key stays the
/// domain's name and UUID.
#[test]
fn openstack_instance_name_and_project_are_labels() {
    let dir = std::env::temp_dir().join(format!("vmnetprobe-nova-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let node = dir.join("node.xml");
    std::fs::write(&node, NOVA_NODE).expect("node file");
    let uri = format!("test://{}", node.display());

    let inventory = LibvirtInventory::open(&uri).expect("test driver with a node file");
    let targets = inventory.list(&[]).expect("list");
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].name, "instance-0000002a");
    let cloud = targets[0].cloud.as_ref().expect("nova metadata read");
    assert_eq!(cloud.name, "web-frontend 1");
    assert_eq!(cloud.project.as_deref(), Some("shop, prod"));

    let target = [
        "--connect",
        uri.as_str(),
        "--external",
        "198.51.100.1",
        "-t",
        "3s",
    ];
    let run = |mode: &[&str]| {
        let mut args = mode.to_vec();
        args.extend_from_slice(&target);
        let out = vmnetprobe(&args);
        assert!(
            out.stderr.is_empty(),
            "{mode:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    };
    let doc: Value = serde_json::from_str(&run(&["status", "--json"])).expect("json");
    let v = vm(&doc, "instance-0000002a");
    assert_eq!(v["uuid"], "2a5e3c1d-7b2d-4e6f-8a9b-0c1d2e3f4a2a");
    assert_eq!(
        v["cloud"],
        serde_json::json!({"name": "web-frontend 1", "project": "shop, prod"})
    );
    let zabbix: Value = serde_json::from_str(&run(&["zabbix"])).expect("json");
    assert_eq!(
        zabbix["vms"][0]["id"],
        "2a5e3c1d-7b2d-4e6f-8a9b-0c1d2e3f4a2a"
    );
    let rows: Value = serde_json::from_str(&run(&["discover", "vms"])).expect("json");
    assert_eq!(rows[0]["{#VM.NAME}"], "instance-0000002a");
    assert_eq!(rows[0]["{#VM.INSTANCE}"], "web-frontend 1");
    assert_eq!(rows[0]["{#VM.PROJECT}"], "shop, prod");
    let lines = run(&["telegraf"]);
    let vm_line = lines
        .lines()
        .find(|l| l.starts_with("vmnetprobe_vm,"))
        .expect("vm line");
    assert!(
        vm_line.starts_with(
            r"vmnetprobe_vm,instance=web-frontend\ 1,project=shop\,\ prod,uuid=2a5e3c1d-7b2d-4e6f-8a9b-0c1d2e3f4a2a,vm=instance-0000002a "
        ),
        "{vm_line}"
    );
    let nagios = run(&["nagios"]);
    assert!(
        nagios.contains("\n[UNKNOWN] instance-0000002a (web-frontend 1, project shop, prod): "),
        "{nagios}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
