//! A userspace UDP impairment relay, for media tests between real sockets on a machine whose
//! kernel has no `netem`: it stands between two peers on loopback and forwards their
//! datagrams with loss (random and in bursts), delay and jitter (which reorders), duplication
//! and an outage.
//!
//! Each peer is told the relay's address instead of the other's (rewrite the port of the
//! host candidate in each SDP with [`rewrite_candidate_port`]); [`Relay::route`] then names
//! the real addresses. STUN and DTLS pass untouched, so the session connects as usual; RTP
//! and RTCP (RFC 7983: first byte 128–191) are impaired. An outage drops everything, STUN
//! included, as a cut link does. Deterministic: the same seed gives the same losses.
//!
//! It also stands in for a NAT ([`Relay::rebind_facing_a`]: B's flow gets a new address
//! mid-call) and for an attacker on B's path ([`Relay::inject_to_a`]: datagrams A takes for
//! B's).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What the relay does to media datagrams (RTP and RTCP), in each direction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Impairment {
    /// Probability that a datagram is lost (0–1), each on its own.
    pub loss: f64,
    /// Bursts: every `burst_every` media datagrams, `burst_len` in a row are lost.
    pub burst_every: u32,
    /// How many datagrams a burst loses.
    pub burst_len: u32,
    /// Added one-way delay.
    pub delay: Duration,
    /// Each datagram's delay varies uniformly by up to ± this (reordering when it exceeds
    /// the gap between packets).
    pub jitter: Duration,
    /// Probability that a datagram is sent twice.
    pub duplicate: f64,
    /// Everything (STUN included) is dropped from `start` to `start + length` after the
    /// relay routed its first datagram.
    pub outage: Option<(Duration, Duration)>,
    /// Seed of the relay's pseudo-random choices.
    pub seed: u64,
}

/// What the relay did, both directions together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Datagrams sent on (duplicates included).
    pub forwarded: u64,
    /// Media datagrams lost at random or in bursts.
    pub lost: u64,
    /// Datagrams dropped during the outage.
    pub outage_dropped: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Datagrams from an address that is neither peer, dropped.
    pub strangers: u64,
}

#[derive(Default)]
struct Counters {
    forwarded: AtomicU64,
    lost: AtomicU64,
    outage_dropped: AtomicU64,
    duplicated: AtomicU64,
    strangers: AtomicU64,
}

/// The relay: two sockets on 127.0.0.1, one facing each peer, and the tasks that forward
/// between them. Dropping it stops them.
pub struct Relay {
    facing_a: SocketAddr,
    facing_b: SocketAddr,
    /// The socket facing A (replaced by [`rebind_facing_a`](Relay::rebind_facing_a)).
    socket_a: Arc<Mutex<Arc<UdpSocket>>>,
    shared: Arc<RelayShared>,
    /// Receiving from A, receiving from B, sending.
    tasks: [tokio::task::JoinHandle<()>; 3],
}

/// What the relay's tasks share.
struct RelayShared {
    route: Mutex<Option<(SocketAddr, SocketAddr)>>,
    counters: Counters,
    queue: Mutex<BinaryHeap<Reverse<Due>>>,
    wake: Notify,
    shaper: Mutex<Shaper>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("facing_a", &self.facing_a)
            .field("facing_b", &self.facing_b)
            .finish_non_exhaustive()
    }
}

