//! Connection caps: a global cap (what the descriptor limit leaves after the daemon's own
//! reserve) and a cap per peer (Unix: per uid; TCP: per source address before the proof, per
//! proved identity after), so one client cannot take the descriptors everyone else needs.
//! A connection over a cap is answered at once with a short 503 and closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Descriptors kept back from connections for the daemon's own work (store, recordings,
/// logs, AWS calls: taint, StartSession, replace), however many clients connect.
pub const RESERVE: usize = 256;
/// Connections one Unix uid or one proved IAM identity may hold at once.
pub const PER_PEER: usize = 32;
/// Connections one source address may hold before (and while) proving an identity.
pub const PER_ADDRESS: usize = 64;
/// The fewest connections the global cap allows, whatever the descriptor limit.
const MIN_GLOBAL: usize = 64;

/// What a connection is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerKey {
    /// A Unix socket peer's uid.
    Uid(u32),
    /// A TCP source address, before any proof.
    Addr(IpAddr),
    /// A proved IAM identity (its ARN).
    Iam(String),
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    /// The daemon holds its global cap of connections.
    #[error("the broker holds its limit of {0} connections: try again shortly")]
    Global(usize),
    /// This peer holds its own cap.
    #[error("this peer holds its limit of {0} connections: close some first")]
    Peer(usize),
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by: HashMap<PeerKey, usize>,
}

/// The daemon's connection counts and caps (one for all listeners).
#[derive(Debug)]
pub struct Gate {
    counts: Mutex<Counts>,
    global: usize,
}

/// One admitted connection's place; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
    key: PeerKey,
    global: bool,
}

impl Gate {
    /// A gate for a process whose descriptor limit is `nofile`: [`RESERVE`] is kept back.
    pub fn for_limit(nofile: u64) -> Arc<Gate> {
        let nofile = usize::try_from(nofile).unwrap_or(usize::MAX);
        Gate::with_global(nofile.saturating_sub(RESERVE).max(MIN_GLOBAL))
    }

    /// A gate admitting at most `global` connections.
    pub fn with_global(global: usize) -> Arc<Gate> {
        Arc::new(Gate {
            counts: Mutex::default(),
            global,
        })
    }

    /// The global cap.
    pub fn global(&self) -> usize {
        self.global
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection from `key`, counted globally and for the peer.
    pub fn admit(self: &Arc<Self>, key: PeerKey) -> Result<Permit, Full> {
        self.take(key, true)
    }

    /// Counts an already admitted connection for `key` too (an identity proved on it).
    pub fn also(self: &Arc<Self>, key: PeerKey) -> Result<Permit, Full> {
        self.take(key, false)
    }

    fn take(self: &Arc<Self>, key: PeerKey, global: bool) -> Result<Permit, Full> {
        let cap = match key {
            PeerKey::Addr(_) => PER_ADDRESS,
            PeerKey::Uid(_) | PeerKey::Iam(_) => PER_PEER,
        };
        let mut c = self.lock();
        if global && c.total >= self.global {
            return Err(Full::Global(self.global));
        }
        let held = c.by.get(&key).copied().unwrap_or(0);
        if held >= cap {
            return Err(Full::Peer(cap));
        }
        c.by.insert(key.clone(), held + 1);
        if global {
            c.total += 1;
        }
        Ok(Permit {
            gate: Arc::clone(self),
            key,
            global,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.gate.lock();
        if self.global {
            c.total = c.total.saturating_sub(1);
        }
        if let Some(n) = c.by.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.by.remove(&self.key);
            }
        }
    }
}

/// What a refused connection is told before it is closed (one write, never waited on).
pub fn refusal_bytes(full: &Full) -> Vec<u8> {
    let body = format!(r#"{{"kind":"unavailable","message":"{full}"}}"#);
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Raises the soft descriptor limit to the hard one and returns the soft limit now in force
/// (logged: it sizes the global connection cap).
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the descriptor limit");
        return 1024;
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the descriptor limit");
        }
    }
    tracing::info!(
        soft_before = before,
        soft = lim.rlim_cur,
        hard = lim.rlim_max,
        "descriptor limit"
    );
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_peer_and_globally_and_free_on_drop() {
        let gate = Gate::with_global(PER_PEER + 1);
        let held: Vec<Permit> = (0..PER_PEER)
            .map(|_| gate.admit(PeerKey::Uid(1)).unwrap())
            .collect();
        assert_eq!(
            gate.admit(PeerKey::Uid(1)).unwrap_err(),
            Full::Peer(PER_PEER)
        );
        let other = gate.admit(PeerKey::Uid(2)).unwrap();
        assert_eq!(
            gate.admit(PeerKey::Uid(3)).unwrap_err(),
            Full::Global(PER_PEER + 1)
        );
        // An identity on an admitted connection counts for the identity only.
        let iam = gate.also(PeerKey::Iam("arn:x".into())).unwrap();
        assert_eq!(gate.open(), PER_PEER + 1);
        drop((held, other, iam));
        assert_eq!(gate.open(), 0);
        assert!(gate.admit(PeerKey::Uid(1)).is_ok());
    }

    #[test]
    fn the_reserve_is_kept_back() {
        assert_eq!(Gate::for_limit(1024).global(), 1024 - RESERVE);
        assert_eq!(Gate::for_limit(10).global(), MIN_GLOBAL);
    }
}
