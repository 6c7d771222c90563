//! Many bot instances as one service, with real processes: the emulator (`appmedia emulator`),
//! three recorder bots (`examples/recorder_bot.rs`, configured by `APPMEDIA_*` variables only)
//! and HAProxy in front, with `deploy/haproxy.cfg` (what the Kubernetes ingress also does):
//! `/{instance}/…` to that instance, the application's shared calling webhook `/callback`
//! balanced over the ready ones (`/readyz`), a 503 retried on another instance.
//!
//! * A call rung while no instance is up waits (the emulator retries its offer) and is taken
//!   once one is.
//! * 30 calls through the shared webhook spread over the instances; each is answered, recorded
//!   and ended by exactly one, its owner, which every later notification reaches; an instance
//!   at its `APPMEDIA_MAX_CALLS` never holds more.
//! * SIGTERM: the instance turns not ready, takes no new call, lets a call that ends before the
//!   deadline end, hangs up the rest at the deadline with their recordings finished, exits 0.
//! * `kill -9`: its calls end (the emulator ends a call whose bot media stopped); the others'
//!   calls go on; new calls go to the survivors.
//!
//! Skipped, with a message, where `haproxy` is not installed (`scripts/setup-debian` installs
//! it). Every wait is bounded; every process is killed on every path (`Proc`'s `Drop`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appmedia_testkit::audio::{level_dbfs, read_wav};
use serde_json::{Value, json};

const BOT: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";
const BOT_NUMBER: &str = "+14255550100";
/// Says a sentence and hangs up 4 s after the answer.
const SHORT_CALLER: &str = "+15550001001";
/// Says a sentence and stays until the bot ends the call.
const LONG_CALLER: &str = "+15550001002";
const INSTANCES: [&str; 3] = ["bot-1", "bot-2", "bot-3"];
/// bot-3's `APPMEDIA_MAX_CALLS`.
const BOT3_MAX: usize = 4;
/// bot-2's `APPMEDIA_DRAIN_SECS`.
const BOT2_DRAIN_SECS: u64 = 5;
/// The emulator's media timeout (`--media-timeout-secs`).
const MEDIA_TIMEOUT_SECS: u64 = 3;
const WAIT: Duration = Duration::from_secs(60);

/// A child process whose stdout lines are collected; killed when dropped.
struct Proc {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(name: &str, mut command: Command) -> Proc {
        // The processes' own logs; the WebRTC stack's per-connection chatter would bury a
        // failure's message (RUST_LOG set for the test run wins).
        if std::env::var_os("RUST_LOG").is_none() {
            command.env(
                "RUST_LOG",
                "info,rtc=warn,rtc_ice=error,rtc_dtls=error,rtc_srtp=warn,webrtc=warn",
            );
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        // Its log, tagged, on the test's stderr (shown when the test fails).
        let stderr = child.stderr.take().expect("piped stderr");
        let tag = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{tag}!] {line}");
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let sink = lines.clone();
        let tag = name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[{tag}] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Proc {
            name: name.to_owned(),
            child,
            lines,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The first line `f` maps to a value, waiting for it at most [`WAIT`].
    async fn wait_line<T>(&self, what: &str, f: impl Fn(&str) -> Option<T>) -> T {
        within(what, || self.lines().iter().find_map(|l| f(l))).await
    }

    /// Sends `signal` to the process.
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill {} {signal}", self.name);
    }

