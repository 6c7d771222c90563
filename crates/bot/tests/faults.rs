//! Fault tests of a bot built with the SDK against the emulator on loopback, and the soak:
//!
//! * the bot's callback endpoint unreachable for 30 s mid-call (its reverse proxy down, then
//!   answering 503), then back: what the emulator does with the notifications it cannot
//!   deliver, and how the bot's view of the call catches up; a call whose `established` is
//!   lost for good, caught up by reading the call;
//! * the disk filling up under a recorded call (a real tmpfs of a few seconds of audio, in a
//!   mount namespace of its own): the file keeps what was written, the call goes on, the
//!   failure is reported;
//! * the soak (`#[ignore]`): calls joining and leaving for an hour (`APPMEDIA_SOAK_SECS`),
//!   memory, descriptors, tasks and threads printed every minute and held flat, no late tick.
//!
//! `docs/robustness.md` says what each one shows.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appmedia_bot::{Bot, Event, MediaOptions};
use appmedia_emulator::{Emulator, EmulatorConfig, RetryPolicy};
use appmedia_model::{CallState, Identity, IdentitySet, Participant, ParticipantInfo};
use appmedia_signalling::builders::GroupCallBuilder;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BOB: &str = "5810cede-f3cc-42eb-b2c1-e9bd5d53ec96";

// ---------------------------------------------------------------------------------------------
// The callback endpoint down for 30 s
// ---------------------------------------------------------------------------------------------

/// What the proxy in front of the bot's notification listener does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proxy {
    /// Forwards every connection to the bot.
    Forward,
    /// Nothing listens on its port: connections are refused.
    Down,
    /// Listens, but answers every request 503 itself (the bot behind it unreachable).
    Fails,
}

/// A TCP reverse proxy on loopback in front of the bot's listener — the bot's public callback
/// URL — that can be switched between forwarding, down and failing. Each switch closes every
/// connection it holds, so nothing gets through a pooled connection of the previous mode.
struct CallbackProxy {
    addr: SocketAddr,
    bot: SocketAddr,
    accepting: Option<tokio::task::JoinHandle<()>>,
}

impl CallbackProxy {
    async fn start(bot: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut proxy = CallbackProxy {
            addr: listener.local_addr().unwrap(),
            bot,
            accepting: None,
        };
        proxy.accept(listener, Proxy::Forward);
        proxy
    }

    fn accept(&mut self, listener: tokio::net::TcpListener, mode: Proxy) {
        let bot = self.bot;
        self.accepting = Some(tokio::spawn(async move {
            // Dropped with this task (a switch aborts it): every connection closes with it.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    match mode {
                        Proxy::Forward => {
                            if let Ok(mut upstream) = tokio::net::TcpStream::connect(bot).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            }
                        }
                        Proxy::Fails => answer_503(&mut client).await,
                        Proxy::Down => {}
                    }
                });
            }
        }));
    }

    async fn switch(&mut self, mode: Proxy) {
        if let Some(task) = self.accepting.take() {
            task.abort();
            let _ = task.await;
        }
        if mode != Proxy::Down {
            let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
            self.accept(listener, mode);
        }
    }

    fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}/callback", self.addr)).unwrap()
    }
}

