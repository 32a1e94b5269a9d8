//! VMs given as guest agent unix sockets: `--socket NAME=PATH` and
//! `--socket-glob PATTERN` (Proxmox VE: `/var/run/qemu-server/*.qga`).

use super::{AgentConnector, ChannelState, Inventory, InventoryError, Lifecycle, VmTarget};
use crate::qga::socket::SocketTransport;
use crate::qga::{AgentError, AgentTransport};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct SocketConnector {
    pub path: PathBuf,
}

impl AgentConnector for SocketConnector {
    fn connect(&self, timeout: Duration) -> Result<Box<dyn AgentTransport>, AgentError> {
        Ok(Box::new(SocketTransport::connect(&self.path, timeout)?))
    }
}

/// Named sockets plus glob patterns, resolved when listed.
#[derive(Debug, Clone, Default)]
pub struct SocketInventory {
    pub sockets: Vec<(String, PathBuf)>,
    pub globs: Vec<String>,
}

/// Matches `name` against a shell-style pattern with `*` and `?`.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Expands a pattern whose wildcards are in the last path component. A VM's
/// name is the file stem (`101.qga` → `101`).
pub fn expand_glob(pattern: &str) -> Result<Vec<(String, PathBuf)>, InventoryError> {
    let path = Path::new(pattern);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_pattern = path
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or_else(|| InventoryError(format!("invalid socket glob '{pattern}'")))?;
    if dir.to_string_lossy().contains(['*', '?']) {
        return Err(InventoryError(format!(
            "socket glob '{pattern}': wildcards are only supported in the file name"
        )));
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| InventoryError(format!("cannot read {}: {e}", dir.display())))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if !wildcard_match(file_pattern, file_name) {
            continue;
        }
        let full = entry.path();
        let name = full
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(file_name)
            .to_string();
        found.push((name, full));
    }
    Ok(found)
}

impl Inventory for SocketInventory {
    fn list(&self, selection: &[String]) -> Result<Vec<VmTarget>, InventoryError> {
        let mut all = self.sockets.clone();
        for pattern in &self.globs {
            all.extend(expand_glob(pattern)?);
        }
        all.sort();
        // The same socket twice is one VM; the same name on two sockets is two.
        all.dedup();
        for wanted in selection {
            if !all.iter().any(|(name, _)| name == wanted) {
                return Err(InventoryError(format!("unknown VM '{wanted}'")));
            }
        }
        let mut targets: Vec<VmTarget> = all
            .into_iter()
            .filter(|(name, _)| selection.is_empty() || selection.contains(name))
            .map(|(name, path)| VmTarget {
                name,
                uuid: None,
                cloud: None,
                lifecycle: Lifecycle::Running,
                channel: ChannelState::Unknown,
                nics: Vec::new(),
                socket: Some(path.clone()),
                settings: Ok(Default::default()),
                connector: Box::new(SocketConnector { path }),
            })
            .collect();
        super::disambiguate_names(&mut targets);
        Ok(targets)
    }

    /// Only patterns can come up empty (a named socket is listed as given):
    /// a mistyped Proxmox glob must not look like a host without VMs.
    fn why_none(&self) -> Option<String> {
        if !self.sockets.is_empty() || self.globs.is_empty() {
            return None;
        }
        let patterns: Vec<String> = self.globs.iter().map(|g| format!("'{g}'")).collect();
        Some(format!("no socket matches {}", patterns.join(" or ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.qga", "101.qga"));
        assert!(wildcard_match("1?1.qga", "101.qga"));
        assert!(!wildcard_match("*.qga", "101.qmp"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("a*b", "ac"));
        assert!(wildcard_match("a*b*c", "aXbYbZc"));
    }

    #[test]
    fn glob_lists_matching_sockets_with_stems_as_names() {
        let dir = std::env::temp_dir().join(format!("vmnp-glob-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["101.qga", "102.qga", "101.qmp"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let inv = SocketInventory {
            sockets: vec![],
            globs: vec![format!("{}/*.qga", dir.display())],
        };
        let names: Vec<String> = inv.list(&[]).unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["101", "102"]);
        assert!(inv.list(&["999".into()]).is_err());
        assert_eq!(inv.list(&["102".into()]).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn two_sockets_with_one_name_are_two_vms() {
        let base = std::env::temp_dir().join(format!("vmnp-samename-{}", std::process::id()));
        for sub in ["a", "b"] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
            std::fs::write(base.join(sub).join("101.qga"), "").unwrap();
        }
        let inv = SocketInventory {
            sockets: vec![("101".into(), base.join("a/101.qga"))],
            globs: vec![
                format!("{}/a/*.qga", base.display()),
                format!("{}/b/*.qga", base.display()),
            ],
        };
        let names: Vec<String> = inv.list(&[]).unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(
            names,
            [
                format!("101 ({}/a/101.qga)", base.display()),
                format!("101 ({}/b/101.qga)", base.display())
            ]
        );
        assert_eq!(inv.list(&["101".into()]).unwrap().len(), 2);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn only_patterns_alone_explain_an_empty_list() {
        let globs = |g: &[&str]| SocketInventory {
            sockets: Vec::new(),
            globs: g.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            globs(&["/a/*.qga", "/b/*.qga"]).why_none().as_deref(),
            Some("no socket matches '/a/*.qga' or '/b/*.qga'")
        );
        assert_eq!(globs(&[]).why_none(), None);
        let mut named = globs(&["/a/*.qga"]);
        named.sockets.push(("vm1".into(), PathBuf::from("/x.sock")));
        assert_eq!(named.why_none(), None);
    }

    #[test]
    fn glob_in_directory_part_is_refused() {
        assert!(expand_glob("/run/*/x.qga").is_err());
    }
}
