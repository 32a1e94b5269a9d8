//! Test fixture: a real qemu-ga on a unix socket, inside a network namespace
//! the test creates, with a "router" namespace behind a veth pair that plays
//! the gateway (192.0.2.1) and the external host (198.51.100.1). Pings never
//! leave these namespaces. Torn down on drop, also when a test fails.
#![allow(dead_code)]

pub mod consumer;
pub mod line_protocol;
pub mod package;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const QEMU_GA: &str = "/usr/sbin/qemu-ga";
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The vmnetprobe binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vmnetprobe"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Whether tests against real parts can run here. With
/// VMNETPROBE_REAL_TESTS=1 (as in CI) a missing prerequisite fails the test
/// instead of skipping it.
pub fn require_real(test: &str) -> bool {
    let forced = std::env::var("VMNETPROBE_REAL_TESTS").as_deref() == Ok("1");
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root");
    }
    if !Path::new(QEMU_GA).exists() {
        missing.push("qemu-guest-agent");
    }
    if Command::new("ip").arg("-V").output().is_err() {
        missing.push("iproute2");
    }
    if missing.is_empty() {
        return true;
    }
    if forced {
        panic!(
            "{test}: VMNETPROBE_REAL_TESTS=1 but missing: {}",
            missing.join(", ")
        );
    }
    eprintln!(
        "skipped {test}: needs {} (set VMNETPROBE_REAL_TESTS=1 to require)",
        missing.join(", ")
    );
    false
}

