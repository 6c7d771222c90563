//! Fault tests of a bot built with the SDK against the emulator on loopback:
//!
//! * the bot's callback endpoint unreachable for 30 s mid-call (its reverse proxy down, then
//!   answering 503), then back: what the emulator does with the notifications it cannot
//!   deliver, and how the bot's view of the call catches up;
//! * the disk filling up under a recorded call (a real tmpfs of a few seconds of audio, in a
//!   mount namespace of its own): the file keeps what was written, the call goes on, the
//!   failure is reported.
//!
//! `docs/robustness.md` says what each one shows.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appmedia_bot::{Bot, Event, MediaOptions};
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
