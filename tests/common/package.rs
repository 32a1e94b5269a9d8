//! The Debian package under test: built from this tree with `cargo deb` and
//! installed with `dpkg -i` once per test process, so that consumer tests
//! run the installed files, as the consumers' own users. Tests that install
//! or remove it run under the consumers lock (README, "Tests").

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const NAME: &str = "vmnetprobe";
pub const BIN: &str = "/usr/bin/vmnetprobe";
/// The monitoring plugin directory's symlink to [`BIN`] (nagios mode).
pub const PLUGIN: &str = "/usr/lib/nagios/plugins/check_vmnetprobe";
pub const PLUGIN_DIR: &str = "/usr/lib/nagios/plugins";
/// Where the package puts the plugins/ tree, as examples.
pub const EXAMPLES: &str = "/usr/share/vmnetprobe";
pub const STATE_DIR: &str = "/var/cache/vmnetprobe";
pub const GROUP: &str = "vmnetprobe";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn check(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `cargo deb` of this tree (a no-op rebuild when nothing changed); the path
/// of the .deb.
pub fn build() -> PathBuf {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let t = Instant::now();
        let out = super::run_command(
            Command::new(cargo)
                .args(["deb", "--locked"])
                .current_dir(repo()),
            Duration::from_secs(1200),
        );
        let stdout = check("cargo deb (tests/setup.sh installs cargo-deb)", &out);
        eprintln!("[timing] cargo deb: {:.1}s", t.elapsed().as_secs_f64());
        let deb = stdout
            .lines()
            .rev()
            .find(|l| l.ends_with(".deb"))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("cargo deb printed no .deb path: {stdout}"));
        assert!(deb.is_file(), "{} missing", deb.display());
        deb
    })
    .clone()
}

/// `dpkg ARGS`, waiting up to 10 minutes for a dpkg lock someone else holds
/// (a concurrent apt-get).
pub fn dpkg(args: &[&str]) -> Output {
    let until = Instant::now() + Duration::from_secs(600);
    loop {
        let out = super::run_command(
            Command::new("dpkg")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
            Duration::from_secs(300),
        );
        let locked = text(&out.stderr).contains("lock");
        if out.status.success() || !locked || Instant::now() > until {
            return out;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The version dpkg reports as installed, if any.
pub fn installed_version() -> Option<String> {
    let out = super::run_command(
        Command::new("dpkg-query").args(["-W", "-f=${db:Status-Abbrev} ${Version}", NAME]),
        Duration::from_secs(30),
    );
    let line = text(&out.stdout);
    let (status, version) = line.split_once(' ')?;
    (out.status.success() && status.starts_with("ii")).then(|| version.trim().to_string())
}

/// Builds and installs this tree's package, once per process; checks that
/// dpkg holds this version and the installed binary answers `-V`.
pub fn install() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let deb = build();
        let t = Instant::now();
        check("dpkg -i", &dpkg(&["-i", deb.to_str().expect("UTF-8 path")]));
        eprintln!("[timing] dpkg -i: {:.1}s", t.elapsed().as_secs_f64());
        let want = format!("{}-1", env!("CARGO_PKG_VERSION"));
        assert_eq!(installed_version().as_deref(), Some(want.as_str()));
        let out = super::run_command(Command::new(PLUGIN).arg("-V"), Duration::from_secs(30));
        let version = check("check_vmnetprobe -V", &out);
        assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    });
}

/// An installed example (`rel` under /usr/share/vmnetprobe), which must be
/// the file in this tree's plugins/.
pub fn installed_file(rel: &str) -> String {
    install();
    let path = Path::new(EXAMPLES).join(rel);
    let installed =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let source = std::fs::read_to_string(repo().join("plugins").join(rel)).unwrap_or_default();
    assert_eq!(
        installed,
        source,
        "{} is not this tree's plugins/{rel}",
        path.display()
    );
    installed
}

/// Adds `user` to `groups` as the README tells operators to (`usermod -aG`).
pub fn add_to_groups(user: &str, groups: &[&str]) {
    let out = super::run_command(
        Command::new("usermod").args(["-aG", &groups.join(","), user]),
        Duration::from_secs(60),
    );
    check(&format!("usermod -aG {} {user}", groups.join(",")), &out);
}