    /// Its exit status, waiting at most `limit`.
    async fn exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit in {limit:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` every 50 ms until it gives a value; panics after [`WAIT`].
async fn within<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `target/debug` (or the profile directory this test runs from).
fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_owned()
}

fn binary(relative: &str) -> PathBuf {
    let path = build_dir().join(relative);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test --workspace`, which builds the \
         `appmedia` binary and the examples",
        path.display()
    );
    path
}

/// The built-in directory and two callers of this test.
fn directory_file(dir: &Path) -> PathBuf {
    let mut text = include_str!("../crates/emulator/directory.default.toml").to_owned();
    text.push_str(&format!(
        r#"
[[phones]]
number = "{SHORT_CALLER}"
behaviour = {{ answer = "answer", hang_up_after_ms = 4000, media = {{ speak = "jane-speech.wav" }} }}

[[phones]]
number = "{LONG_CALLER}"
behaviour = {{ answer = "answer", media = {{ speak = "jane-speech.wav" }} }}
"#
    ));
    let path = dir.join("directory.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `deploy/haproxy.cfg` as shipped, listening on `proxy` instead of :443 with TLS, and each
/// instance's address replaced by its test port.
fn haproxy_config(proxy: u16, bots: &[(&str, u16)]) -> String {
    let shipped = include_str!("../deploy/haproxy.cfg");
    let bind = "  bind :443 ssl crt /etc/haproxy/bot.example.com.pem";
    assert!(
        shipped.contains(bind),
        "deploy/haproxy.cfg's bind line changed"
    );
    let mut cfg = shipped.replace(bind, &format!("  bind 127.0.0.1:{proxy}"));
    // The shipped health-check interval, faster: the test is short.
    cfg = cfg.replace("default-server inter 1s", "default-server inter 200ms");
    for (i, (id, port)) in bots.iter().enumerate() {
        let shipped_addr = format!("127.0.0.1:{}", 9441 + i);
        assert!(
            cfg.contains(&format!("server {id} {shipped_addr}")),
            "{id} in deploy/haproxy.cfg"
        );
        cfg = cfg.replace(&shipped_addr, &format!("127.0.0.1:{port}"));
    }
    cfg
}

/// What the test drives the emulator with.
struct Emu {
    control: String,
    http: reqwest::Client,
}

impl Emu {
    async fn ring(&self, from: &str) -> String {
        let response = self
            .http
            .post(format!("{}/incoming-calls", self.control))
            .json(&json!({"from": from, "to": BOT_NUMBER}))
            .send()
            .await
            .expect("control API");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(status.as_u16(), 201, "{body}");
        body["callId"].as_str().expect("callId").to_owned()
    }

    /// The bot registration's calling webhook: where the service offers new calls.
    async fn set_webhook(&self, url: &str) {
        let response = self
            .http
            .put(format!(
                "{}/applications/{BOT}/calling-webhook",
                self.control
            ))
            .json(&json!({ "url": url }))
            .send()
            .await
            .expect("control API");
        assert!(response.status().is_success(), "{response:?}");
    }

    async fn view(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/calls/{id}", self.control))
            .send()
            .await
            .expect("control API")
            .json()
            .await
            .expect("JSON")
    }
}

/// The call ids a bot's output says it recorded (`recording call {id}`).
fn recorded(bot: &Proc) -> BTreeSet<String> {
    bot.lines()
        .iter()
        .filter_map(|l| l.strip_prefix("recorder_bot: recording call "))
        .map(|id| id.trim().to_owned())
        .collect()
}

/// `call {id} ended ({reason}): …` lines: id → reason.
fn ended(bot: &Proc) -> BTreeMap<String, String> {
    bot.lines()
        .iter()
        .filter_map(|l| l.strip_prefix("recorder_bot: call "))
        .filter_map(|rest| {
            let (id, rest) = rest.split_once(" ended (")?;
            let (reason, _) = rest.split_once("):")?;
            Some((id.to_owned(), reason.to_owned()))
        })
        .collect()
}

async fn metrics(http: &reqwest::Client, port: u16) -> BTreeMap<String, u64> {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((
                name.trim_start_matches("appmedia_bot_").to_owned(),
                value.parse().ok()?,
            ))
        })
        .collect()
}

/// The level of the loudest half second of a call's mix, as recorded by its owner.
fn mix_level(dir: &Path, call: &str) -> f64 {
    let (_, samples) = read_wav(&dir.join(format!("compliance-{call}-mixed.wav")));
    samples
        .chunks(8000)
        .map(level_dbfs)
        .fold(f64::NEG_INFINITY, f64::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_haproxy_share_the_calls_drain_on_sigterm_and_survive_a_kill() {
    if Command::new("haproxy").arg("-v").output().is_err() {
        eprintln!("skipped: haproxy is not installed (scripts/setup-debian installs it)");
        return;
    }
    appmedia_signalling::install_crypto_provider();
    let work = std::env::temp_dir().join(format!("appmedia-instances-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let http = reqwest::Client::new();
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("media-samples");

    // The emulator.
    let mut command = Command::new(binary("appmedia"));
    command
        .args(["emulator", "--bind", "127.0.0.1:0", "--json"])
        .arg("--directory")
        .arg(directory_file(&work))
        .arg("--media-samples")
        .arg(&samples)
        .args(["--media-timeout-secs", &MEDIA_TIMEOUT_SECS.to_string()]);
    let emulator = Proc::spawn("emulator", command);
    let ready: Value = emulator
        .wait_line("the emulator's JSON line", |l| serde_json::from_str(l).ok())
        .await;
    let app = ready["applications"]
        .as_array()
        .and_then(|apps| apps.iter().find(|a| a["id"] == BOT))
        .expect("the calling bot's credentials")
        .clone();
    let emu = Emu {
        control: ready["control_url"].as_str().unwrap().to_owned(),
        http: http.clone(),
    };

    // The proxy first, with every instance down.
    let proxy = free_port();
    let ports: Vec<(&str, u16)> = INSTANCES.iter().map(|id| (*id, free_port())).collect();
    let cfg = work.join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(proxy, &ports)).unwrap();
    let mut command = Command::new("haproxy");
    command.arg("-db").arg("-f").arg(&cfg);
    let _haproxy = Proc::spawn("haproxy", command);
    within("HAProxy listening", || {
        std::net::TcpStream::connect(("127.0.0.1", proxy)).ok()
    })
    .await;
    let webhook = format!("http://127.0.0.1:{proxy}/callback");
    emu.set_webhook(&webhook).await;

    // No instance is ready: the offer is refused (503) and retried by the service.
    let early = emu.ring(SHORT_CALLER).await;

    let spawn_bot = |id: &str, port: u16| {
        let mut command = Command::new(binary("examples/recorder_bot"));
        command
            .env("APPMEDIA_APP_ID", BOT)
            .env("APPMEDIA_TENANT", app["tenant"].as_str().unwrap())
            .env(
                "APPMEDIA_CLIENT_SECRET",
                app["client_secret"].as_str().unwrap(),
            )
            .env("APPMEDIA_GRAPH_URL", ready["graph_url"].as_str().unwrap())
            .env(
                "APPMEDIA_NOTIFICATION_ISSUER",
                ready["notification_issuer"].as_str().unwrap(),
            )
            .env(
                "APPMEDIA_CALLBACK_URL",
                format!("http://127.0.0.1:{proxy}/{{instance}}/callback"),
            )
            .env("APPMEDIA_INSTANCE_ID", id)
            .env("APPMEDIA_LISTEN", format!("127.0.0.1:{port}"))
            .env("APPMEDIA_MEDIA_WORKERS", "1")
            .env("APPMEDIA_RECORDINGS_DIR", work.join(id))
            .env(
                "APPMEDIA_DRAIN_SECS",
                match id {
                    "bot-2" => BOT2_DRAIN_SECS,
                    "bot-3" => 1,
                    _ => 30,
                }
                .to_string(),
            )
            .current_dir(&work);
        if id == "bot-3" {
            command.env("APPMEDIA_MAX_CALLS", BOT3_MAX.to_string());
        }
        Proc::spawn(id, command)
    };
    let mut bots: Vec<Proc> = ports
        .iter()
        .map(|(id, port)| spawn_bot(id, *port))
        .collect();
    for bot in &bots {
        bot.wait_line("the bot listening", |l| {
            l.contains("listening on").then_some(())
        })
        .await;
    }
    within("the early call taken once an instance is up", || {
        bots.iter()
            .any(|b| recorded(b).contains(&early))
            .then_some(())
    })
    .await;

    // 30 calls (the early one included) through the shared webhook.
    let mut calls = vec![early];
    // A call every 250 ms: some 16 at once, on two cores running four debug-built processes.
    for _ in 1..30 {
        calls.push(emu.ring(SHORT_CALLER).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    within("every call ended and recorded", || {
        let done: usize = bots.iter().map(|b| ended(b).len()).sum();
        (done >= calls.len()).then_some(())
    })
    .await;
    let owners: BTreeMap<String, Vec<&str>> = calls
        .iter()
        .map(|id| {
            let owners = bots
                .iter()
                .filter(|b| recorded(b).contains(id))
                .map(|b| b.name.as_str())
                .collect();
            (id.clone(), owners)
        })
        .collect();
    for (id, owner) in &owners {
        assert_eq!(owner.len(), 1, "call {id} recorded by {owner:?}");
        let bot = bots.iter().find(|b| b.name == owner[0]).unwrap();
        // Ended as the caller hung up: every notification reached the owner.
        assert_eq!(
            ended(bot).get(id).map(String::as_str),
            Some("The call was ended by the remote party."),
            "call {id} on {}",
            owner[0]
        );
        let level = mix_level(&work.join(owner[0]), id);
        assert!(
            level > -30.0,
            "call {id}: the caller's speech is in the mix ({level:.1} dBFS)"
        );
        for other in INSTANCES.iter().filter(|i| **i != owner[0]) {
            assert!(
                !work
                    .join(other)
                    .join(format!("compliance-{id}-mixed.wav"))
                    .exists()
            );
        }
    }
    let mut answered = 0;
    for ((id, port), bot) in ports.iter().zip(&bots) {
        let taken = owners.values().filter(|o| o[0] == *id).count();
        assert!(taken >= 3, "{id} took {taken} of 30 calls: {owners:?}");
        let m = metrics(&http, *port).await;
        assert_eq!(m["notifications_unknown_call_total"], 0, "{id}: {m:?}");
        assert_eq!(m["orphan_notifications_total"], 0, "{id}: {m:?}");
        assert_eq!(m["incoming_answered_total"] as usize, taken, "{id}: {m:?}");
        if *id == "bot-3" {
            assert!(m["calls_held_peak"] as usize <= BOT3_MAX, "{id}: {m:?}");
        }
        answered += taken;
        assert_eq!(
            bot.lines()
                .iter()
                .filter(|l| l.contains("cannot answer"))
                .count(),
            0
        );
    }
    assert_eq!(answered, 30);

    // A long call on every instance, then a short one on bot-2. Where the balancer sends a
    // call depends on its turn and on each instance's health at that moment (at capacity,
    // bot-3 is out of the pool), which the spread above has tested: these calls are placed by
    // offering them through the instance's own path on the proxy, then the shared webhook is
    // set back.
    let owner_of = |bots: &[Proc], id: &str| {
        bots.iter()
            .position(|b| recorded(b).contains(id))
            .map(|i| INSTANCES[i])
    };
    let mut placed = Vec::new();
    for (instance, from) in [
        ("bot-1", LONG_CALLER),
        ("bot-2", LONG_CALLER),
        ("bot-3", LONG_CALLER),
        ("bot-2", SHORT_CALLER),
    ] {
        emu.set_webhook(&format!("http://127.0.0.1:{proxy}/{instance}/callback"))
            .await;
        let id = emu.ring(from).await;
        let owner = within("the call answered", || owner_of(&bots, &id)).await;
        assert_eq!(owner, instance, "call {id}");
        placed.push(id);
    }
    emu.set_webhook(&webhook).await;
    let [long_on_1, long_on_2, long_on_3, short_on_2]: [String; 4] =
        placed.try_into().expect("four calls placed");
    // SIGTERM bot-2: it drains.
    let terminated = Instant::now();
    bots[1].signal(libc::SIGTERM);
    let readyz = format!("http://127.0.0.1:{}/readyz", ports[1].1);
    let deadline = Instant::now() + WAIT;
    while http
        .get(&readyz)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .ok()
        != Some(503)
    {
        assert!(
            Instant::now() < deadline,
            "bot-2 never said it was not ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut during_drain = Vec::new();
    for _ in 0..3 {
        during_drain.push(emu.ring(SHORT_CALLER).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = bots[1]
        .exit(Duration::from_secs(BOT2_DRAIN_SECS + 30))
        .await;
    assert!(status.success(), "bot-2 exits 0 after draining: {status:?}");
    assert!(
        terminated.elapsed() >= Duration::from_secs(BOT2_DRAIN_SECS),
        "bot-2 held long calls: it waited for its deadline"
    );
    let ends = ended(&bots[1]);
    assert_eq!(
        ends.get(&short_on_2).map(String::as_str),
        Some("The call was ended by the remote party."),
        "a call that ends before the deadline is not cut"
    );
    assert_eq!(
        ends.get(&long_on_2).map(String::as_str),
        Some("The call was ended by the application."),
        "a call past the deadline is hung up"
    );
    // Its recording is finished: a complete WAV with the caller in it.
    assert!(mix_level(&work.join("bot-2"), &long_on_2) > -30.0);
    within(
        "the calls rung during the drain taken by the others",
        || {
            during_drain
                .iter()
                .all(|id| matches!(owner_of(&bots, id), Some("bot-1" | "bot-3")))
                .then_some(())
        },
    )
    .await;

    // kill -9 bot-1: its calls end once their media stops; bot-3's go on.
    bots[0].signal(libc::SIGKILL);
    bots[0].exit(Duration::from_secs(10)).await;
    let after_kill = emu.ring(SHORT_CALLER).await;
    within("a call after the kill taken by the survivor", || {
        (owner_of(&bots, &after_kill) == Some("bot-3")).then_some(())
    })
    .await;
    // bot-1 comes back with the same id before Graph has given up its old calls: their
    // notifications now reach a process that does not hold them, which answers 404.
    bots[0] = spawn_bot("bot-1", ports[0].1);
    bots[0]
        .wait_line("bot-1 back", |l| l.contains("listening on").then_some(()))
        .await;
    let deadline = Instant::now() + WAIT;
    while emu.view(&long_on_1).await["state"] != "terminated" {
        assert!(
            Instant::now() < deadline,
            "the call of the killed instance goes on"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(emu.view(&long_on_3).await["state"], "established");
    // The call is terminated at the service before its last notification is delivered.
    let deadline = Instant::now() + WAIT;
    loop {
        let m = metrics(&http, ports[0].1).await;
        if m["notifications_unknown_call_total"] >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old call's end refused by the new bot-1: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recorded(&bots[0]).is_empty(),
        "nothing of the old calls applied"
    );
    // And it takes new calls.
    let mut later = Vec::new();
    for _ in 0..2 {
        later.push(emu.ring(SHORT_CALLER).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    within("the calls after the restart taken", || {
        later
            .iter()
            .all(|id| matches!(owner_of(&bots, id), Some("bot-1" | "bot-3")))
            .then_some(())
    })
    .await;

    // Ctrl-C stops bot-3 the same way: its long calls are hung up at its short deadline.
    for i in [0, 2] {
        bots[i].signal(libc::SIGINT);
    }
    for i in [0, 2] {
        let status = bots[i].exit(WAIT).await;
        assert!(status.success(), "{}: {status:?}", bots[i].name);
    }
    assert_eq!(emu.view(&long_on_3).await["state"], "terminated");
    let _ = std::fs::remove_dir_all(&work);
}