fn wait_for_socket(socket: &Path) {
    let until = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        assert!(
            Instant::now() < until,
            "qemu-ga did not create {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Debug, Clone, Default)]
pub struct LabOptions {
    /// Passed to qemu-ga as `--block-rpcs`.
    pub block_rpcs: Option<String>,
    /// Leave the guest namespace without a default route.
    pub no_default_route: bool,
    /// A script bind-mounted over the guest's `/usr/bin/ping` (qemu-ga then
    /// runs in a mount namespace of its own): a replaced or broken binary.
    pub ping_wrapper: Option<String>,
    /// That file without exec permission: qemu-ga cannot start it
    /// ("Permission denied", as under an SELinux-confined agent).
    pub ping_not_executable: bool,
}

pub struct AgentLab {
    pub guest_ns: String,
    pub router_ns: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub gateway: IpAddr,
    pub external: IpAddr,
    /// Routed to the router, which has no route for it: pings get no reply.
    pub unreachable: IpAddr,
    pub guest_ip: IpAddr,
    agent: Option<Child>,
    /// Started by [`AgentLab::add_agents`]; killed on drop.
    more_agents: Vec<Child>,
    options: LabOptions,
}

impl AgentLab {
    pub fn start(options: LabOptions) -> AgentLab {
        let id = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let guest_ns = format!("vmnp-g-{id}");
        let router_ns = format!("vmnp-r-{id}");
        let dir = std::env::temp_dir().join(format!("vmnp-lab-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut lab = AgentLab {
            socket: dir.join("qga.sock"),
            guest_ns,
            router_ns,
            dir,
            gateway: "192.0.2.1".parse().expect("ip"),
            external: "198.51.100.1".parse().expect("ip"),
            unreachable: "203.0.113.1".parse().expect("ip"),
            guest_ip: "192.0.2.10".parse().expect("ip"),
            agent: None,
            more_agents: Vec::new(),
            options,
        };
        lab.create_network();
        lab.start_agent();
        lab
    }

    fn create_network(&self) {
        let (g, r) = (self.guest_ns.as_str(), self.router_ns.as_str());
        run("ip", &["netns", "add", g]);
        run("ip", &["netns", "add", r]);
        // Created inside the guest namespace: no interface name in the root one.
        run(
            "ip",
            &[
                "-n", g, "link", "add", "eth0", "type", "veth", "peer", "name", "up0", "netns", r,
            ],
        );
        run("ip", &["-n", g, "link", "set", "lo", "up"]);
        run(
            "ip",
            &["-n", g, "addr", "add", "192.0.2.10/24", "dev", "eth0"],
        );
        run("ip", &["-n", g, "link", "set", "eth0", "up"]);
        if !self.options.no_default_route {
            run(
                "ip",
                &["-n", g, "route", "add", "default", "via", "192.0.2.1"],
            );
        }
        run("ip", &["-n", r, "link", "set", "lo", "up"]);
        run(
            "ip",
            &["-n", r, "addr", "add", "192.0.2.1/24", "dev", "up0"],
        );
        run(
            "ip",
            &["-n", r, "addr", "add", "198.51.100.1/32", "dev", "lo"],
        );
        run("ip", &["-n", r, "link", "set", "up0", "up"]);
    }

    /// Starts qemu-ga in the guest namespace and waits for its socket.
    pub fn start_agent(&mut self) {
        let socket = self.socket.clone();
        let child = self.spawn_agent(&socket, &self.dir.clone());
        self.agent = Some(child);
        wait_for_socket(&socket);
    }

    /// Starts `count` more qemu-ga in the same guest namespace (the same
    /// network: many VMs behind one gateway) and returns their sockets,
    /// `DIR/more/vmNNN.sock`, once all exist.
    pub fn add_agents(&mut self, count: usize) -> Vec<PathBuf> {
        let base = self.dir.join("more");
        let mut sockets = Vec::new();
        for i in 0..count {
            let state = base.join(format!("vm{i:04}"));
            std::fs::create_dir_all(&state).expect("agent state dir");
            let socket = base.join(format!("vm{i:04}.sock"));
            let child = self.spawn_agent(&socket, &state);
            self.more_agents.push(child);
            sockets.push(socket);
        }
        for socket in &sockets {
            wait_for_socket(socket);
        }
        sockets
    }

    fn spawn_agent(&self, socket: &Path, state: &Path) -> Child {
        let _ = std::fs::remove_file(socket);
        let pidfile = state.join("qga.pid").to_string_lossy().into_owned();
        let mut args = vec![
            "netns".to_string(),
            "exec".into(),
            self.guest_ns.clone(),
            QEMU_GA.into(),
            "-m".into(),
            "unix-listen".into(),
            "-p".into(),
            socket.to_string_lossy().into_owned(),
            "-t".into(),
            state.to_string_lossy().into_owned(),
            "-f".into(),
            pidfile,
        ];
        if let Some(block) = &self.options.block_rpcs {
            args.push(format!("--block-rpcs={block}"));
        }
        if let Some(script) = &self.options.ping_wrapper {
            // Only qemu-ga's own mount namespace sees the fake ping; `exec`
            // keeps the agent the child we kill.
            let fake = state.join("fake-ping");
            std::fs::write(&fake, script).expect("fake ping");
            let mode = if self.options.ping_not_executable {
                "644"
            } else {
                "755"
            };
            run("chmod", &[mode, &fake.to_string_lossy()]);
            let agent: Vec<String> = args.split_off(3);
            let command = format!(
                "mount --bind {} /usr/bin/ping && exec \"$@\"",
                fake.display()
            );
            args.extend(
                [
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    &command,
                    "sh",
                ]
                .map(String::from),
            );
            args.extend(agent);
        }
        let log = std::fs::File::create(state.join("qga.log")).expect("log file");
        Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start qemu-ga")
    }

    /// Kills qemu-ga (SIGKILL) and reaps it; the socket file stays behind.
    pub fn kill_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `NAME=PATH` for `--socket`.
    pub fn socket_arg(&self, name: &str) -> String {
        format!("{name}={}", self.socket.display())
    }

    /// Runs a command inside the router namespace (to cut or restore paths).
    pub fn in_router(&self, args: &[&str]) {
        let mut full = vec!["-n", self.router_ns.as_str()];
        full.extend_from_slice(args);
        run("ip", &full);
    }

    /// Runs `ip ARGS` inside the guest namespace (bridges, routes, addresses).
    pub fn in_guest(&self, args: &[&str]) {
        let mut full = vec!["-n", self.guest_ns.as_str()];
        full.extend_from_slice(args);
        run("ip", &full);
    }

    /// The MAC of the guest's eth0.
    pub fn guest_mac(&self) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.guest_ns,
                "cat",
                "/sys/class/net/eth0/address",
            ])
            .output()
            .expect("read eth0 address");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for AgentLab {
    fn drop(&mut self) {
        self.kill_agent();
        for child in &mut self.more_agents {
            let _ = child.kill();
        }
        for child in &mut self.more_agents {
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.guest_ns])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.router_ns])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs vmnetprobe with `args`, with a hard limit so a hang fails the test.
pub fn vmnetprobe(args: &[&str]) -> Output {
    vmnetprobe_with_stdin(args, None)
}

/// Runs vmnetprobe feeding its stdin in steps, each `(pause before, bytes)`;
/// stdin is closed after the last. The same hard limit as [`vmnetprobe`].
pub fn vmnetprobe_with_stdin_steps(args: &[&str], steps: &[(Duration, &[u8])]) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vmnetprobe");
    let mut pipe = child.stdin.take().expect("stdin pipe");
    let steps: Vec<(Duration, Vec<u8>)> = steps.iter().map(|(d, b)| (*d, b.to_vec())).collect();
    let writer = std::thread::spawn(move || {
        for (pause, bytes) in steps {
            std::thread::sleep(pause);
            if pipe.write_all(&bytes).is_err() {
                return;
            }
        }
    });
    let pid = child.id().to_string();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let out = match receiver.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("vmnetprobe output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            panic!("vmnetprobe {args:?} did not finish within 60 s");
        }
    };
    let _ = writer.join();
    out
}

pub fn vmnetprobe_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    run_with_limit(cmd, stdin, &format!("vmnetprobe {args:?}"))
}

/// Runs `program` (e.g. a wrapper such as prlimit around vmnetprobe) with
/// the same hard limit.
pub fn run_limited(program: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args);
    run_with_limit(cmd, None, &format!("{program} {args:?}"))
}

/// Runs `cmd` (fed `stdin`) with the same hard limit as [`vmnetprobe`].
pub fn run_with_limit(mut cmd: Command, stdin: Option<&[u8]>, what: &str) -> Output {
    run_within(&mut cmd, stdin, what, Duration::from_secs(60))
}

/// Runs `cmd` (stdin closed, output captured) with the hard limit `limit`.
pub fn run_command(cmd: &mut Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    run_within(cmd, None, &what, limit)
}

fn run_within(cmd: &mut Command, stdin: Option<&[u8]>, what: &str, limit: Duration) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data).expect("write stdin");
    }
    let pid = child.id().to_string();
    let (sender, receiver) = std::sync::mpsc::channel();
    // Reading in a thread: a full stdout pipe must not deadlock the wait.
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(limit) {
        Ok(out) => out.expect("output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            panic!("{what} did not finish within {limit:?}");
        }
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Parses `status --json` / `zabbix` output and returns the VM named `name`.
pub fn vm<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["vms"]
        .as_array()
        .and_then(|vms| vms.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no VM {name} in {doc}"))
}