/// Reads one request (head and `Content-Length` body) and answers 503, as a proxy whose
/// upstream is down does.
async fn answer_503(client: &mut tokio::net::TcpStream) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < head_end + length {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let _ = client
        .write_all(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await;
    let _ = client.shutdown().await;
}

/// Whether the roster shows `user` muted (`None`: not in it).
fn muted(roster: &[Participant], user: &str) -> Option<bool> {
    roster.iter().find_map(|p| {
        let p = serde_json::to_value(p).ok()?;
        (p["info"]["identity"]["user"]["id"] == user).then(|| p["isMuted"].as_bool() == Some(true))
    })
}

fn participant_id(roster: &[Participant], user: &str) -> Option<String> {
    roster.iter().find_map(|p| {
        let v = serde_json::to_value(p).ok()?;
        (v["info"]["identity"]["user"]["id"] == user)
            .then(|| v["id"].as_str().map(str::to_owned))?
    })
}

/// Polls `check` every 100 ms until it holds, at most `within` (liveness, not speed).
async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The bot's callback endpoint is unreachable for 30 s mid-call — its proxy down for 15 s
/// (connection refused), then answering 503 for 15 s — and comes back.
///
/// The emulator, as Graph: the call goes on (nothing in Graph ends a call because its
/// notifications cannot be delivered: keepAlive and the media keep it), each notification is
/// retried with backoff within its bound (10 attempts, about 21 s), then dropped, logged and
/// counted; what comes later is delivered once the endpoint answers. The bot: its media never
/// stopped; the roster change whose notification was dropped (Bob muted at the start of the
/// outage) is caught up by the roster read that goes with each keepAlive (counted as a
/// correction); a change near the end of the outage (Bob removed), still within its retries,
/// arrives by notification once the endpoint is back; and the call is not stuck: hanging up
/// gets its `terminated`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_endpoint_down_for_30_s_loses_no_call_and_the_bot_catches_up() {
    let emulator = emulator(echo_directory()).await;
    // The bot binds first; the proxy in front of it becomes its public callback URL.
    let probe = bot(&emulator).await;
    let local = probe.local_addr();
    probe.shutdown(None).await;
    let mut proxy = CallbackProxy::start(local).await;
    let config = bot_config(&emulator)
        .with_listen(local)
        .with_callback_url(proxy.url())
        .with_keep_alive_interval(Duration::from_secs(10));
    let bot = Bot::start(config).await.expect("bot starts");
    let request = GroupCallBuilder::new(
        bot.callback_uri(),
        ParticipantInfo::new(IdentitySet::application(Identity::new(CALLING_BOT))),
        [Identity::new(JOHN), Identity::new(BOB)],
        appmedia_bot::app_hosted(),
    )
    .build()
    .expect("valid request");
    let mut call = bot.call(request, MediaOptions::default()).await.unwrap();
    let control = call.control();
    let audio = call.audio_socket().unwrap();
    until(&mut call, |e| matches!(e, Event::MediaConnected)).await;
    eventually(WAIT, "John and Bob in the bot's roster", || {
        let roster = control.roster();
        muted(&roster, JOHN).is_some() && muted(&roster, BOB) == Some(false)
    })
    .await;
    let bob = participant_id(&control.roster(), BOB).expect("Bob's participant id");
    // The bot talks all along; John echoes it. Record when the echo is heard.
    let heard: Arc<Mutex<Vec<tokio::time::Instant>>> = Arc::default();
    let talking = tokio::spawn({
        let heard = heard.clone();
        async move {
            let mut phase = 0;
            loop {
                let _ = audio.send(&tone_frame(1000.0, &mut phase));
                let Some(frame) = audio.recv().await else {
                    return;
                };
                if appmedia_testkit::audio::level_dbfs(&samples(&frame.mixed)) > -40.0 {
                    heard.lock().unwrap().push(tokio::time::Instant::now());
                }
            }
        }
    });
    // Drain the call's events meanwhile: the bot reads them as they come.
    let events = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(event) = call.next_event().await {
            let ended = matches!(event, Event::Ended(_));
            seen.push(event);
            if ended {
                break;
            }
        }
        seen
    });

    let stats_before = emulator.delivery_stats();
    let (failed_before, dropped_before) = (stats_before.failed_attempts(), stats_before.dropped());
    let outage = tokio::time::Instant::now();
    proxy.switch(Proxy::Down).await;
    control
        .mute_participant(&bob)
        .await
        .expect("the bot's requests to Graph still work");
    tokio::time::sleep_until(outage + Duration::from_secs(15)).await;
    proxy.switch(Proxy::Fails).await;
    // The mute's notification: 10 attempts over ~21 s, then given up, counted.
    tokio::time::sleep_until(outage + Duration::from_secs(21)).await;
    eventually(
        Duration::from_secs(4),
        "the mute's notification given up",
        || emulator.delivery_stats().dropped() > dropped_before,
    )
    .await;
    // Lost for good — yet the bot knows: the roster read that goes with each keepAlive
    // (every 10 s here) caught up with it.
    assert_eq!(
        muted(&control.roster(), BOB),
        Some(true),
        "caught up with the lost mute"
    );
    // A change now is still within its retries when the endpoint comes back.
    control.remove_participant(&bob).await.expect("Bob removed");
    tokio::time::sleep_until(outage + Duration::from_secs(30)).await;

    // Through the outage: the call lives on both sides, the media never stopped.
    assert_eq!(
        emulator.live_calls(),
        1,
        "the emulator did not end the call"
    );
    assert_eq!(control.state(), Some(CallState::Established));
    {
        let heard = heard.lock().unwrap();
        let during: Vec<_> = heard
            .iter()
            .filter(|t| **t >= outage && **t <= outage + Duration::from_secs(30))
            .collect();
        assert!(!during.is_empty(), "no echo heard during the outage");
        let longest_gap = during
            .windows(2)
            .map(|w| w[1].duration_since(*w[0]))
            .max()
            .unwrap_or_default();
        assert!(
            longest_gap < Duration::from_secs(5),
            "the echo stopped for {longest_gap:?} during the outage"
        );
    }
    let stats = emulator.delivery_stats();
    assert_eq!(
        stats.dropped(),
        dropped_before + 1,
        "one notification given up"
    );
    assert!(
        stats.failed_attempts() >= failed_before + 10,
        "retried before dropping: {} failed attempts",
        stats.failed_attempts() - failed_before
    );
    let delivered_in_outage = stats.delivered();
    proxy.switch(Proxy::Forward).await;

    // Back: Bob's removal, still within its retries, is delivered; the roster read had
    // corrected the mute the dropped notification carried.
    eventually(Duration::from_secs(15), "the removal delivered", || {
        emulator.delivery_stats().delivered() > delivered_in_outage
    })
    .await;
    eventually(WAIT, "Bob gone from the bot's roster", || {
        muted(&control.roster(), BOB).is_none()
    })
    .await;
    assert!(bot.stats().roster_corrections >= 1, "{:?}", bot.stats());

    // Not stuck: a hang-up gets its terminated through the endpoint that is back.
    control.hang_up().await.expect("terminated delivered");
    let seen = tokio::time::timeout(WAIT, events)
        .await
        .expect("the call's events end")
        .unwrap();
    assert!(matches!(seen.last(), Some(Event::Ended(_))), "{seen:#?}");
    assert!(
        seen.iter().any(|e| matches!(
            e,
            Event::State {
                to: CallState::Terminated,
                ..
            }
        )),
        "ended by its terminated notification: {seen:#?}"
    );
    talking.abort();
    assert_eq!(bot.stats().live_calls, 0);
    assert_eq!(emulator.live_calls(), 0);
    bot.shutdown(Some(Duration::from_millis(100))).await;
    emulator.shutdown().await;
}

