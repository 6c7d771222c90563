//! `appmedia loadtest --transport rtp|webrtc|webrtc-port`: every call's bot pipeline talks
//! to its synthetic remote party over a real pair of sessions on loopback, so the measured
//! capacity includes sockets (and, for WebRTC, DTLS-SRTP encryption). With `webrtc-port` the
//! bot's sessions share one `MediaPort` (one socket, one driver thread) and the remote
//! parties keep a `MediaSession` each.
//!
//! Both ends of every pair live on one tokio runtime whose threads are named
//! [`NET_THREAD`], so the run can split the process's CPU into the transport's share
//! (those threads) and the media core's (the scheduler's workers), from the per-thread
//! counters in `/proc/self/task/*/stat`.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use appmedia_media::pipeline::CallPipeline;
use appmedia_transport::{
    MediaPort, MediaSession, PlainRtpConfig, PlainRtpSession, RtpEndpoint, SessionStats,
    TransportConfig, WebRtcSession,
};
use serde_json::json;

use super::far_end::FarEnd;
use super::{BotMode, LoadtestError};

/// Name of the transport runtime's threads (`/proc` keeps 15 bytes of a thread name).
pub(super) const NET_THREAD: &str = "lt-net";
/// Name prefix of a media port's driver thread (transport work, like [`NET_THREAD`]).
pub(super) const PORT_THREAD: &str = "appmedia-port";
/// Name prefix of the media scheduler's worker threads, as `/proc` shows it.
pub(super) const MEDIA_THREAD: &str = "appmedia-media";
/// Pairs set up at once: enough to overlap handshakes, few enough that a loaded host
/// does not push the later ones past their connect timeout.
const SETUP_BATCH: usize = 16;
/// How long the sessions get after the calls stop, so packets in flight land before
/// the totals are read.
const SETTLE: Duration = Duration::from_millis(200);

/// What carries each call's audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// In-process: the remote party's packets go straight into the pipeline.
    None,
    /// A pair of plain-RTP sessions (bare UDP, no encryption) on 127.0.0.1.
    Rtp,
    /// A pair of WebRTC sessions on loopback: offer/answer through the blob, ICE, DTLS-SRTP.
    Webrtc,
    /// As `webrtc`, with every bot session on one shared media port (one UDP socket for
    /// every call, sessions on the sans-IO core driven by the port's thread).
    WebrtcPort,
}

impl Transport {
    pub(super) fn name(self) -> &'static str {
        match self {
            Transport::None => "none",
            Transport::Rtp => "rtp",
            Transport::Webrtc => "webrtc",
            Transport::WebrtcPort => "webrtc-port",
        }
    }
}

/// One call's two sessions: the bot's (attached to its pipeline) and the remote party's.
enum Pair {
    Rtp {
        bot: PlainRtpSession,
        remote: PlainRtpSession,
    },
    /// The bot's session (its own, or on the shared port) and the remote's, both here.
    // Boxed: a MediaSession is several hundred bytes, a plain one a few dozen.
    Webrtc {
        bot: Box<WebRtcSession>,
        remote: Box<MediaSession>,
    },
    /// The bot's session here, the remote's in the far-end process.
    Far { bot: Box<WebRtcSession> },
}

/// The sessions of every call, and the runtime they run on.
pub(super) struct Wire {
    runtime: tokio::runtime::Runtime,
    pairs: Vec<Pair>,
    /// The bot's shared port (`webrtc-port`); dropped after its sessions.
    port: Option<std::sync::Arc<MediaPort>>,
    /// The far-end process (`--far-end process`).
    far_end: Option<FarEnd>,
    transport: Transport,
    setup: Duration,
}

