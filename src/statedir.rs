//! The state directory: where vmnetprobe keeps what it learned between runs
//! (per-VM agent facts, failure streaks, shared probe results). Files are
//! replaced atomically (temp file + rename) and every read-modify-write
//! holds an exclusive lock on a separate `.lock` file, so concurrent runs
//! never see or leave a torn file.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The system-wide default (root, or a user allowed to write there).
pub const SYSTEM_STATE_DIR: &str = "/var/cache/vmnetprobe";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    path: PathBuf,
}

/// A held exclusive lock; released on drop (and by the kernel when the
/// process dies, so a crashed run never leaves a stale lock).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Whether `dir` exists (or can be created) and a file can be created in it.
fn usable(dir: &Path) -> bool {
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    let ok = File::create(&probe).is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// The per-user fallback: `$XDG_CACHE_HOME/vmnetprobe`, else
/// `$HOME/.cache/vmnetprobe`.
fn user_dir() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").and_then(absolute) {
        return Some(xdg.join("vmnetprobe"));
    }
    std::env::var_os("HOME")
        .and_then(absolute)
        .map(|home| home.join(".cache").join("vmnetprobe"))
}

impl StateDir {
    /// An explicit `--state-dir`: created if missing; an error when unusable.
    pub fn explicit(path: &Path) -> Result<StateDir, String> {
        if usable(path) {
            Ok(StateDir {
                path: path.to_path_buf(),
            })
        } else {
            Err(format!(
                "--state-dir {}: cannot create or write the directory",
                path.display()
            ))
        }
    }

    /// The default: [`SYSTEM_STATE_DIR`] when writable, else the per-user
    /// cache directory; `None` when neither works (the run then keeps no
    /// state, which only costs the savings).
    pub fn default_location() -> Option<StateDir> {
        std::iter::once(PathBuf::from(SYSTEM_STATE_DIR))
            .chain(user_dir())
            .find(|p| usable(p))
            .map(|path| StateDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the exclusive lock named `name` (a file `name.lock`), waiting
    /// at most `wait`. `None` when it could not be had in time.
    pub fn lock(&self, name: &str, wait: Duration) -> Option<StateLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.path.join(format!("{name}.lock")))
            .ok()?;
        let until = Instant::now() + wait;
        let mut delay = Duration::from_millis(2);
        loop {
            match file.try_lock() {
                Ok(()) => return Some(StateLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(_)) => return None,
            }
            let now = Instant::now();
            if now >= until {
                return None;
            }
            std::thread::sleep(delay.min(until - now));
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    /// Reads a JSON file; `None` when absent or unreadable (a damaged
    /// cache is treated as empty, never as an error).
    pub fn read<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        let text = std::fs::read(self.path.join(name)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Writes a JSON file atomically (see [`write_atomically`]).
    pub fn write<T: Serialize>(&self, name: &str, value: &T) -> std::io::Result<()> {
        let data = serde_json::to_vec(value).map_err(std::io::Error::other)?;
        write_atomically(&self.path, name, &data)
    }
}

/// Replaces `dir/name` atomically: a unique temp file in the same
/// directory (a dot name, so collectors that read `*.prom` or `*.json`
/// never see it half written), fsync, then rename over the old file.
/// The temp file is created exclusively (`O_EXCL`), so a planted symlink
/// is never followed; the rename replaces a symlink at `name` itself,
/// never its target.
pub fn write_atomically(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&temp, dir.join(name))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
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
        assert!(state.lock("a", Duration::from_millis(30)).is_none());
        assert!(state.lock("b", Duration::from_millis(10)).is_some());
        drop(held);
        assert!(state.lock("a", Duration::from_millis(10)).is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn atomic_writes_replace_a_symlink_instead_of_following_it() {
        let dir = temp_dir("symlink");
        std::fs::create_dir_all(&dir).expect("dir");
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep").expect("victim");
        std::os::unix::fs::symlink(&victim, dir.join("out.prom")).expect("symlink");
        write_atomically(&dir, "out.prom", b"new").expect("write");
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
}
