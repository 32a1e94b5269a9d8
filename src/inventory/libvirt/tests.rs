//! Unit tests of `libvirt`.

use super::*;

const DOMAIN: &str = r#"<domain type='qemu'><name>demo</name><devices>
  <interface type='network'>
    <mac address='52:54:00:AA:BB:02'/>
    <source network='default' portid='x' bridge='virbr0'/>
    <target dev='vnet0'/><model type='virtio'/>
  </interface>
  <interface type='bridge'>
    <mac address='52:54:00:aa:bb:01'/><source bridge='br-ext'/><target dev='vnet1'/>
    <link state='down'/>
  </interface>
  <interface type='user'><mac address='52:54:00:aa:bb:03'/></interface>
  <interface type='network'><source network='x'/></interface>
  <channel type='unix'>
    <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>
  </channel>
</devices></domain>"#;

#[test]
fn domain_xml_nics_are_sorted_by_mac_with_sources() {
    let parsed = parse_domain_xml(DOMAIN).unwrap();
    assert_eq!(parsed.channel, ChannelState::Connected);
    let macs: Vec<&str> = parsed.nics.iter().map(|n| n.mac.as_str()).collect();
    assert_eq!(
        macs,
        [
            "52:54:00:aa:bb:01",
            "52:54:00:aa:bb:02",
            "52:54:00:aa:bb:03"
        ]
    );
    let br = &parsed.nics[0];
    assert_eq!(br.bridge.as_deref(), Some("br-ext"));
    assert!(br.link_down);
    assert_eq!(br.network, None);
    let net = &parsed.nics[1];
    assert_eq!(net.network.as_deref(), Some("default"));
    assert_eq!(net.bridge.as_deref(), Some("virbr0"));
    assert_eq!(net.host_dev.as_deref(), Some("vnet0"));
    assert_eq!(net.model.as_deref(), Some("virtio"));
    assert!(!net.link_down);
}

#[test]
fn channel_states() {
    let no_channel = "<domain><devices><interface type='user'><mac address='52:54:00:00:00:01'/></interface></devices></domain>";
    assert_eq!(
        parse_domain_xml(no_channel).unwrap().channel,
        ChannelState::Missing
    );
    let off = DOMAIN.replace("state='connected'", "state='disconnected'");
    assert_eq!(
        parse_domain_xml(&off).unwrap().channel,
        ChannelState::Disconnected
    );
    assert!(parse_domain_xml("<domain><devices>").is_err());
}

#[test]
fn state_reasons_map_to_lifecycles() {
    use virt::domain::DomainRunningReason;
    let paused = |why: DomainPausedReason| {
        lifecycle_from_state(
            DomainState::Paused,
            Enum::Known(DomainStateReason::Paused(Enum::Known(why))),
        )
    };
    assert_eq!(
        paused(DomainPausedReason::User),
        Lifecycle::Paused(PauseReason::User)
    );
    assert_eq!(
        paused(DomainPausedReason::IOError),
        Lifecycle::Paused(PauseReason::IoError)
    );
    assert_eq!(paused(DomainPausedReason::Migration), Lifecycle::Migrating);
    assert_eq!(paused(DomainPausedReason::PostCopy), Lifecycle::Migrating);
    assert_eq!(
        paused(DomainPausedReason::FromSnapshot),
        Lifecycle::Paused(PauseReason::Snapshot)
    );
    assert!(PauseReason::IoError.is_failure() && !PauseReason::User.is_failure());
    let raw = lifecycle_from_state(DomainState::Paused, Enum::Unknown(99));
    assert_eq!(raw, Lifecycle::Paused(PauseReason::Unknown));
    let running = Enum::Known(DomainStateReason::Running(Enum::Known(
        DomainRunningReason::Unpaused,
    )));
    assert_eq!(
        lifecycle_from_state(DomainState::Running, running),
        Lifecycle::Running
    );
    assert_eq!(
        lifecycle_from_state(DomainState::PMSuspended, Enum::Unknown(0)),
        Lifecycle::Paused(PauseReason::GuestSuspended)
    );
    assert_eq!(
        lifecycle_from_state(DomainState::Crashed, Enum::Unknown(0)),
        Lifecycle::Paused(PauseReason::Crashed)
    );
    for gone in [DomainState::Shutdown, DomainState::Shutoff] {
        assert_eq!(
            lifecycle_from_state(gone, Enum::Unknown(0)),
            Lifecycle::NotRunning
        );
    }
}

#[test]
fn network_xml_addresses_with_netmask_or_prefix() {
    let xml = r#"<network><name>default</name><forward mode='nat'/>
      <bridge name='virbr0' stp='on' delay='0'/>
      <ip address='192.168.122.1' netmask='255.255.255.0'><dhcp/></ip>
      <ip family='ipv6' address='fd00::1' prefix='64'/>
      <ip address='bogus' prefix='8'/></network>"#;
    let (bridge, addrs) = parse_network_xml(xml).unwrap();
    assert_eq!(bridge.as_deref(), Some("virbr0"));
    assert_eq!(
        addrs,
        vec![
            ("192.168.122.1".parse().unwrap(), 24),
            ("fd00::1".parse().unwrap(), 64)
        ]
    );
    assert_eq!(prefix_from_netmask("255.255.0.255"), None);
}