impl Wire {
    /// Sets up `calls` connected pairs on a runtime of `threads` threads. Bounded: each
    /// WebRTC pair must connect within `connect_timeout`, or the run fails naming it.
    pub(super) fn connect(
        transport: Transport,
        calls: usize,
        threads: usize,
        connect_timeout: Duration,
        far_end: Option<BotMode>,
        port_sockets: usize,
    ) -> Result<Self, LoadtestError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(NET_THREAD)
            .enable_all()
            .build()
            .map_err(|e| LoadtestError::Transport(format!("cannot start its runtime: {e}")))?;
        let t0 = Instant::now();
        let port = match transport {
            Transport::WebrtcPort => Some(std::sync::Arc::new(
                MediaPort::bind_reuseport(&TransportConfig::default(), 0, port_sockets)
                    .map_err(|e| LoadtestError::Transport(format!("media port: {e}")))?,
            )),
            _ => None,
        };
        if let Some(mode) = far_end {
            let mut far = FarEnd::spawn(mode, connect_timeout)?;
            let pairs =
                runtime.block_on(far_pairs(&mut far, port.as_deref(), calls, connect_timeout))?;
            return Ok(Self {
                runtime,
                pairs,
                port,
                far_end: Some(far),
                transport,
                setup: t0.elapsed(),
            });
        }
        let pairs = runtime.block_on(async {
            let mut pairs = Vec::with_capacity(calls);
            let mut next = 0;
            while next < calls {
                let batch = (calls - next).min(SETUP_BATCH);
                let mut set = tokio::task::JoinSet::new();
                for index in next..next + batch {
                    let port = port.clone();
                    set.spawn(async move {
                        let pair = match transport {
                            Transport::Rtp => rtp_pair().await,
                            _ => webrtc_pair(port.as_deref(), connect_timeout).await,
                        };
                        (index, pair)
                    });
                }
                let mut done = Vec::with_capacity(batch);
                while let Some(joined) = set.join_next().await {
                    let (index, pair) = joined.map_err(|e| {
                        LoadtestError::Transport(format!("a session setup task failed: {e}"))
                    })?;
                    let pair = pair.map_err(|what| {
                        LoadtestError::Transport(format!("call {index}: {what}"))
                    })?;
                    done.push((index, pair));
                }
                done.sort_by_key(|(index, _)| *index);
                pairs.extend(done.into_iter().map(|(_, pair)| pair));
                next += batch;
            }
            Ok::<_, LoadtestError>(pairs)
        })?;
        Ok(Self {
            runtime,
            pairs,
            port,
            far_end: None,
            transport,
            setup: t0.elapsed(),
        })
    }

    /// The RFC 6464 extension id the bot's pipeline and the remote party must use on
    /// call `index` (`None`: use the in-process default).
    pub(super) fn audio_level_ext_id(&self, index: usize) -> Option<u8> {
        match self.pairs.get(index)? {
            Pair::Rtp { .. } => None,
            Pair::Webrtc { bot, .. } => bot.audio_level_extension_id(),
            Pair::Far { bot } => bot.audio_level_extension_id(),
        }
    }

    /// Connects call `index`'s pipeline to its bot session and returns the remote
    /// party's queues (`None`: the remote party is in the far-end process).
    pub(super) fn attach(
        &self,
        index: usize,
        pipeline: &mut CallPipeline,
        epoch: Instant,
    ) -> Result<Option<RtpEndpoint>, LoadtestError> {
        let taken = match self.pairs.get(index) {
            Some(Pair::Rtp { bot, remote }) => {
                bot.attach_pipeline(pipeline, epoch);
                remote.take_endpoint()
            }
            Some(Pair::Webrtc { bot, remote }) => {
                bot.attach_pipeline(pipeline, epoch);
                remote.take_endpoint()
            }
            Some(Pair::Far { bot }) => {
                bot.attach_pipeline(pipeline, epoch);
                return Ok(None);
            }
            None => None,
        };
        taken.map(Some).ok_or_else(|| {
            LoadtestError::Transport(format!("call {index} has no free remote endpoint"))
        })
    }

    /// Lets packets in flight land, reads every session's counters, and closes the
    /// sessions (each close bounded).
    pub(super) fn finish(self) -> WireTotals {
        let Wire {
            runtime,
            pairs,
            port,
            far_end,
            transport,
            setup,
        } = self;
        let totals = runtime.block_on(async {
            tokio::time::sleep(SETTLE).await;
            let mut totals = WireTotals {
                transport: Some(transport),
                setup,
                ..WireTotals::default()
            };
            for pair in &pairs {
                match pair {
                    Pair::Rtp { bot, remote } => {
                        for s in [bot.stats(), remote.stats()] {
                            totals.packets_sent += s.packets_sent;
                            totals.packets_received += s.rtp_received;
                            totals.garbage += s.garbage;
                            totals.inbound_queue_full += s.inbound_queue_full;
                            totals.send_errors += s.send_errors;
                        }
                    }
                    Pair::Webrtc { bot, remote } => {
                        for s in [bot.stats().await, remote.stats().await] {
                            totals.add_webrtc(&s);
                        }
                    }
                    Pair::Far { bot } => totals.add_webrtc(&bot.stats().await),
                }
            }
            totals.udp_sockets = udp_sockets();
            totals.port = port.as_ref().map(|p| p.stats());
            for pair in &pairs {
                // close() sends an RTCP BYE and waits for the stack; never hang on it.
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    match pair {
                        Pair::Webrtc { bot, remote } => {
                            tokio::join!(bot.close(), remote.close());
                        }
                        Pair::Far { bot } => bot.close().await,
                        Pair::Rtp { .. } => {}
                    }
                })
                .await;
            }
            totals
        });
        drop(pairs);
        drop(port);
        let mut totals = totals;
        if let Some(far) = far_end {
            match far.finish() {
                Some(remote) => totals.add_far_end(&remote),
                None => eprintln!("loadtest: the far-end process reported no totals"),
            }
            totals.far_end = true;
        }
        runtime.shutdown_timeout(Duration::from_secs(2));
        totals
    }
}

