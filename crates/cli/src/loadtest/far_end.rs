//! `appmedia loadtest --far-end process`: the remote parties and their WebRTC sessions run in
//! a child process, so the report measures what a bot process carries (its CPU, RSS and UDP
//! sockets) without the far ends' share.
//!
//! The child is the same binary, `appmedia loadtest --serve-far-end`. One JSON object per
//! line on its stdin is a bot's offer (`{"index": i, "blob": "…"}`); it answers each on its
//! stdout (`{"index": i, "blob": "…"}`, or `{"index": i, "error": "…"}`), and from the moment
//! that session connects its remote party speaks (the run's script and turns) on a pacing
//! thread. When its stdin closes it stops, closes its sessions and prints one last line, the
//! totals of its sessions, then exits.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appmedia_media::frame::FRAME_DURATION;
use appmedia_transport::{MediaSession, RtpEndpoint, TransportConfig};
use serde_json::json;

use super::{BotMode, LoadtestError, RemoteParty, Script, VOICES};

/// One far end: its session, its queues, and the party that speaks into them.
struct Party {
    endpoint: RtpEndpoint,
    remote: RemoteParty,
    ticks: usize,
}

/// Runs the far end until stdin closes. Errors go to stderr; the parent sees the exit code.
pub(super) fn serve(mode: BotMode, connect_timeout: Duration) -> Result<(), LoadtestError> {
    let scripts: Vec<Arc<Script>> = (0..VOICES)
        .map(|v| Script::new(v).map(Arc::new))
        .collect::<Result<_, _>>()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(super::wire::NET_THREAD)
        .enable_all()
        .build()
        .map_err(|e| LoadtestError::Transport(format!("far end runtime: {e}")))?;
    let parties: Arc<Mutex<Vec<Party>>> = Arc::default();
    let sessions: Arc<Mutex<Vec<Arc<MediaSession>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let pacer = {
        let (parties, stop) = (parties.clone(), stop.clone());
        std::thread::Builder::new()
            .name("far-end-pacer".into())
            .spawn(move || pace(&parties, &stop, mode))
            .map_err(|e| LoadtestError::Transport(format!("far end pacer: {e}")))?
    };
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let request: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("far end: not JSON: {e}");
                continue;
            }
        };
        let index = request["index"].as_u64().unwrap_or(0) as usize;
        let Some(offer) = request["blob"].as_str() else {
            continue;
        };
        let config = TransportConfig {
            connect_timeout,
            ..TransportConfig::default()
        };
        let reply = match runtime.block_on(MediaSession::answer_blob(config, offer)) {
            Ok((session, answer)) => {
                let session = Arc::new(session);
                lock(&sessions).push(session.clone());
                // The party speaks once its session connects.
                let (parties, script) = (parties.clone(), scripts[index % VOICES as usize].clone());
                runtime.spawn(async move {
                    if session.connected().await.is_ok()
                        && let Some(endpoint) = session.take_endpoint()
                    {
                        let ext = session
                            .audio_level_extension_id()
                            .unwrap_or(super::AUDIO_LEVEL_EXT);
                        lock(&parties).push(Party {
                            remote: RemoteParty::new(index, script, ext),
                            endpoint,
                            ticks: index * 37,
                        });
                    }
                });
                json!({"index": index, "blob": answer})
            }
            Err(e) => json!({"index": index, "error": e.to_string()}),
        };
        let mut out = stdout.lock();
        if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = pacer.join();
    let sessions = std::mem::take(&mut *lock(&sessions));
    let totals = runtime.block_on(async {
        let mut totals = super::wire::WireTotals::default();
        for session in &sessions {
            totals.add_webrtc(&session.stats().await);
        }
        for session in &sessions {
            let _ = tokio::time::timeout(Duration::from_secs(2), session.close()).await;
        }
        totals
    });
    drop(lock(&parties).drain(..).collect::<Vec<_>>());
    drop(sessions);
    runtime.shutdown_timeout(Duration::from_secs(2));
    println!("{}", totals.far_end_json());
    Ok(())
}

/// Every 20 ms on absolute deadlines: each connected party's packet for the tick (when it
/// talks), and what it heard drained.
fn pace(parties: &Mutex<Vec<Party>>, stop: &AtomicBool, mode: BotMode) {
    let start = Instant::now();
    let mut k: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        k += 1;
        let due = start + FRAME_DURATION * k;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        for party in lock(parties).iter_mut() {
            let (remote_talks, _) = mode.turns(party.ticks);
            party.ticks += 1;
            if let Some(packet) = party.remote.next_packet().filter(|_| remote_talks) {
                drop(party.endpoint.outgoing.push(packet));
            }
            while party.endpoint.incoming.pop().is_some() {}
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The parent's end: the child process and the lines to and from it.
pub(super) struct FarEnd {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: Option<std::io::BufReader<std::process::ChildStdout>>,
}

impl FarEnd {
    /// Starts the child far end for a run whose bots are in `mode`.
    pub(super) fn spawn(mode: BotMode, connect_timeout: Duration) -> Result<Self, LoadtestError> {
        let fail = |what: String| LoadtestError::Transport(format!("far end process: {what}"));
        let exe = std::env::current_exe().map_err(|e| fail(format!("no executable path: {e}")))?;
        let mut child = std::process::Command::new(exe)
            .args(["loadtest", "--serve-far-end", "--bot", mode.name()])
            .args(["--connect-timeout", &connect_timeout.as_secs().to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .map_err(|e| fail(format!("cannot start: {e}")))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| fail("no stdout".into()))?;
        Ok(FarEnd {
            child,
            stdin,
            stdout: Some(std::io::BufReader::new(stdout)),
        })
    }

    /// Sends call `index`'s offer; returns the far end's answer blob.
    pub(super) fn answer(&mut self, index: usize, offer: &str) -> Result<String, String> {
        let stdin = self.stdin.as_mut().ok_or("the far end's input is closed")?;
        writeln!(stdin, "{}", json!({"index": index, "blob": offer}))
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("cannot write to the far end: {e}"))?;
        let stdout = self
            .stdout
            .as_mut()
            .ok_or("the far end's output is closed")?;
        let mut line = String::new();
        match stdout.read_line(&mut line) {
            Ok(0) => return Err("the far end exited".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("cannot read the far end: {e}")),
        }
        let reply: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("far end reply: {e}"))?;
        if let Some(error) = reply["error"].as_str() {
            return Err(format!("far end: {error}"));
        }
        reply["blob"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "far end reply without a blob".into())
    }

    /// Closes its input, waits (bounded) for its totals line and its exit.
    pub(super) fn finish(mut self) -> Option<serde_json::Value> {
        drop(self.stdin.take());
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(mut stdout) = self.stdout.take() {
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = stdout.read_line(&mut line);
                let _ = tx.send(line);
            });
        }
        let totals = rx
            .recv_timeout(Duration::from_secs(15))
            .ok()
            .and_then(|line| serde_json::from_str(&line).ok());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return totals;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        totals
    }
}

impl Drop for FarEnd {
    fn drop(&mut self) {
        // A run that failed half-way: never leave the child behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