/// A datagram waiting for its time.
struct Due {
    at: Instant,
    order: u64,
    to_b: bool,
    bytes: Vec<u8>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// xorshift64*: small, seeded, good enough for loss patterns.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The part of the relay that decides each datagram's fate.
struct Shaper {
    impairment: Impairment,
    rng: Rng,
    media_seen: u64,
    started: Option<Instant>,
    order: u64,
}

impl Shaper {
    /// When to send `bytes` (none: dropped), and whether a copy goes too.
    fn decide(&mut self, bytes: &[u8], now: Instant, counters: &Counters) -> Vec<Instant> {
        let started = *self.started.get_or_insert(now);
        if let Some((start, length)) = self.impairment.outage {
            let since = now - started;
            if since >= start && since < start + length {
                counters.outage_dropped.fetch_add(1, Ordering::Relaxed);
                return Vec::new();
            }
        }
        let media = matches!(bytes.first(), Some(128..=191));
        if !media {
            return vec![now];
        }
        self.media_seen += 1;
        let i = &self.impairment;
        let in_burst = i.burst_every > 0
            && (self.media_seen % u64::from(i.burst_every)) < u64::from(i.burst_len);
        if in_burst || self.rng.next_f64() < i.loss {
            counters.lost.fetch_add(1, Ordering::Relaxed);
            return Vec::new();
        }
        let jitter = i.jitter.as_secs_f64() * (2.0 * self.rng.next_f64() - 1.0);
        let delay = (i.delay.as_secs_f64() + jitter).max(0.0);
        let at = now + Duration::from_secs_f64(delay);
        if self.rng.next_f64() < i.duplicate {
            counters.duplicated.fetch_add(1, Ordering::Relaxed);
            return vec![at, at + Duration::from_millis(1)];
        }
        vec![at]
    }
}

impl Relay {
    /// Binds the two sockets (127.0.0.1, ephemeral ports) and starts forwarding once
    /// [`route`](Self::route) names the peers.
    pub async fn start(impairment: Impairment) -> std::io::Result<Relay> {
        let socket_a = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let socket_b = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let (facing_a, facing_b) = (socket_a.local_addr()?, socket_b.local_addr()?);
        let shared = Arc::new(RelayShared {
            route: Mutex::new(None),
            counters: Counters::default(),
            queue: Mutex::new(BinaryHeap::new()),
            wake: Notify::new(),
            shaper: Mutex::new(Shaper {
                rng: Rng(impairment.seed | 1),
                impairment,
                media_seen: 0,
                started: None,
                order: 0,
            }),
        });
        let receive_a = receive(socket_a.clone(), true, shared.clone());
        let receive_b = receive(socket_b.clone(), false, shared.clone());
        let socket_a = Arc::new(Mutex::new(socket_a));
        let send = tokio::spawn(send(socket_a.clone(), socket_b, shared.clone()));
        Ok(Relay {
            facing_a,
            facing_b,
            socket_a,
            shared,
            tasks: [receive_a, receive_b, send],
        })
    }

    /// Replaces the socket facing A with a new one, as when B's NAT gives B's flow a new
    /// mapping: A now gets B's datagrams from another address (returned), and what A sends to
    /// the old one is lost (that socket is closed).
    pub async fn rebind_facing_a(&mut self) -> std::io::Result<SocketAddr> {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let at = socket.local_addr()?;
        let receiving = receive(socket.clone(), true, self.shared.clone());
        std::mem::replace(&mut self.tasks[0], receiving).abort();
        *self.socket_a.lock().unwrap() = socket;
        self.facing_a = at;
        Ok(at)
    }

    /// Sends `datagram` to A from the socket facing it, so that A takes it for one of B's:
    /// what an attacker on B's path (or spoofing B's address) can send.
    pub async fn inject_to_a(&self, datagram: &[u8]) -> std::io::Result<()> {
        let Some((a, _)) = *self.shared.route.lock().unwrap() else {
            return Err(std::io::Error::other("no route yet"));
        };
        let socket = self.socket_a.lock().unwrap().clone();
        socket.send_to(datagram, a).await.map(|_| ())
    }

    /// The address peer A must send to (it stands for B).
    pub fn facing_a(&self) -> SocketAddr {
        self.facing_a
    }

    /// The address peer B must send to (it stands for A).
    pub fn facing_b(&self) -> SocketAddr {
        self.facing_b
    }

    /// The peers' real addresses: datagrams from `a` go to `b` and back.
    pub fn route(&self, a: SocketAddr, b: SocketAddr) {
        *self.shared.route.lock().unwrap() = Some((a, b));
    }