/// Two plain-RTP sessions on 127.0.0.1 pointed at each other.
async fn rtp_pair() -> Result<Pair, String> {
    // PlainRtpSession takes its peer's address at bind time: reserve two free ports,
    // release them, bind the sessions to them (loopback, so nothing else races for them
    // in practice; a lost race is a bind error, reported).
    let free = || -> Result<SocketAddr, String> {
        UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_err(|e| format!("no free UDP port on 127.0.0.1: {e}"))
    };
    let (a, b) = (free()?, free()?);
    let bot = PlainRtpSession::bind(PlainRtpConfig::new(a, b))
        .await
        .map_err(|e| format!("plain RTP bind {a}: {e}"))?;
    let remote = PlainRtpSession::bind(PlainRtpConfig::new(b, a))
        .await
        .map_err(|e| format!("plain RTP bind {b}: {e}"))?;
    Ok(Pair::Rtp { bot, remote })
}

/// The bot offers (on the shared `port` when there is one), the remote answers through the
/// blob, both connect (ICE + DTLS).
async fn webrtc_pair(port: Option<&MediaPort>, connect_timeout: Duration) -> Result<Pair, String> {
    let config = TransportConfig {
        connect_timeout,
        ..TransportConfig::default()
    };
    let bot = WebRtcSession::offer(port, config.clone())
        .await
        .map_err(|e| format!("offer: {e}"))?;
    let (remote, answer) = MediaSession::answer_blob(config, &bot.blob())
        .await
        .map_err(|e| format!("answer: {e}"))?;
    bot.accept(&answer)
        .await
        .map_err(|e| format!("accept: {e}"))?;
    let both = async { tokio::try_join!(bot.connected(), remote.connected()).map(|_| ()) };
    both_connected(connect_timeout, both).await?;
    Ok(Pair::Webrtc {
        bot: Box::new(bot),
        remote: Box::new(remote),
    })
}

/// Waits for both sessions of a pair. They end themselves with ConnectTimeout; the outer
/// timeout is a backstop.
async fn both_connected(
    connect_timeout: Duration,
    both: impl Future<Output = Result<(), appmedia_transport::EndReason>>,
) -> Result<(), String> {
    match tokio::time::timeout(connect_timeout + Duration::from_secs(2), both).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(format!("sessions did not connect: {reason:?}")),
        Err(_) => Err(format!(
            "sessions did not connect within {} ms",
            connect_timeout.as_millis()
        )),
    }
}

