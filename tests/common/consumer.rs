//! Helpers for tests that start real consumers (tests/consumers.rs,
//! tests/prometheus.rs): the gate, scratch dirs, free ports, daemons
//! stopped by PID, curl, shipped plugin files.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary the shipped Zabbix, Telegraf and Prometheus files run (the package's).
pub const SHIPPED_BIN: &str = super::package::BIN;
/// The placeholder external address in the shipped files; tests replace it.
pub const SHIPPED_EXTERNAL: &str = "--external 192.0.2.1";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A shipped file as the package installed it (see [`super::package::installed_file`]):
/// what the consumer tests configure their consumers with.
pub fn shipped(rel: &str) -> String {
    super::package::installed_file(rel)
}

pub fn plugin_file(rel: &str) -> String {
    let path = repo().join("plugins").join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

pub fn timing(what: &str, since: Instant) {
    eprintln!("[timing] {what}: {:.2}s", since.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------
// Gate, scratch dirs, ports, processes.

/// Whether this consumer test can run: the agent lab's prerequisites (tests/common) and
/// the consumer's tools. With VMNETPROBE_REAL_TESTS=1 anything missing is a failure;
/// otherwise the test is skipped with a note.
pub fn real(test: &str, tools: &[&str]) -> bool {
    if !super::require_real(test) {
        return false;
    }
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        // The package under test is built, installed and used as the consumers' users.
        .chain(["cargo-deb", "dpkg", "usermod", "setpriv"])
        .filter(|tool| {
            if tool.starts_with('/') {
                !Path::new(tool).exists()
            } else {
                !Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            }
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let forced = std::env::var("VMNETPROBE_REAL_TESTS").as_deref() == Ok("1");
    assert!(
        !forced,
        "{test}: VMNETPROBE_REAL_TESTS=1 but missing {missing:?}; run tests/consumers/install.sh"
    );
    eprintln!("skipped {test}: missing {missing:?} (tests/consumers/install.sh installs them)");
    false
}

/// A fresh `mktemp -d`, removed when the test passed, kept (and named) when it failed.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let out =
            run_ok(Command::new("mktemp").args(["-d", &format!("/tmp/vmnetprobe-{tag}.XXXXXX")]));
        let dir = PathBuf::from(out.trim());
        // Consumers that drop privileges (postgres) must be able to traverse it.
        run_ok(Command::new("chmod").arg("755").arg(&dir));
        Scratch(dir)
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
    pub fn s(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        if let Some(dir) = p.parent() {
            fs::create_dir_all(dir).unwrap();
        }
        fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept for inspection: {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

pub fn free_port() -> u16 {
    // Bind-and-release on 127.0.0.1; the consumer binds it right after.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free port below 32768: Zabbix only accepts ListenPort 1024-32767, and the kernel
/// hands out ephemeral ports above that.
pub fn free_low_port() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let seed = (std::process::id() as u64) << 32 ^ nanos as u64;
    let mut n = seed;
    for _ in 0..200 {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = 20000 + (n >> 33) as u16 % 12000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-31999");
}

/// Runs `cmd` to completion within 5 minutes (a schema load is the slowest).
pub fn run_ok(cmd: &mut Command) -> String {
    let out = super::run_command(cmd, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sh(script: &str) -> String {
    run_ok(Command::new("sh").args(["-ec", script]))
}

/// Single-quote for sh.
pub fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A daemon started in the foreground; SIGTERM to its PID on drop, then waited for.
pub struct Daemon {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(name: &str, cmd: &mut Command, log: PathBuf) -> Daemon {
        let out = fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Daemon {
            name: name.into(),
            child,
            log,
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early ({status}):\n{}", self.name, self.log());
        }
    }

    /// SIGTERM, wait up to 15 s; returns how long it took.
    pub fn stop(&mut self) -> Duration {
        let t = Instant::now();
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg(self.child.id().to_string())
                .status();
            while t.elapsed() < Duration::from_secs(15) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return t.elapsed();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        t.elapsed()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `f` every 100 ms until it gives a value or `limit` passes.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// curl; returns (HTTP status, body).
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Replaces the binary path and the placeholder external address of a shipped file.
pub fn localize(shipped: &str, bin: &Path, external: &str) -> String {
    assert!(
        shipped.contains(SHIPPED_BIN),
        "shipped file no longer uses {SHIPPED_BIN}"
    );
    shipped
        .replace(SHIPPED_BIN, &bin.display().to_string())
        .replace(SHIPPED_EXTERNAL, external)
}
