//! Unit tests of `statedir`.

use super::*;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmnp-statedir-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn writes_are_atomic_and_reads_tolerate_damage() {
    let dir = temp_dir("rw");
    let state = StateDir::explicit(&dir).expect("usable");
    state.write("x.json", &vec![1, 2, 3]).expect("write");
    assert_eq!(state.read::<Vec<i32>>("x.json"), Some(vec![1, 2, 3]));
    let mode = std::fs::metadata(dir.join("x.json")).unwrap().mode() & 0o777;
    assert_eq!(mode, FILE_MODE);
    std::fs::write(dir.join("x.json"), "{not json").expect("damage");
    assert_eq!(state.read::<Vec<i32>>("x.json"), None);
    assert_eq!(state.read::<Vec<i32>>("missing.json"), None);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_held_lock_excludes_others_until_dropped() {
    let dir = temp_dir("lock");
    let state = StateDir::explicit(&dir).expect("usable");
    let held = state.lock("a", Duration::from_millis(10)).expect("first");
    assert_eq!(
        state.lock("a", Duration::from_millis(30)).unwrap_err(),
        LockError::Busy {
            name: "a".into(),
            waited: Duration::from_millis(30)
        }
    );
    assert!(state.lock("b", Duration::from_millis(10)).is_ok());
    drop(held);
    assert!(state.lock("a", Duration::from_millis(10)).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn atomic_writes_replace_a_symlink_instead_of_following_it() {
    let dir = temp_dir("symlink");
    std::fs::create_dir_all(&dir).expect("dir");
    let victim = dir.join("victim");
    std::fs::write(&victim, "keep").expect("victim");
    std::os::unix::fs::symlink(&victim, dir.join("out.prom")).expect("symlink");
    write_atomically(&dir, "out.prom", b"new", 0o644).expect("write");
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep");
    assert_eq!(
        std::fs::read_to_string(dir.join("out.prom")).expect("read"),
        "new"
    );
    assert!(!dir.join("out.prom").is_symlink());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unusable_explicit_dir_is_a_clear_error() {
    let e = StateDir::explicit(Path::new("/proc/vmnetprobe-cannot-exist")).unwrap_err();
    assert!(e.starts_with("--state-dir /proc/"), "{e}");
}

#[test]
fn planted_symlinks_fifos_and_huge_files_are_not_read_or_followed() {
    let dir = temp_dir("planted");
    let state = StateDir::explicit(&dir).expect("usable");
    let target = dir.join("secret");
    std::fs::write(&target, "[1]").expect("secret");
    std::os::unix::fs::symlink(&target, dir.join("link.json")).expect("symlink");
    assert_eq!(state.read::<Vec<i32>>("link.json"), None);
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.json")).expect("symlink");
    assert_eq!(state.read::<Vec<i32>>("zero.json"), None);
    let fifo =
        std::ffi::CString::new(dir.join("fifo.json").to_string_lossy().as_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let started = Instant::now();
    assert_eq!(state.read::<Vec<i32>>("fifo.json"), None);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "blocked on a FIFO"
    );
    let huge = File::create(dir.join("huge.json")).expect("huge");
    huge.set_len(MAX_FILE_BYTES + 10).expect("sparse file");
    assert_eq!(state.read::<Vec<i32>>("huge.json"), None);
    // A lock file that is a symlink is refused, its target untouched.
    std::os::unix::fs::symlink(&target, dir.join("l.lock")).expect("symlink");
    assert!(matches!(
        state.lock("l", Duration::from_millis(10)),
        Err(LockError::Unusable(_))
    ));
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "[1]");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_world_writable_dir_is_refused_and_files_are_created_0640() {
    let dir = temp_dir("modes");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::set_permissions(&dir, Permissions::from_mode(0o1777)).expect("chmod");
    let e = StateDir::explicit(&dir).unwrap_err();
    assert!(e.contains("world-writable"), "{e}");
    std::fs::set_permissions(&dir, Permissions::from_mode(0o700)).expect("chmod");
    let state = StateDir::explicit(&dir).expect("usable");
    // SAFETY: umask has no preconditions.
    let old = unsafe { libc::umask(0o077) };
    let _lock = state.lock("m", Duration::from_millis(10)).expect("lock");
    let written = state.write("m.json", &1);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    written.expect("write");
    let mode = |n: &str| std::fs::metadata(dir.join(n)).unwrap().mode() & 0o777;
    assert_eq!(mode("m.json"), FILE_MODE);
    assert_eq!(mode("m.lock"), LOCK_MODE);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn files_of_an_untrusted_owner_are_not_believed() {
    if account::euid() != 0 {
        return; // only root can give a file away
    }
    let dir = temp_dir("owner");
    let state = StateDir::explicit(&dir).expect("usable");
    state.write("o.json", &[7]).expect("write");
    assert_eq!(state.read::<Vec<i32>>("o.json"), Some(vec![7]));
    std::os::unix::fs::chown(dir.join("o.json"), Some(65534), Some(65534)).expect("chown");
    assert_eq!(state.read::<Vec<i32>>("o.json"), None);
    std::os::unix::fs::chown(&dir, Some(65534), None).expect("chown dir");
    let e = StateDir::explicit(&dir).unwrap_err();
    assert!(e.contains("owned by uid 65534"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_too_large_to_read_back_is_not_written() {
    let dir = temp_dir("toolarge");
    let state = StateDir::explicit(&dir).expect("usable");
    let big = "x".repeat(MAX_FILE_BYTES as usize);
    let e = state.write("big.json", &big).unwrap_err();
    assert!(e.to_string().contains("more than 16 MiB"), "{e}");
    assert!(!dir.join("big.json").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stale_temp_files_are_removed_and_fresh_ones_kept() {
    let dir = temp_dir("temps");
    let state = StateDir::explicit(&dir).expect("usable");
    let stale = dir.join(".v.json.1.0.tmp");
    let fresh = dir.join(".v.json.2.0.tmp");
    std::fs::write(&stale, "x").expect("stale");
    std::fs::write(&fresh, "x").expect("fresh");
    let old = SystemTime::now() - Duration::from_secs(3600);
    File::options()
        .write(true)
        .open(&stale)
        .and_then(|f| f.set_modified(old))
        .expect("backdate");
    state.write("v.json", &1).expect("write");
    assert!(!stale.exists());
    assert!(fresh.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