/// Every call's bot session (on `port` when there is one), answered by the far-end process,
/// all connected.
async fn far_pairs(
    far: &mut FarEnd,
    port: Option<&MediaPort>,
    calls: usize,
    connect_timeout: Duration,
) -> Result<Vec<Pair>, LoadtestError> {
    let config = TransportConfig {
        connect_timeout,
        ..TransportConfig::default()
    };
    let mut bots = Vec::with_capacity(calls);
    for index in 0..calls {
        let fail = |what: String| LoadtestError::Transport(format!("call {index}: {what}"));
        let bot = WebRtcSession::offer(port, config.clone())
            .await
            .map_err(|e| fail(format!("offer: {e}")))?;
        let answer = far.answer(index, &bot.blob()).map_err(fail)?;
        bot.accept(&answer)
            .await
            .map_err(|e| fail(format!("accept: {e}")))?;
        bots.push(bot);
    }
    for (index, bot) in bots.iter().enumerate() {
        match tokio::time::timeout(connect_timeout + Duration::from_secs(2), bot.connected()).await
        {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                return Err(LoadtestError::Transport(format!(
                    "call {index}: did not connect: {reason:?}"
                )));
            }
            Err(_) => {
                return Err(LoadtestError::Transport(format!(
                    "call {index}: did not connect within {} ms",
                    connect_timeout.as_millis()
                )));
            }
        }
    }
    Ok(bots
        .into_iter()
        .map(|bot| Pair::Far { bot: Box::new(bot) })
        .collect())
}

/// UDP sockets this process has open (both ends of every call, in-process): its socket
/// descriptors whose inode is in `/proc/net/udp` or `/proc/net/udp6`. Linux only.
fn udp_sockets() -> Option<usize> {
    let mut udp = std::collections::HashSet::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
        udp.extend(
            text.lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(9).map(str::to_owned)),
        );
    }
    let fds = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(
        fds.flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter_map(|target| {
                let t = target.to_string_lossy();
                t.strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .map(str::to_owned)
            })
            .filter(|inode| udp.contains(inode))
            .count(),
    )
}

/// Counters summed over every session of the run (both ends of every call).
#[derive(Debug, Clone, Default)]
pub(super) struct WireTotals {
    transport: Option<Transport>,
    setup: Duration,
    /// RTP packets sent onto the wire.
    pub(super) packets_sent: u64,
    /// RTP packets received (and, for WebRTC, decrypted).
    pub(super) packets_received: u64,
    /// WebRTC: RFC 3550 cumulative loss from RTCP. Plain RTP has no RTCP: `None`.
    packets_lost: Option<i64>,
    srtp_rejected: Option<u64>,
    garbage: u64,
    inbound_queue_full: u64,
    send_errors: u64,
    /// UDP sockets open in the process at the end of the run (both ends of every call).
    udp_sockets: Option<usize>,
    /// The bot's shared port (`webrtc-port`).
    port: Option<appmedia_transport::PortStats>,
    /// The far ends ran in a child process: CPU, RSS and sockets are the bot side's.
    far_end: bool,
}