/// A call whose `establishing` and `established` notifications are lost for good (the
/// endpoint answering 503 until Graph gives up on them): the bot reads the call's state while
/// it is not established, catches up, and the call runs — media, and its end through the
/// endpoint once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_established_is_caught_up_by_reading_the_call() {
    let emulator = Emulator::start(EmulatorConfig {
        directory: echo_directory(),
        media_samples_dir: media_samples(),
        // Given up on after two quick attempts, where Graph takes a few more and longer.
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
            max_attempts: 2,
            ..RetryPolicy::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts");
    let probe = bot(&emulator).await;
    let local = probe.local_addr();
    probe.shutdown(None).await;
    let mut proxy = CallbackProxy::start(local).await;
    proxy.switch(Proxy::Fails).await;
    let config = bot_config(&emulator)
        .with_listen(local)
        .with_callback_url(proxy.url())
        .with_state_check_interval(Duration::from_secs(1));
    let bot = Bot::start(config).await.expect("bot starts");
    let mut call = bot
        .call(
            call_to(JOHN, &bot, appmedia_bot::app_hosted()),
            MediaOptions::default(),
        )
        .await
        .unwrap();
    let control = call.control();
    // Media connects on its own (ICE, DTLS); the call is established only once the bot
    // knows the service says so.
    established_and_connected(&mut call).await;
    assert_eq!(control.state(), Some(CallState::Established));
    assert!(bot.stats().state_corrections >= 1, "{:?}", bot.stats());
    assert!(
        emulator.delivery_stats().dropped() >= 1,
        "the established notification was given up"
    );
    // The media runs: John echoes the bot.
    let audio = call.audio_socket().unwrap();
    let mut phase = 0;
    let echoed = tokio::time::timeout(WAIT, async {
        loop {
            let _ = audio.send(&tone_frame(1000.0, &mut phase));
            let frame = audio.recv().await.expect("audio");
            if appmedia_testkit::audio::level_dbfs(&samples(&frame.mixed)) > -40.0 {
                break;
            }
        }
    })
    .await;
    assert!(echoed.is_ok(), "no echo heard");
    proxy.switch(Proxy::Forward).await;
    control.hang_up().await.expect("hung up");
    let seen = until(&mut call, |e| matches!(e, Event::Ended(_))).await;
    assert!(
        seen.iter().any(|e| matches!(
            e,
            Event::State {
                to: CallState::Terminated,
                ..
            }
        )),
        "ended by its terminated notification: {seen:#?}"
    );
    bot.shutdown(Some(Duration::from_millis(100))).await;
    emulator.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The disk filling up under a recorded call
// ---------------------------------------------------------------------------------------------

/// Set in the child process that runs [`a_disk_filling_up_in_a_mount_namespace`].
const IN_NAMESPACE: &str = "APPMEDIA_TEST_MOUNT_NAMESPACE";
/// The recording's tmpfs: about 5 s of the call's two files (the mix and John's), each 16 kHz
/// 16-bit mono (32,000 bytes a second).
const TMPFS_BYTES: u64 = 320 * 1024;

/// A recorded call whose disk fills up mid-call. A real full filesystem, not a stand-in:
/// a tmpfs of 320 KiB, mounted in a mount namespace of a child process (as root, or as an
/// unprivileged user mapped to root in a user namespace), so nothing outlives the test. Skipped,
/// saying why, where neither is possible.
#[test]
fn a_disk_filling_up_mid_call_keeps_the_file_valid_and_the_call_going() {
    let exe = std::env::current_exe().expect("the test binary");
    let test = "a_disk_filling_up_in_a_mount_namespace";
    let as_root = ["unshare", "--mount", "--propagation", "private", "--"];
    let as_user = [
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "--propagation",
        "private",
        "--",
    ];
    let can = |prefix: &[&str]| {
        std::process::Command::new(prefix[0])
            .args(&prefix[1..])
            .args(["sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt 2>/dev/null || mount -t tmpfs -o size=4k tmpfs /tmp"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let Some(prefix) = [&as_root[..], &as_user[..]].into_iter().find(|p| can(p)) else {
        println!(
            "SKIPPED {test}: neither `unshare --mount` (root) nor `unshare --user --mount` can \
             mount a tmpfs here, and a full disk needs a real filesystem"
        );
        return;
    };
    let output = std::process::Command::new(prefix[0])
        .args(&prefix[1..])
        .arg(&exe)
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(IN_NAMESPACE, "1")
        .output()
        .expect("the child test runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(output.status.success(), "the test in the namespace failed");
    assert!(
        stdout.contains("1 passed"),
        "the test in the namespace did not run"
    );
}

/// Run by [`a_disk_filling_up_mid_call_keeps_the_file_valid_and_the_call_going`] in a mount
/// namespace of its own: mounts the tmpfs, makes a recorded call that fills it, and checks
/// what the bot saw and what the file holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_disk_filling_up_mid_call_keeps_the_file_valid_and_the_call_going"]
async fn a_disk_filling_up_in_a_mount_namespace() {
    use appmedia_audio_io::record::{Track, TrackState};
    if std::env::var_os(IN_NAMESPACE).is_none() {
        println!("not in a mount namespace of its own: nothing mounted, nothing tested");
        return;
    }
    let dir = std::env::temp_dir().join(format!("appmedia-full-disk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_BYTES}"), "tmpfs"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount the tmpfs");

    let emulator = emulator(echo_directory()).await;
    let bot = Bot::start(bot_config(&emulator).with_recordings_dir(&dir))
        .await
        .unwrap();
    let options = MediaOptions::default().recorded(appmedia_bot::RecordOptions {
        prefix: "full".into(),
        ..appmedia_bot::RecordOptions::default()
    });
    let mut call = bot
        .call(call_to(JOHN, &bot, appmedia_bot::app_hosted()), options)
        .await
        .expect("the disk has room when the call starts");
    let control = call.control();
    let audio = call.audio_socket().unwrap();
    until(&mut call, |e| matches!(e, Event::MediaConnected)).await;
    // The bot talks, John echoes, the recording fills the disk in about 5 s.
    let talking = tokio::spawn(async move {
        let mut phase = 0;
        let mut heard = Vec::new();
        loop {
            let _ = audio.send(&tone_frame(1000.0, &mut phase));
            let Some(frame) = audio.recv().await else {
                return heard;
            };
            heard.push((tokio::time::Instant::now(), samples(&frame.mixed)));
        }
    });
    // Both files — the mix and John's — fill the disk together, and each stops.
    let mut failed = Vec::new();
    until(&mut call, |e| {
        if let Event::RecordingFailed(track) = e {
            failed.push(track.clone());
        }
        failed.len() == 2
    })
    .await;
    let failed_at = tokio::time::Instant::now();
    failed.sort_by_key(|t| t.track);
    assert_eq!(failed[0].track, Track::Mixed);
    assert!(matches!(failed[1].track, Track::Speaker(_)), "{failed:?}");
    for track in &failed {
        assert_eq!(track.state, TrackState::Failed);
        let error = track.error.clone().unwrap_or_default();
        assert!(error.contains("No space left"), "{error}");
    }
    assert_eq!(bot.stats().recording_failures, 2);

    // The call goes on: two more seconds of media, and the signalling answers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    control
        .keep_alive()
        .await
        .expect("keepAlive after the disk filled");
    control
        .mute()
        .await
        .expect("an action after the disk filled");
    control.unmute().await.expect("and another");
    assert_eq!(control.state(), Some(CallState::Established));
    control
        .hang_up()
        .await
        .expect("hung up, terminated received");
    let rest = until(&mut call, |e| matches!(e, Event::Ended(_))).await;
    let heard = talking.await.unwrap();
    let after: Vec<f32> = heard
        .iter()
        .filter(|(t, _)| *t > failed_at)
        .flat_map(|(_, s)| s.iter().copied())
        .collect();
    assert!(
        after.len() >= 16_000,
        "a second of audio heard after the disk filled"
    );
    let (freq, _) = appmedia_testkit::audio::dominant(&after, &[440.0, 1000.0], 16_000.0);
    assert_eq!(freq, 1000.0, "the echo went on after the disk filled");

    // The file: a valid WAV, exactly as long as its header says, holding what was written
    // before the disk filled — the first seconds of the call, the echo in them.
    let Some(Event::Ended(end)) = rest.last() else {
        unreachable!()
    };
    let recording = end.recording.as_ref().expect("the recording's final state");
    assert_eq!(recording.tracks.len(), 2);
    let mut on_disk = 0;
    for track in &recording.tracks {
        assert_eq!(track.state, TrackState::Failed);
        let bytes = std::fs::read(&track.path).unwrap();
        let (data_at, data_len) = wav_data_chunk(&bytes);
        let riff = u64::from(u32::from_le_bytes(bytes[4..8].try_into().unwrap()));
        assert_eq!(riff + 8, bytes.len() as u64, "the RIFF size is the file's");
        assert_eq!(
            bytes.len() as u64,
            data_at + data_len,
            "{:?}: no bytes past the data the header describes",
            track.track
        );
        assert_eq!(
            data_len / 2,
            track.durable_samples,
            "the status says what the file holds"
        );
        let (rate, written) = appmedia_testkit::audio::read_wav(&track.path);
        assert_eq!(
            (rate, written.len() as u64),
            (16_000, track.durable_samples)
        );
        let last_second = &written[written.len() - 16_000..];
        let (freq, _) = appmedia_testkit::audio::dominant(last_second, &[440.0, 1000.0], 16_000.0);
        assert_eq!(
            freq, 1000.0,
            "{:?}: the echo is in the file up to its end",
            track.track
        );
        on_disk += bytes.len() as u64;
    }
    // What the disk held, less what each file wrote after its last header rewrite (half a
    // second, 16,000 bytes) and a page: the first seconds of the call are there.
    assert!(
        on_disk > TMPFS_BYTES - 2 * (16_000 + 4096),
        "{on_disk} bytes kept of a {TMPFS_BYTES}-byte disk"
    );

    bot.shutdown(None).await;
    emulator.shutdown().await;
    let _ = std::process::Command::new("umount").arg(&dir).status();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where a WAV file's `data` chunk starts and how long its header says it is; panics on a file
/// that is not RIFF/WAVE or has no data chunk.
fn wav_data_chunk(bytes: &[u8]) -> (u64, u64) {
    assert!(
        bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "not a WAV"
    );
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u64::from(u32::from_le_bytes(
            bytes[at + 4..at + 8].try_into().unwrap(),
        ));
        if id == b"data" {
            return ((at + 8) as u64, len);
        }
        at += 8 + len as usize + (len as usize & 1);
    }
    panic!("no data chunk")
}

// ---------------------------------------------------------------------------------------------
// The soak
// ---------------------------------------------------------------------------------------------

/// Calls held at once by default: about half of what this process (the bot and the emulator
/// in-process, both ends over WebRTC, release build) carries on 2 cores; `docs/robustness.md`
/// says how it was measured. `APPMEDIA_SOAK_CALLS` overrides it.
const SOAK_CALLS: usize = 22;

/// One line of the soak's report.
#[derive(Clone, Debug)]
struct Sample {
    at: Duration,
    live: usize,
    completed: u64,
    rss_kib: u64,
    fds: usize,
    threads: u64,
    tasks: usize,
    bot_ticks: u64,
    bot_late: u64,
    emulator_late: u64,
    /// CPU time of the whole process so far (user + system).
    cpu: Duration,
    /// Of one core, since the previous sample.
    cpu_pct: f64,
    load: String,
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "soak t={:>5}s live={:>3} completed={:>5} rss={:>7} KiB fds={:>4} threads={:>3} \
             tasks={:>5} ticks={:>9} late={} emulator_late={} cpu={:.0}% load={}",
            self.at.as_secs(),
            self.live,
            self.completed,
            self.rss_kib,
            self.fds,
            self.threads,
            self.tasks,
            self.bot_ticks,
            self.bot_late,
            self.emulator_late,
            self.cpu_pct,
            self.load
        )
    }
}

/// `/proc/self/status` field `name` (its first number).
fn proc_status(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// This process's CPU time (user + system) from `/proc/self/stat`, at the usual 100 Hz.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) start after its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat(5): 11 and 12 after the ')'.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn sample(
    previous: Option<&Sample>,
    at: Duration,
    live: usize,
    completed: u64,
    bot: &Bot,
    emulator: &appmedia_emulator::Emulator,
) -> Sample {
    let media = bot.media_stats().expect("the bot runs");
    let cpu = process_cpu();
    let (cpu_before, at_before) =
        previous.map_or((Duration::ZERO, Duration::ZERO), |p| (p.cpu, p.at));
    let cpu_pct = 100.0 * cpu.saturating_sub(cpu_before).as_secs_f64()
        / at.saturating_sub(at_before).as_secs_f64().max(1e-3);
    Sample {
        at,
        live,
        completed,
        rss_kib: proc_status("VmRSS:"),
        fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()),
        threads: proc_status("Threads:"),
        tasks: tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        bot_ticks: media.ticks(),
        bot_late: media.late_ticks(),
        emulator_late: emulator.media_stats().late_ticks(),
        cpu,
        cpu_pct,
        load: std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One slot of the soak: calls John, talks for 20–60 s (John echoes), hangs up, again, until
/// `until`. Every call must connect, carry audio both ways and end with its `terminated`.
async fn soak_slot(
    bot: Arc<Bot>,
    slot: u64,
    until: tokio::time::Instant,
    live: Arc<std::sync::atomic::AtomicUsize>,
    completed: Arc<std::sync::atomic::AtomicU64>,
) -> Result<(), String> {
    use std::sync::atomic::Ordering;
    // A small deterministic generator per slot: lifetimes spread, runs repeatable.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ slot.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Staggered start: not every slot sets up its call in the same second.
    tokio::time::sleep(Duration::from_millis(next() % 20_000)).await;
    while tokio::time::Instant::now() < until {
        let lifetime = Duration::from_secs(20 + next() % 41);
        let mut call = bot
            .call(
                call_to(JOHN, &bot, appmedia_bot::app_hosted()),
                MediaOptions::default(),
            )
            .await
            .map_err(|e| format!("slot {slot}: placing a call: {e}"))?;
        live.fetch_add(1, Ordering::Relaxed);
        let audio = call.audio_socket().ok_or("no audio socket")?;
        let talking = tokio::spawn(async move {
            let mut phase = 0;
            let mut loud = 0u64;
            while let Some(frame) = audio.recv().await {
                let _ = audio.send(&tone_frame(1000.0, &mut phase));
                if appmedia_testkit::audio::level_dbfs(&samples(&frame.mixed)) > -40.0 {
                    loud += 1;
                }
            }
            loud
        });
        let ends = tokio::time::Instant::now() + lifetime;
        let mut connected = false;
        loop {
            match tokio::time::timeout_at(ends, call.next_event()).await {
                Err(_) => break,
                Ok(Some(Event::MediaConnected)) => connected = true,
                Ok(Some(Event::Ended(end))) => {
                    return Err(format!("slot {slot}: the call ended by itself: {end:?}"));
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err(format!("slot {slot}: events ended")),
            }
        }
        if !connected {
            return Err(format!("slot {slot}: the media never connected"));
        }
        call.control()
            .hang_up()
            .await
            .map_err(|e| format!("slot {slot}: hang-up: {e}"))?;
        while let Some(event) = call.next_event().await {
            if matches!(event, Event::Ended(_)) {
                break;
            }
        }
        let loud = talking.await.map_err(|e| e.to_string())?;
        // Liveness, generous: the echo was heard for at least a tenth of the call.
        if loud < lifetime.as_secs() * 5 {
            return Err(format!(
                "slot {slot}: the echo was heard in {loud} frames of a {lifetime:?} call"
            ));
        }
        live.fetch_sub(1, Ordering::Relaxed);
        completed.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// The soak: `APPMEDIA_SOAK_CALLS` calls (default [`SOAK_CALLS`]) at once for
/// `APPMEDIA_SOAK_SECS` (default an hour), each talking 20–60 s and hanging up and replaced,
/// the emulator in-process. Every minute it prints RSS, open descriptors, threads, tokio tasks,
/// call ticks and late ticks (the bot's, and the emulator's for the record). It fails when a
/// call fails, when any of the bot's ticks is late (up to `APPMEDIA_SOAK_MAX_LATE`, default
/// 0), or when after the warm-up (the first fifth, at least a minute) RSS grows by more than
/// a quarter or 64 MiB, descriptors by more than 64, threads by more than 8, or tasks by more
/// than 64 plus a quarter. Release build:
///
/// `APPMEDIA_SOAK_SECS=3600 cargo test --release -p appmedia-bot --test faults soak -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "an hour; run on purpose (docs/robustness.md)"]
async fn soak() {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    let seconds = env_number("APPMEDIA_SOAK_SECS", 3600);
    let calls = env_number("APPMEDIA_SOAK_CALLS", SOAK_CALLS as u64);
    let max_late = env_number("APPMEDIA_SOAK_MAX_LATE", 0);
    let warm_up = Duration::from_secs((seconds / 5).max(60));
    println!("soak: {calls} calls at once for {seconds} s, warm-up {warm_up:?}");

    let emulator = emulator(echo_directory()).await;
    let mut config = bot_config(&emulator);
    config.media.workers = 2;
    let bot = Arc::new(Bot::start(config).await.expect("bot starts"));
    let started = tokio::time::Instant::now();
    let until = started + Duration::from_secs(seconds);
    let live = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicU64::new(0));
    let slots: Vec<_> = (0..calls)
        .map(|slot| {
            tokio::spawn(soak_slot(
                bot.clone(),
                slot,
                until,
                live.clone(),
                completed.clone(),
            ))
        })
        .collect();

    let mut samples = Vec::new();
    let mut report =
        tokio::time::interval_at(started + Duration::from_secs(60), Duration::from_secs(60));
    let mut failures = Vec::new();
    loop {
        tokio::select! {
            _ = report.tick() => {
                let s = sample(samples.last(), started.elapsed(), live.load(Ordering::Relaxed), completed.load(Ordering::Relaxed), &bot, &emulator);
                println!("{s}");
                samples.push(s);
            }
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if slots.iter().any(|s| s.is_finished()) && tokio::time::Instant::now() < until {
                    break;
                }
            }
        }
        if tokio::time::Instant::now() >= until {
            break;
        }
    }
    // The minute that ends with the run is reported too (its tick may have lost the race).
    if samples
        .last()
        .is_none_or(|s: &Sample| started.elapsed() - s.at > Duration::from_secs(5))
    {
        let s = sample(
            samples.last(),
            started.elapsed(),
            live.load(Ordering::Relaxed),
            completed.load(Ordering::Relaxed),
            &bot,
            &emulator,
        );
        println!("{s}");
        samples.push(s);
    }
    // The slots finish the calls they hold.
    for slot in slots {
        match tokio::time::timeout(Duration::from_secs(120), slot).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => failures.push(e),
            Ok(Err(e)) => failures.push(format!("a slot panicked: {e}")),
            Err(_) => failures.push("a slot did not finish its last call".to_owned()),
        }
    }
    let last = sample(
        samples.last(),
        started.elapsed(),
        live.load(Ordering::Relaxed),
        completed.load(Ordering::Relaxed),
        &bot,
        &emulator,
    );
    println!("{last} (end)");
    samples.push(last.clone());
    assert!(failures.is_empty(), "{failures:#?}");

    let baseline = samples
        .iter()
        .find(|s| s.at >= warm_up)
        .cloned()
        .unwrap_or_else(|| last.clone());
    for s in samples.iter().filter(|s| s.at >= baseline.at) {
        assert!(
            s.rss_kib <= baseline.rss_kib + (baseline.rss_kib / 4).max(64 * 1024),
            "RSS grew: {s} against {baseline}"
        );
        assert!(
            s.fds <= baseline.fds + 64,
            "descriptors grew: {s} against {baseline}"
        );
        assert!(
            s.threads <= baseline.threads + 8,
            "threads grew: {s} against {baseline}"
        );
        assert!(
            s.tasks <= baseline.tasks + 64 + baseline.tasks / 4,
            "tasks grew: {s} against {baseline}"
        );
    }
    assert!(last.completed >= calls, "calls came and went: {last}");
    assert!(
        last.bot_late <= max_late,
        "{} of {} ticks late (at most {max_late})",
        last.bot_late,
        last.bot_ticks
    );
    let bot = Arc::into_inner(bot).expect("the slots are done");
    bot.shutdown(None).await;
    emulator.shutdown().await;
}
