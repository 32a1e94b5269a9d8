//! The Debian package (`cargo deb`) on this machine: what it installs, what remove and
//! purge leave, and lintian's verdict. Installs and purges the package machine-wide, so
//! run it under the consumers lock, like tests/consumers.rs.

mod common;

use common::package;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn real(test: &str) -> bool {
    if !common::require_real(test) {
        return false;
    }
    let ok = ["cargo-deb", "dpkg", "lintian"].iter().all(|tool| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    let forced = std::env::var("VMNETPROBE_REAL_TESTS").as_deref() == Ok("1");
    assert!(
        ok || !forced,
        "{test}: cargo-deb, dpkg or lintian missing; run tests/setup.sh"
    );
    ok
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = common::run_command(cmd, Duration::from_secs(300));
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

fn dpkg_ok(args: &[&str]) {
    let out = package::dpkg(args);
    assert!(
        out.status.success(),
        "dpkg {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The paths of the files and symlinks in the .deb (directories left out).
fn package_files(deb: &Path) -> Vec<PathBuf> {
    let (ok, listing) = run(Command::new("dpkg-deb").arg("-c").arg(deb));
    assert!(ok, "{listing}");
    listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| PathBuf::from(p.trim_start_matches('.')))
        .collect()
}

fn gid_of(group: &str) -> Option<u32> {
    let (ok, line) = run(Command::new("getent").args(["group", group]));
    ok.then(|| line.split(':').nth(2)?.trim().parse().ok())
        .flatten()
}

#[test]
fn install_remove_purge_leave_only_what_debian_keeps() {
    if !real("package lifecycle") {
        return;
    }
    let deb = package::build();
    let files = package_files(&deb);
    let size = std::fs::metadata(&deb).unwrap().len();
    eprintln!(
        "[figure] {}: {size} bytes, {} files",
        deb.display(),
        files.len()
    );
    // Nothing in any consumer's active configuration, and no conffiles.
    assert!(files.iter().all(|f| !f.starts_with("/etc")), "{files:?}");
    for want in [
        package::BIN,
        package::PLUGIN,
        "/usr/share/man/man1/vmnetprobe.1.gz",
        "/usr/share/man/man1/vmnetprobe-nagios.1.gz",
        "/usr/share/bash-completion/completions/vmnetprobe",
        "/usr/share/zsh/vendor-completions/_vmnetprobe",
        "/usr/share/fish/vendor_completions.d/vmnetprobe.fish",
        "/usr/share/vmnetprobe/nagios/vmnetprobe-commands.cfg",
        "/usr/share/vmnetprobe/icinga2/vmnetprobe-command.conf",
        "/usr/share/vmnetprobe/zabbix/userparameter_vmnetprobe.conf",
        "/usr/share/vmnetprobe/zabbix/template_vmnetprobe.yaml",
        "/usr/share/vmnetprobe/telegraf/vmnetprobe-exec.conf",
        "/usr/share/vmnetprobe/grafana/vmnetprobe-dashboard.json",
        "/usr/share/doc/vmnetprobe/copyright",
        "/usr/share/doc/vmnetprobe/changelog.Debian.gz",
    ] {
        assert!(
            files.contains(&PathBuf::from(want)),
            "{want} not in the package"
        );
    }

    // From a clean slate.
    if package::installed_version().is_some() {
        dpkg_ok(&["-P", package::NAME]);
    }
    let _ = std::fs::remove_dir_all(package::STATE_DIR);
    // What a root run before the package leaves: root:root 0750, root's files.
    std::fs::create_dir(package::STATE_DIR).unwrap();
    std::fs::set_permissions(package::STATE_DIR, std::fs::Permissions::from_mode(0o750)).unwrap();
    let old_file = Path::new(package::STATE_DIR).join("vms.json");
    std::fs::write(&old_file, "{}").unwrap();

    // 1. Install: every file, the plugin symlink, the man page, the state directory
    //    (root's leftovers, which the group could not read, gone).
    dpkg_ok(&["-i", deb.to_str().unwrap()]);
    assert!(
        !old_file.exists(),
        "postinst kept a file the group cannot use"
    );
    for f in &files {
        assert!(
            f.symlink_metadata().is_ok(),
            "{} missing after install",
            f.display()
        );
    }
    assert_eq!(
        std::fs::read_link(package::PLUGIN).unwrap(),
        Path::new("../../../bin/vmnetprobe")
    );
    let (ok, version) = run(Command::new(package::PLUGIN).arg("--version"));
    // The package is the default (libvirt) build.
    assert!(
        ok && version.contains(&format!("{} (libvirt, sockets)", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let (ok, page) = run(Command::new("man").args(["-w", "vmnetprobe-nagios"]));
    assert!(
        ok && page.trim() == "/usr/share/man/man1/vmnetprobe-nagios.1.gz",
        "{page}"
    );
    // Man page and completions come from the current clap definitions.
    let (ok, man) = run(Command::new("zcat").arg("/usr/share/man/man1/vmnetprobe-nagios.1.gz"));
    assert!(ok && man.contains("min\\-interval"), "{man}");
    // vmnetprobe(1) ends with the operator sections, as real man sections.
    let (ok, man) = run(Command::new("zcat").arg("/usr/share/man/man1/vmnetprobe.1.gz"));
    for section in [".SH \"EXIT STATUS\"", ".SH \"FILES\"", ".SH \"EXAMPLES\""] {
        assert!(ok && man.contains(section), "{section}: {man}");
    }
    for (file, word) in [
        ("/usr/share/bash-completion/completions/vmnetprobe", "serve"),
        (
            "/usr/share/zsh/vendor-completions/_vmnetprobe",
            "--state-dir",
        ),
        (
            "/usr/share/fish/vendor_completions.d/vmnetprobe.fish",
            "prometheus",
        ),
    ] {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.contains(word), "{file} lacks {word}");
    }
    let group = gid_of(package::GROUP).expect("postinst created group vmnetprobe");
    let dir = std::fs::metadata(package::STATE_DIR).expect("postinst created the state dir");
    assert!(dir.is_dir());
    assert_eq!((dir.uid(), dir.gid()), (0, group));
    assert_eq!(dir.permissions().mode() & 0o7777, 0o2770);
    // A second configure (reinstall, upgrade) keeps it so.
    dpkg_ok(&["-i", deb.to_str().unwrap()]);
    let dir = std::fs::metadata(package::STATE_DIR).unwrap();
    assert_eq!(dir.permissions().mode() & 0o7777, 0o2770);
    // The group's own files survive a reinstall.
    let kept = Path::new(package::STATE_DIR).join("probe.json");
    std::fs::write(&kept, "{}").unwrap();
    dpkg_ok(&["-i", deb.to_str().unwrap()]);
    assert!(kept.exists(), "a reinstall dropped the group's state");

    // 2. Remove: the files go; the cache stays until purge.
    dpkg_ok(&["-r", package::NAME]);
    for f in &files {
        assert!(
            f.symlink_metadata().is_err(),
            "{} left after remove",
            f.display()
        );
    }
    assert_eq!(package::installed_version(), None);
    assert!(Path::new(package::STATE_DIR).is_dir());
    for dir in ["/usr/share/vmnetprobe", "/usr/share/doc/vmnetprobe"] {
        assert!(!Path::new(dir).exists(), "{dir} left after remove");
    }

    // 3. Purge: the state directory goes; the system group stays (Debian keeps
    //    them: files elsewhere may still belong to it).
    dpkg_ok(&["-P", package::NAME]);
    assert!(
        !Path::new(package::STATE_DIR).exists(),
        "purge left the state dir"
    );
    assert_eq!(gid_of(package::GROUP), Some(group));
    let (_, status) =
        run(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Abbrev}", package::NAME]));
    assert!(
        !status.starts_with("ii") && !status.starts_with("rc"),
        "dpkg still knows it: {status}"
    );
}

#[test]
fn lintian_reports_no_errors() {
    if !real("lintian") {
        return;
    }
    let deb = package::build();
    let (ok, report) = run(Command::new("lintian")
        .args(["--fail-on", "error"])
        .arg(&deb));
    eprintln!("[figure] lintian {}:\n{report}", deb.display());
    assert!(ok, "lintian failed:\n{report}");
    assert!(!report.lines().any(|l| l.starts_with("E:")), "{report}");
    // The synopsis is what apt lists: whole, under 80 characters, every consumer.
    let (ok, description) = run(Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&deb)
        .arg("Description"));
    let synopsis = description.lines().next().unwrap_or_default();
    assert!(ok && synopsis.len() < 80, "{description}");
    for consumer in ["Nagios", "Zabbix", "Telegraf", "Prometheus"] {
        assert!(synopsis.contains(consumer), "{consumer}: {synopsis}");
    }
    assert!(
        description.lines().count() > 2,
        "no extended description: {description}"
    );
}