impl WireTotals {
    /// The transport's name, for the report.
    pub(super) fn transport_name(&self) -> &'static str {
        self.transport.map_or("none", Transport::name)
    }

    /// The far-end process's totals, as [`far_end_json`](Self::far_end_json) wrote them.
    fn add_far_end(&mut self, v: &serde_json::Value) {
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        self.packets_sent += n("packets_sent");
        self.packets_received += n("packets_received");
        *self.packets_lost.get_or_insert(0) += v["packets_lost"].as_i64().unwrap_or(0);
        *self.srtp_rejected.get_or_insert(0) += n("srtp_rejected");
        self.garbage += n("garbage");
        self.inbound_queue_full += n("inbound_queue_full");
        self.send_errors += n("send_errors");
    }

    /// What the far-end process reports to its parent.
    pub(super) fn far_end_json(&self) -> serde_json::Value {
        json!({
            "packets_sent": self.packets_sent,
            "packets_received": self.packets_received,
            "packets_lost": self.packets_lost,
            "srtp_rejected": self.srtp_rejected,
            "garbage": self.garbage,
            "inbound_queue_full": self.inbound_queue_full,
            "send_errors": self.send_errors,
        })
    }

    pub(super) fn add_webrtc(&mut self, s: &SessionStats) {
        self.packets_sent += s.outbound_sent;
        self.packets_received += s.packets_received;
        *self.packets_lost.get_or_insert(0) += s.packets_lost.max(0);
        *self.srtp_rejected.get_or_insert(0) += s.srtp_rejected;
        self.garbage += s.garbage_datagrams;
        self.inbound_queue_full += s.inbound_queue_full;
        self.send_errors += s.outbound_write_failed;
    }

    /// `webrtc-port`: the bot side's transport time per call tick on the media workers
    /// (datagrams in, ICE/DTLS/SRTP, packets out), microseconds.
    pub(super) fn bot_transport_us_per_tick(&self) -> Option<f64> {
        let p = self.port.as_ref()?;
        (p.worker_transport_ticks > 0)
            .then(|| p.worker_transport_ns as f64 / p.worker_transport_ticks as f64 / 1e3)
    }

    /// The `wire` object of the JSON report.
    pub(super) fn to_json(&self) -> serde_json::Value {
        json!({
            "sessions_per_call": 2,
            "setup_ms": (self.setup.as_secs_f64() * 1e4).round() / 10.0,
            "packets_sent": self.packets_sent,
            "packets_received": self.packets_received,
            // Sent but not received, counted after the calls stop and a settle time.
            "packets_missing": self.packets_sent.saturating_sub(self.packets_received),
            "packets_lost": self.packets_lost,
            "srtp_rejected": self.srtp_rejected,
            "garbage": self.garbage,
            "inbound_queue_full": self.inbound_queue_full,
            "send_errors": self.send_errors,
            "udp_sockets": self.udp_sockets,
            "far_end": if self.far_end { "process" } else { "in-process" },
            "port": self.port,
            "bot_transport_us_per_tick": self
                .bot_transport_us_per_tick()
                .map(|us| (us * 10.0).round() / 10.0),
            "transport": self.transport.map(Transport::name),
        })
    }
}

/// CPU time so far of this process's threads, split by name: (transport runtime, media
/// workers, everything else). Linux only (`/proc/self/task/*/stat`); `None` elsewhere.
pub(super) fn thread_cpu_split() -> Option<(Duration, Duration, Duration)> {
    // SAFETY: sysconf only reads a system constant.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks_per_s <= 0 {
        return None;
    }
    let (mut net, mut media, mut other) = (0u64, 0u64, 0u64);
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        // A thread may exit between the listing and the read: skip it.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((name, ticks)) = parse_task_stat(&stat) else {
            continue;
        };
        if name.starts_with(NET_THREAD) || name.starts_with(PORT_THREAD) {
            net += ticks;
        } else if name.starts_with(MEDIA_THREAD) {
            media += ticks;
        } else {
            other += ticks;
        }
    }
    let to_time = |t: u64| Duration::from_secs_f64(t as f64 / ticks_per_s as f64);
    Some((to_time(net), to_time(media), to_time(other)))
}

/// The thread name and utime + stime (clock ticks) from one `/proc/.../stat` line.
fn parse_task_stat(stat: &str) -> Option<(&str, u64)> {
    // The name sits in parentheses and may itself contain ") ": split at the last one.
    let open = stat.find('(')?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.get(open + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid … utime is field 14 of the line, 11 here; stime 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_stat_lines_parse_with_odd_names() {
        let line = "4242 (lt-net) S 1 2 3 4 5 6 7 8 9 10 250 31 0 0 20 0 1 0";
        assert_eq!(parse_task_stat(line), Some(("lt-net", 281)));
        let odd = "7 (a) b) R 1 2 3 4 5 6 7 8 9 10 3 4 0";
        assert_eq!(parse_task_stat(odd), Some(("a) b", 7)));
        assert_eq!(parse_task_stat("garbage"), None);
        assert_eq!(parse_task_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn a_named_thread_is_counted_as_transport() {
        // Burn CPU on a thread named like the runtime's and read the split from inside it
        // (an exited thread leaves /proc/self/task).
        let net = std::thread::Builder::new()
            .name(format!("{NET_THREAD}-test"))
            .spawn(|| {
                let t0 = super::super::thread_cpu_time().unwrap_or_default();
                let mut x = 0u64;
                while super::super::thread_cpu_time()
                    .is_some_and(|t| t.saturating_sub(t0) < Duration::from_millis(60))
                {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                thread_cpu_split().expect("Linux /proc").0
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(net > Duration::ZERO, "{net:?}");
    }
}
