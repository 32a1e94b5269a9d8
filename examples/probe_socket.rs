//! Using vmnetprobe as a library: probe one guest agent socket and print
//! the VM's state, each NIC and the external check.
//!
//! ```text
//! cargo run --example probe_socket -- /run/qga/vm1.sock 198.51.100.1
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};
use vmnetprobe::inventory::socket::SocketInventory;
use vmnetprobe::inventory::Inventory;
use vmnetprobe::probe::{probe_vm, ProbeConfig};

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(socket), Some(external)) = (args.next(), args.next()) else {
        eprintln!("usage: probe_socket SOCKET EXTERNAL-IP");
        return std::process::ExitCode::from(3);
    };
    let external = match external.parse() {
        Ok(ip) => ip,
        Err(_) => {
            eprintln!("probe_socket: '{external}' is not an IP address");
            return std::process::ExitCode::from(3);
        }
    };
    let inventory = SocketInventory {
        sockets: vec![("vm".to_string(), PathBuf::from(socket))],
        globs: Vec::new(),
    };
    let targets = match inventory.list(&[]) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("probe_socket: {e}");
            return std::process::ExitCode::from(3);
        }
    };
    let config = ProbeConfig {
        external: Some(external),
        ..ProbeConfig::default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut worst = 0;
    for target in &targets {
        let vm = probe_vm(target, &config, deadline);
        println!(
            "{} {} ({}): {}",
            vm.name,
            vm.verdict.state,
            vm.os.as_str(),
            vm.verdict.reason
        );
        for nic in &vm.nics {
            let gateway = nic
                .gateway
                .map(|g| g.to_string())
                .unwrap_or_else(|| "-".into());
            println!(
                "  nic {} gateway {gateway}: {} {}",
                nic.mac, nic.verdict.state, nic.verdict.reason
            );
        }
        if let Some(ext) = &vm.external {
            println!(
                "  external {}: {} {}",
                ext.address, ext.verdict.state, ext.verdict.reason
            );
        }
        worst = worst.max(vm.verdict.state.code());
    }
    std::process::ExitCode::from(worst)
}