    /// What the relay did so far.
    pub fn stats(&self) -> RelayStats {
        let c = &self.shared.counters;
        RelayStats {
            forwarded: c.forwarded.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            outage_dropped: c.outage_dropped.load(Ordering::Relaxed),
            duplicated: c.duplicated.load(Ordering::Relaxed),
            strangers: c.strangers.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Receives from one peer's side and queues each datagram at the time its fate says.
fn receive(
    socket: Arc<UdpSocket>,
    from_a: bool,
    shared: Arc<RelayShared>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Some((a, b)) = *shared.route.lock().unwrap() else {
                continue;
            };
            if from != if from_a { a } else { b } {
                shared.counters.strangers.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let now = Instant::now();
            let mut shaper = shared.shaper.lock().unwrap();
            let times = shaper.decide(&buf[..n], now, &shared.counters);
            let mut queue = shared.queue.lock().unwrap();
            for at in times {
                shaper.order += 1;
                queue.push(Reverse(Due {
                    at,
                    order: shaper.order,
                    to_b: from_a,
                    bytes: buf[..n].to_vec(),
                }));
            }
            shared.wake.notify_one();
        }
    })
}

/// The sender: datagrams leave in order of their due time, from the socket facing their
/// destination (so each peer sees the relay's address it was given).
async fn send(
    socket_a: Arc<Mutex<Arc<UdpSocket>>>,
    socket_b: Arc<UdpSocket>,
    shared: Arc<RelayShared>,
) {
    loop {
        let next = shared.queue.lock().unwrap().peek().map(|d| d.0.at);
        match next {
            None => shared.wake.notified().await,
            Some(at) if at > Instant::now() => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = shared.wake.notified() => {}
                }
            }
            Some(_) => {
                let Some(Reverse(due)) = shared.queue.lock().unwrap().pop() else {
                    continue;
                };
                let Some((a, b)) = *shared.route.lock().unwrap() else {
                    continue;
                };
                let (socket, to) = if due.to_b {
                    (socket_b.clone(), b)
                } else {
                    (socket_a.lock().unwrap().clone(), a)
                };
                if socket.send_to(&due.bytes, to).await.is_ok() {
                    shared.counters.forwarded.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// The address of the first UDP host candidate on 127.0.0.1 in `sdp`.
pub fn host_candidate(sdp: &str) -> Option<SocketAddr> {
    sdp.lines().find_map(|line| {
        let fields: Vec<&str> = line.trim().split(' ').collect();
        (line.starts_with("a=candidate:")
            && fields.len() >= 8
            && fields[2].eq_ignore_ascii_case("udp")
            && fields[4] == "127.0.0.1"
            && fields[7] == "host")
            .then(|| format!("{}:{}", fields[4], fields[5]).parse().ok())
            .flatten()
    })
}

/// `sdp` with every candidate at `from` advertised at `to` instead.
pub fn rewrite_candidate_port(sdp: &str, from: SocketAddr, to: SocketAddr) -> String {
    sdp.replace(
        &format!(" {} {} typ", from.ip(), from.port()),
        &format!(" {} {} typ", to.ip(), to.port()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaper(impairment: Impairment) -> Shaper {
        Shaper {
            rng: Rng(impairment.seed | 1),
            impairment,
            media_seen: 0,
            started: None,
            order: 0,
        }
    }

    #[test]
    fn bursts_and_random_loss_take_what_they_say() {
        let counters = Counters::default();
        let now = Instant::now();
        let mut bursts = shaper(Impairment {
            burst_every: 50,
            burst_len: 3,
            ..Impairment::default()
        });
        let kept = (0..1000)
            .filter(|_| !bursts.decide(&[0x80, 111], now, &counters).is_empty())
            .count();
        assert_eq!(kept, 1000 - 60);
        let mut random = shaper(Impairment {
            loss: 0.1,
            seed: 7,
            ..Impairment::default()
        });
        let lost = (0..10_000)
            .filter(|_| random.decide(&[0x80, 111], now, &counters).is_empty())
            .count();
        assert!((900..1100).contains(&lost), "{lost}");
        // STUN (first byte 0) is never lost.
        assert!(!random.decide(&[0x00, 0x01], now, &counters).is_empty());
    }

    #[test]
    fn the_outage_drops_everything_in_its_window() {
        let counters = Counters::default();
        let t0 = Instant::now();
        let mut s = shaper(Impairment {
            outage: Some((Duration::from_secs(1), Duration::from_secs(2))),
            ..Impairment::default()
        });
        assert!(!s.decide(&[0x00], t0, &counters).is_empty());
        assert!(
            s.decide(&[0x00], t0 + Duration::from_millis(1500), &counters)
                .is_empty()
        );
        assert!(
            s.decide(&[0x80], t0 + Duration::from_millis(2900), &counters)
                .is_empty()
        );
        assert!(
            !s.decide(&[0x80], t0 + Duration::from_secs(3), &counters)
                .is_empty()
        );
    }

    #[test]
    fn candidates_are_found_and_rewritten() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n";
        let at: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        assert_eq!(host_candidate(sdp), Some(at));
        let moved = rewrite_candidate_port(sdp, at, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(
            host_candidate(&moved),
            Some("127.0.0.1:40000".parse().unwrap())
        );
    }
}
