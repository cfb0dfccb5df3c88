//! A per-source-address rate on identity proof checks over TCP: each proof a connection
//! presents that is not the one it already proved costs a token, so one address cannot keep
//! the broker checking proofs (and calling STS) faster than [`REFILL_PER_SEC`] after a burst
//! of [`BURST`], however many connections it opens, nor hold more than
//! [`MAX_IN_FLIGHT_PER_SOURCE`] of the broker's STS verification slots at once (so a slow STS
//! and one busy source cannot make everyone else wait).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Proof checks an address may make at once after being idle.
pub const BURST: f64 = 20.0;
/// Proof checks per second an address regains.
pub const REFILL_PER_SEC: f64 = 2.0;
/// Addresses tracked at most; when full and none is idle, new addresses are refused (fail
/// closed) until some are.
pub const MAX_SOURCES: usize = 4096;

/// Proof checks one source may have under way at once (of the broker's
/// [`super::sts::MAX_CONCURRENT_VERIFICATIONS`]).
pub const MAX_IN_FLIGHT_PER_SOURCE: usize = 2;

/// Token buckets and checks under way, per source (IPv4 address, or IPv6 /64: one host's
/// usual allocation).
#[derive(Debug, Default)]
pub struct ProofRate {
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    in_flight: Mutex<HashMap<IpAddr, usize>>,
}

/// One proof check under way for a source; dropping it frees the source's place.
#[derive(Debug)]
pub struct InFlight {
    rate: Arc<ProofRate>,
    key: IpAddr,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut in_flight = self
            .rate
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = in_flight.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&self.key);
            }
        }
    }
}

impl ProofRate {
    /// Starts one proof check for `addr`: `None` when the source already has
    /// [`MAX_IN_FLIGHT_PER_SOURCE`] under way or no token left (see [`ProofRate::allow`]).
    pub fn begin(self: &Arc<Self>, addr: IpAddr) -> Option<InFlight> {
        let key = source(addr);
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let n = in_flight.get(&key).copied().unwrap_or(0);
        // A place first: a source held back by its own checks does not also lose tokens.
        if n >= MAX_IN_FLIGHT_PER_SOURCE || !self.allow(addr) {
            return None;
        }
        in_flight.insert(key, n + 1);
        Some(InFlight {
            rate: Arc::clone(self),
            key,
        })
    }

    /// Takes one token for `addr`; `false` when it has none left.
    pub fn allow(&self, addr: IpAddr) -> bool {
        self.allow_at(addr, Instant::now())
    }

    fn allow_at(&self, addr: IpAddr, now: Instant) -> bool {
        let key = source(addr);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let refilled = |(tokens, at): (f64, Instant)| {
            (tokens + now.saturating_duration_since(at).as_secs_f64() * REFILL_PER_SEC).min(BURST)
        };
        if !buckets.contains_key(&key) && buckets.len() >= MAX_SOURCES {
            // Forget the addresses whose bucket is full again: they lose nothing.
            buckets.retain(|_, b| refilled(*b) < BURST);
            if buckets.len() >= MAX_SOURCES {
                return false;
            }
        }
        let bucket = buckets.entry(key).or_insert((BURST, now));
        let tokens = refilled(*bucket);
        if tokens < 1.0 {
            *bucket = (tokens, now);
            return false;
        }
        *bucket = (tokens - 1.0, now);
        true
    }
}

fn source(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_refill_rate_per_source() {
        let rate = ProofRate::default();
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let t0 = Instant::now();
        let allowed = (0..100).filter(|_| rate.allow_at(a, t0)).count();
        assert_eq!(allowed, BURST as usize);
        // Another address is not affected.
        assert!(rate.allow_at(b, t0));
        // One second later: REFILL_PER_SEC more.
        let t1 = t0 + Duration::from_secs(1);
        let allowed = (0..100).filter(|_| rate.allow_at(a, t1)).count();
        assert_eq!(allowed, REFILL_PER_SEC as usize);
    }

    #[test]
    fn a_source_holds_at_most_its_share_of_checks_at_once() {
        let rate = Arc::new(ProofRate::default());
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let held: Vec<_> = (0..MAX_IN_FLIGHT_PER_SOURCE)
            .map(|_| rate.begin(a).expect("a place"))
            .collect();
        assert!(rate.begin(a).is_none(), "over the per-source share");
        assert!(rate.begin(b).is_some(), "another source is not held back");
        drop(held);
        assert!(rate.begin(a).is_some(), "places come back when checks end");
        assert!(rate.in_flight.lock().unwrap().is_empty());
    }

    #[test]
    fn ipv6_hosts_share_their_64_and_the_table_is_bounded() {
        let rate = ProofRate::default();
        let t0 = Instant::now();
        let one: IpAddr = "2001:db8::1".parse().unwrap();
        let two: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let allowed = (0..100)
            .filter(|i| rate.allow_at(if i % 2 == 0 { one } else { two }, t0))
            .count();
        assert_eq!(allowed, BURST as usize);
        // Fill the table with busy sources: a new one is refused, not tracked without limit.
        let rate = ProofRate::default();
        for i in 0..MAX_SOURCES as u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(rate.allow_at(ip, t0));
        }
        assert!(!rate.allow_at("192.0.2.1".parse().unwrap(), t0));
        // Once they are idle (full again) they are forgotten and the newcomer is served.
        let later = t0 + Duration::from_secs(60);
        assert!(rate.allow_at("192.0.2.1".parse().unwrap(), later));
    }
}
