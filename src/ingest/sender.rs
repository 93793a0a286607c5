//! Who sent a request, and whether that sender may send now: the client's
//! address behind a trusted proxy, and a token bucket per address. The
//! limiter is fed the clock, so it is tested without waiting.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hyper::HeaderMap;

use crate::config::Rate;

/// Addresses the limiter remembers before it forgets the idle ones.
const SWEEP_ABOVE: usize = 10_000;
/// Addresses it remembers at most: past this (a spoofing flood), it starts
/// over rather than grow; every address then gets a full bucket again.
const MAX_TRACKED: usize = 100_000;

/// The sender of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The address rules and limits apply to.
    pub ip: IpAddr,
    /// As recorded and logged: `203.0.113.5 (via 127.0.0.1:41234)` behind a
    /// proxy, else the peer's `address:port`.
    pub shown: String,
}

/// The sender: the peer, or, when the peer is a trusted proxy, the address
/// it put last in `X-Forwarded-For` (the entries before it came from the
/// client and prove nothing), else its `X-Real-IP`.
pub fn client_of(peer: SocketAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> Client {
    let peer_ip = peer.ip().to_canonical();
    let direct = Client {
        ip: peer_ip,
        shown: peer.to_string(),
    };
    if !trusted.iter().any(|net| net.contains(&peer_ip)) {
        return direct;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()
        .or_else(|| headers.get("x-real-ip").and_then(|v| v.to_str().ok()))
        .and_then(|last| last.trim().parse::<IpAddr>().ok());
    match forwarded {
        Some(ip) => Client {
            ip: ip.to_canonical(),
            shown: format!("{ip} (via {peer})"),
        },
        None => direct,
    }
}

/// One address's bucket: tokens left when last seen.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per address: `rate.count` requests at once, refilled at
/// `rate.count` per `rate.per`.
#[derive(Debug, Default)]
pub struct PerIpRate {
    buckets: HashMap<IpAddr, Bucket>,
}

impl PerIpRate {
    /// `Ok` if `ip` may send at `now` under `rate` (and takes a token), else
    /// how long until it may.
    pub fn check(&mut self, ip: IpAddr, rate: Rate, now: Instant) -> Result<(), Duration> {
        let capacity = f64::from(rate.count);
        let per_second = capacity / rate.per.as_secs_f64().max(f64::MIN_POSITIVE);
        if self.buckets.len() >= SWEEP_ABOVE && !self.buckets.contains_key(&ip) {
            self.forget_idle(capacity, per_second, now);
        }
        let bucket = self.buckets.entry(ip).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }

    /// Drops the addresses whose buckets have refilled (they would start
    /// full anyway); starts over if that is not enough.
    fn forget_idle(&mut self, capacity: f64, per_second: f64, now: Instant) {
        self.buckets
            .retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second < capacity);
        if self.buckets.len() >= MAX_TRACKED {
            self.buckets.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// X-Forwarded-For counts only from a trusted proxy, and only its last
    /// entry; X-Real-IP when it is absent.
    #[test]
    fn client_address_behind_a_trusted_proxy() {
        let proxy: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "10.9.9.9, 203.0.113.5".parse().unwrap());
        let trusted = ["127.0.0.0/8".parse().unwrap()];
        let client = client_of(proxy, &headers, &trusted);
        assert_eq!(client.shown, "203.0.113.5 (via 127.0.0.1:41234)");
        assert_eq!(client.ip, "203.0.113.5".parse::<IpAddr>().unwrap());
        assert_eq!(client_of(proxy, &headers, &[]).shown, "127.0.0.1:41234");
        headers.insert("x-forwarded-for", "not an address".parse().unwrap());
        assert_eq!(client_of(proxy, &headers, &trusted).shown, "127.0.0.1:41234");
        headers.remove("x-forwarded-for");
        headers.insert("x-real-ip", "198.51.100.7".parse().unwrap());
        assert_eq!(
            client_of(proxy, &headers, &trusted).shown,
            "198.51.100.7 (via 127.0.0.1:41234)"
        );
    }

    /// A burst of `count` passes, the next waits for a token, and other
    /// addresses have their own buckets.
    #[test]
    fn token_bucket_per_address() {
        let rate = Rate {
            count: 2,
            per: Duration::from_secs(1),
        };
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        let mut limiter = PerIpRate::default();
        assert!(limiter.check(a, rate, start).is_ok());
        assert!(limiter.check(a, rate, start).is_ok());
        let wait = limiter.check(a, rate, start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(limiter.check(b, rate, start).is_ok(), "another address");
        assert!(limiter.check(a, rate, start + Duration::from_millis(500)).is_ok());
        assert!(limiter.check(a, rate, start + Duration::from_millis(500)).is_err());
    }

    /// Memory stays bounded: idle addresses are forgotten.
    #[test]
    fn idle_addresses_are_forgotten() {
        let rate = Rate {
            count: 1,
            per: Duration::from_secs(1),
        };
        let start = Instant::now();
        let mut limiter = PerIpRate::default();
        for n in 0..SWEEP_ABOVE as u32 {
            let _ = limiter.check(IpAddr::from(n.to_be_bytes()), rate, start);
        }
        let later = start + Duration::from_secs(2);
        let _ = limiter.check("192.0.2.1".parse().unwrap(), rate, later);
        assert_eq!(limiter.buckets.len(), 1);
    }
}
