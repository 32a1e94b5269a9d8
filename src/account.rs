//! Who this process runs as, from the kernel and the system's account files
//! (read with a size bound), and the one-line fix for a missing group
//! membership: the state directory's group and libvirt's both need one.

use std::fs::File;
use std::io::Read;

/// /etc/passwd and /etc/group are small; a huge one is not read whole.
const MAX_ACCOUNT_FILE: u64 = 4 << 20;

pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// This process's effective and supplementary group ids.
pub fn process_gids() -> Vec<u32> {
    // SAFETY: getegid has no preconditions and cannot fail.
    let mut gids = vec![unsafe { libc::getegid() }];
    let status = account_lines("/proc/self/status");
    if let Some(groups) = status.iter().find_map(|l| l.strip_prefix("Groups:")) {
        gids.extend(
            groups
                .split_whitespace()
                .filter_map(|g| g.parse::<u32>().ok()),
        );
    }
    gids
}

/// Reads a small system file (/etc/passwd, /etc/group) line by line, with
/// a size bound.
fn account_lines(file: &str) -> Vec<String> {
    let mut text = String::new();
    let read = File::open(file).and_then(|f| f.take(MAX_ACCOUNT_FILE).read_to_string(&mut text));
    if read.is_err() {
        return Vec::new();
    }
    text.lines().map(str::to_string).collect()
}

/// The name of the account with numeric id `id` (field 3) in `file`.
fn account_name(file: &str, id: u32) -> Option<String> {
    account_lines(file).into_iter().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let found: u32 = fields.nth(1)?.parse().ok()?;
        (found == id && !name.is_empty()).then(|| name.to_string())
    })
}

/// Whether /etc/group lists `user` as a member of `group`.
fn is_member(file: &str, group: &str, user: &str) -> bool {
    account_lines(file).iter().any(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        fields.len() == 4 && fields[0] == group && fields[3].split(',').any(|m| m == user)
    })
}

/// The user this process runs as, by name where the account files know it.
pub fn current_user_text() -> String {
    account_name("/etc/passwd", euid()).unwrap_or_else(|| format!("uid {}", euid()))
}

/// The group named `name`'s id.
fn group_id(name: &str) -> Option<u32> {
    account_lines("/etc/group").iter().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then_some(())?;
        fields.nth(1)?.parse().ok()
    })
}

/// What this process's user must do to act with group `gid`'s rights: be
/// added to it, or, already a member, restart the service whose process
/// started before it joined.
pub fn membership_fix(gid: u32) -> String {
    match (account_name("/etc/group", gid), account_name("/etc/passwd", euid())) {
        (Some(group), Some(user)) if is_member("/etc/group", &group, &user) => format!(
            "{user} is in group {group}, but this process is not: restart the service that runs vmnetprobe"
        ),
        (Some(group), Some(user)) => {
            format!("add it to group {group} (adduser {user} {group}), then restart its service")
        }
        (group, _) => format!(
            "add this user to group {}, then restart its service",
            group.unwrap_or_else(|| gid.to_string())
        ),
    }
}

/// For a process that is not root and lacks group `name` (which exists),
/// the one line that names the user and the fix; `None` otherwise.
pub fn missing_group(name: &str) -> Option<String> {
    if euid() == 0 {
        return None;
    }
    let gid = group_id(name)?;
    if process_gids().contains(&gid) {
        return None;
    }
    Some(format!(
        "user {} lacks group {name}: {}",
        current_user_text(),
        membership_fix(gid)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_files_are_parsed_defensively() {
        let dir = std::env::temp_dir().join(format!("vmnp-accounts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let group = dir.join("group");
        std::fs::write(
            &group,
            "root:x:0:\nbroken\n:x:7:\nvmnetprobe:x:998:nagios,zabbix\nlibvirt:x:997\n",
        )
        .expect("write");
        let g = group.to_str().expect("utf-8");
        assert_eq!(account_name(g, 998).as_deref(), Some("vmnetprobe"));
        assert_eq!(account_name(g, 7), None);
        assert_eq!(account_name(g, 42), None);
        assert!(is_member(g, "vmnetprobe", "zabbix"));
        assert!(!is_member(g, "vmnetprobe", "telegraf"));
        assert!(!is_member(g, "libvirt", "nagios"));
        assert!(account_lines("/nonexistent/group").is_empty());
        assert!(!process_gids().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn root_or_a_member_needs_no_fix() {
        if euid() == 0 {
            assert_eq!(missing_group("root"), None);
        }
        assert_eq!(missing_group("no-such-group-vmnetprobe"), None);
    }
}
