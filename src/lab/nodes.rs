//! Lab nodes: hybrid-style `mi-` ids, a scratch directory each (pristine `home/` plus a
//! `bin/` first on PATH whose `hostname` prints the node id), and their tags.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rand::Rng;

use super::shell::ShellSpec;

/// Agent version the lab reports (four parts, as the official client requires).
pub const AGENT_VERSION: &str = "3.3.2299.0";

/// One registered node.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// `mi-` + 17 hex digits.
    pub id: String,
    /// Last octet of its 127.0.0.x address.
    pub ip_octet: u8,
    /// The node's scratch directory (holds `home/` and `bin/`).
    pub dir: PathBuf,
    /// When it registered.
    pub registered: SystemTime,
    /// Tags in insertion order; keys are unique.
    pub tags: Vec<(String, String)>,
    /// When its agent stopped answering (lab control `stop-agent`), if it did.
    pub agent_lost: Option<SystemTime>,
}

/// A node as tests and callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Managed instance id (`mi-...`).
    pub id: String,
    /// Its scratch home (HOME and starting directory of its shells).
    pub home: PathBuf,
    /// Its tags, in insertion order.
    pub tags: Vec<(String, String)>,
}

/// A fresh `mi-` id: 17 lowercase hex digits, like a hybrid activation's managed instance.
pub(crate) fn new_node_id() -> String {
    let mut rng = rand::rng();
    let digits: String = (0..17)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect();
    format!("mi-{digits}")
}

fn private_dir(p: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(p)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
}

impl Node {
    /// Creates the node's directory under `root` and returns the node.
    pub(crate) fn create(root: &Path, ip_octet: u8) -> std::io::Result<Node> {
        let id = new_node_id();
        let dir = root.join(&id);
        private_dir(&dir)?;
        private_dir(&dir.join("home"))?;
        private_dir(&dir.join("bin"))?;
        // `hostname` must identify the node, and the host's own hostname cannot be changed
        // without privileges, so a tiny script that prints the node id comes first on PATH.
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o755)
            .open(dir.join("bin").join("hostname"))?;
        writeln!(f, "#!/bin/sh\necho {id}")?;
        Ok(Node {
            id,
            ip_octet,
            dir,
            registered: SystemTime::now(),
            tags: Vec::new(),
            agent_lost: None,
        })
    }

    /// What a shell on this node is started with.
    pub(crate) fn shell_spec(&self) -> ShellSpec {
        ShellSpec {
            node_id: self.id.clone(),
            home: self.dir.join("home"),
            bin: self.dir.join("bin"),
        }
    }

    /// Public view.
    pub(crate) fn info(&self) -> NodeInfo {
        NodeInfo {
            id: self.id.clone(),
            home: self.dir.join("home"),
            tags: self.tags.clone(),
        }
    }

    /// Adds or overwrites tags.
    pub(crate) fn add_tags(&mut self, tags: Vec<(String, String)>) {
        for (k, v) in tags {
            match self.tags.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => self.tags.push((k, v)),
            }
        }
    }

    /// Removes tags by key (absent keys are fine, as in AWS).
    pub(crate) fn remove_tags(&mut self, keys: &[String]) {
        self.tags.retain(|(k, _)| !keys.contains(k));
    }
}

/// Platform name and version of the host, as a real agent reports them.
pub(crate) fn platform() -> (String, String) {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim_matches('"').to_string())
    };
    (
        field("NAME").unwrap_or_else(|| "Linux".into()),
        field("VERSION_ID").unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_look_like_managed_instances() {
        let id = new_node_id();
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("mi-"));
        assert!(
            id[3..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(id, new_node_id());
    }

    #[test]
    fn tags_overwrite_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = Node::create(dir.path(), 1).unwrap();
        n.add_tags(vec![("a".into(), "1".into()), ("b".into(), "2".into())]);
        n.add_tags(vec![("a".into(), "3".into())]);
        assert_eq!(
            n.tags,
            vec![("a".into(), "3".into()), ("b".into(), "2".into())]
        );
        n.remove_tags(&["a".into(), "zz".into()]);
        assert_eq!(n.tags, vec![("b".into(), "2".into())]);
        let out = std::process::Command::new(n.dir.join("bin/hostname"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), n.id);
    }
}
