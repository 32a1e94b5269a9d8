//! The state directory: where vmnetprobe keeps what it learned between runs
//! (per-VM agent facts, failure streaks, shared probe results). Files are
//! replaced atomically (temp file + rename) and every read-modify-write
//! holds an exclusive lock on a separate `.lock` file, so concurrent runs
//! never see or leave a torn file.
//!
//! The directory is untrusted input: whoever can write it could plant
//! symlinks, FIFOs, device links or endless files for a root run to open.
//! So the directory must not be world-writable and must belong to root or
//! to us; every file is opened with `O_NOFOLLOW | O_NONBLOCK` (new ones
//! with `O_EXCL`), must be a regular file owned by a trusted user, and is
//! read only up to [`MAX_FILE_BYTES`]. Files are created 0640 (locks 0660)
//! whatever the umask.
//!
//! The Debian package creates [`SYSTEM_STATE_DIR`] as `root:vmnetprobe`
//! 2770, shared by the monitoring users in that group. When it belongs to a
//! group and this process cannot use it (the Debian `zabbix` user, never
//! added), the run stops with one line naming the fix instead of quietly
//! keeping a private state that no other consumer shares.

use crate::account;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// The system-wide default (root, or a user allowed to write there).
pub const SYSTEM_STATE_DIR: &str = "/var/cache/vmnetprobe";
/// The largest state file read; the per-VM file is capped well below.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Mode of state files and of lock files (shared by a group of users).
const FILE_MODE: u32 = 0o640;
const LOCK_MODE: u32 = 0o660;
const DIR_MODE: u32 = 0o750;
/// Temp files older than this were left by a run that died mid-write.
const STALE_TEMP: Duration = Duration::from_secs(60);
/// /etc/passwd and /etc/group are read up to this size.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    path: PathBuf,
    /// Owner and group of the directory, and whether its group may write:
    /// files of that group are then trusted too (a shared directory).
    gid: u32,
    group_shared: bool,
}

/// A held exclusive lock; released on drop (and by the kernel when the
/// process dies, so a crashed run never leaves a stale lock).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// Why a lock could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockError {
    /// Another run held it for the whole wait.
    Busy { name: String, waited: Duration },
    /// The lock file cannot be used (permissions, foreign owner, not a file).
    Unusable(String),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Busy { name, waited } => write!(
                f,
                "{name}.lock held by another run for over {}",
                humantime::format_duration(*waited)
            ),
            LockError::Unusable(why) => f.write_str(why),
        }
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `O_NOFOLLOW`: a symlink planted at the name is an error, never followed;
/// `O_NONBLOCK`: opening a FIFO does not wait for a writer.
fn guarded(options: &mut OpenOptions) -> &mut OpenOptions {
    options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
}

fn invalid(text: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, text)
}

/// Creates `dir` (0750 whatever the umask) if missing and checks that it
/// is a directory only trusted users can write.
fn check_dir(dir: &Path) -> Result<StateDir, String> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|e| format!("cannot create the directory: {e}"))?;
        let _ = std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE));
    }
    let meta = std::fs::metadata(dir).map_err(|e| format!("cannot read the directory: {e}"))?;
    if !meta.is_dir() {
        return Err("not a directory".into());
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(format!(
            "world-writable (mode {mode:o}): anyone could plant files there"
        ));
    }
    if meta.uid() != 0 && meta.uid() != account::euid() {
        return Err(format!(
            "owned by uid {}, neither root nor this user",
            meta.uid()
        ));
    }
    let state = StateDir {
        path: dir.to_path_buf(),
        gid: meta.gid(),
        group_shared: mode & 0o020 != 0,
    };
    // A file can be created in it.
    let probe = dir.join(format!(
        ".probe-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let created = guarded(OpenOptions::new().write(true).create_new(true)).open(&probe);
    let _ = std::fs::remove_file(&probe);
    created.map_err(|e| format!("cannot create files in the directory: {e}"))?;
    Ok(state)
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
    /// An explicit `--state-dir`: created if missing; an error when unusable
    /// or unsafe.
    pub fn explicit(path: &Path) -> Result<StateDir, String> {
        check_dir(path).map_err(|why| format!("--state-dir {}: {why}", path.display()))
    }

    /// The default: [`SYSTEM_STATE_DIR`] when usable; an error naming the
    /// fix when it belongs to a group (it is meant to be shared) and this
    /// process cannot use it; else the per-user cache directory, or `None`
    /// when that fails too (the run then keeps no state, which only costs
    /// the savings).
    pub fn default_location() -> Result<Option<StateDir>, String> {
        let system = Path::new(SYSTEM_STATE_DIR);
        let why = match check_dir(system) {
            Ok(state) => return Ok(Some(state)),
            Err(why) => why,
        };
        // Root's own directory (no package) is not shared: the user's
        // cache is the right place then.
        if let Ok(meta) = std::fs::symlink_metadata(system) {
            if meta.is_dir() && meta.gid() != 0 {
                return Err(shared_dir_error(system, &meta, &why));
            }
        }
        Ok(user_dir().and_then(|p| check_dir(&p).ok()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a file in the directory may be believed: root's, ours, or
    /// (in a group-writable directory) one of the directory's group.
    fn trusted(&self, meta: &std::fs::Metadata) -> Result<(), String> {
        let uid = meta.uid();
        if uid == 0 || uid == account::euid() || (self.group_shared && meta.gid() == self.gid) {
            Ok(())
        } else {
            Err(format!("owned by uid {uid}, not a trusted user"))
        }
    }

    /// Opens an existing file of the directory for reading, refusing
    /// symlinks, anything but a regular file, and untrusted owners.
    fn open_existing(&self, name: &str, write: bool) -> std::io::Result<File> {
        let file =
            guarded(OpenOptions::new().read(true).write(write)).open(self.path.join(name))?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(invalid(format!("{name} is not a regular file")));
        }
        self.trusted(&meta)
            .map_err(|why| invalid(format!("{name} is {why}")))?;
        Ok(file)
    }

    /// Takes the exclusive lock named `name` (a file `name.lock`), waiting
    /// at most `wait`.
    pub fn lock(&self, name: &str, wait: Duration) -> Result<StateLock, LockError> {
        let file_name = format!("{name}.lock");
        let unusable =
            |e: std::io::Error| LockError::Unusable(format!("cannot use {file_name}: {e}"));
        let created = guarded(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(LOCK_MODE),
        )
        .open(self.path.join(&file_name));
        let file = match created {
            Ok(file) => {
                let _ = file.set_permissions(Permissions::from_mode(LOCK_MODE));
                file
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                self.open_existing(&file_name, false).map_err(unusable)?
            }
            Err(e) => return Err(unusable(e)),
        };
        let until = Instant::now() + wait;
        let mut delay = Duration::from_millis(2);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(StateLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(unusable(e)),
            }
            let now = Instant::now();
            if now >= until {
                return Err(LockError::Busy {
                    name: name.to_string(),
                    waited: wait,
                });
            }
            std::thread::sleep(delay.min(until - now));
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    /// Reads a JSON file; `None` when absent, unsafe, larger than
    /// [`MAX_FILE_BYTES`] or damaged (a bad cache is treated as empty,
    /// never as an error).
    pub fn read<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        let file = self.open_existing(name, false).ok()?;
        let mut data = Vec::new();
        file.take(MAX_FILE_BYTES + 1).read_to_end(&mut data).ok()?;
        if data.len() as u64 > MAX_FILE_BYTES {
            return None;
        }
        serde_json::from_slice(&data).ok()
    }

    /// Writes a JSON file atomically (see [`write_atomically`]), 0640,
    /// and removes temp files that runs which died mid-write left behind.
    pub fn write<T: Serialize>(&self, name: &str, value: &T) -> std::io::Result<()> {
        let data = serde_json::to_vec(value).map_err(std::io::Error::other)?;
        // A file too large to be read back would lose its content unseen.
        if data.len() as u64 > MAX_FILE_BYTES {
            return Err(invalid(format!(
                "{name} would be {} bytes, more than {} MiB",
                data.len(),
                MAX_FILE_BYTES / (1024 * 1024)
            )));
        }
        self.remove_stale_temps(name);
        write_atomically(&self.path, name, &data, FILE_MODE)
    }

    fn remove_stale_temps(&self, name: &str) {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return;
        };
        let prefix = format!(".{name}.");
        let now = SystemTime::now();
        for entry in entries.flatten().take(10_000) {
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            if !file_name.starts_with(&prefix) || !file_name.ends_with(".tmp") {
                continue;
            }
            // lstat: a symlink is removed itself, never followed.
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > STALE_TEMP);
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Replaces `dir/name` atomically: a unique temp file in the same
/// directory (a dot name, so collectors that read `*.prom` or `*.json`
/// never see it half written), with `mode` whatever the umask, fsync,
/// then rename over the old file. The temp file is created exclusively
/// (`O_EXCL | O_NOFOLLOW`), so a planted symlink is never followed; the
/// rename replaces a symlink at `name` itself, never its target.
pub fn write_atomically(dir: &Path, name: &str, data: &[u8], mode: u32) -> std::io::Result<()> {
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file =
            guarded(OpenOptions::new().write(true).create_new(true).mode(mode)).open(&temp)?;
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&temp, dir.join(name))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// The one line for a shared state directory this process cannot use:
/// for a missing group membership, which user, which group and the command
/// that fixes it; otherwise what is wrong with the directory.
fn shared_dir_error(dir: &Path, meta: &std::fs::Metadata, why: &str) -> String {
    let tail = "; or pass --state-dir DIR or --no-state";
    let writable_by_group = meta.mode() & 0o020 != 0;
    if !writable_by_group
        || meta.uid() == account::euid()
        || account::process_gids().contains(&meta.gid())
    {
        return format!("state directory {}: {why}{tail}", dir.display());
    }
    let head = format!(
        "state directory {} is not writable by user {}",
        dir.display(),
        account::current_user_text()
    );
    let fix = account::membership_fix(meta.gid());
    format!("{head}: {fix}{tail}")
}

#[cfg(test)]
mod tests;
