//! Proof against a WebRTC stack nobody here wrote: headless Chromium connects its
//! RTCPeerConnection to a MediaSession.
//!
//! The page fetches the session's offer from a tiny HTTP server on 127.0.0.1, answers it,
//! posts the answer back, and after a few seconds posts its `getStats()` result. Chromium
//! captures a WAV made here (a 440 Hz tone) as its microphone; the session sends a 1 kHz
//! tone. Both directions are checked by frequency.
//!
//! Installs nothing: skipped (with a message) when /usr/bin/chromium is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use appmedia_transport::{MediaSession, TransportConfig};
use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const CHROMIUM: &str = "/usr/bin/chromium";

const PAGE: &str = r#"<!doctype html>
<html><body><script>
const post = (path, body) => fetch(path, {method: 'POST', body});
const sleep = ms => new Promise(r => setTimeout(r, ms));
(async () => {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({audio: {
      echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
    const pc = new RTCPeerConnection();
    const audio = new Audio();
    audio.autoplay = true;
    pc.ontrack = e => { audio.srcObject = e.streams[0] || new MediaStream([e.track]); audio.play().catch(err => post('/log', 'play: ' + err)); };
    const offer = await (await fetch('/offer')).text();
    await pc.setRemoteDescription({type: 'offer', sdp: offer});
    for (const track of stream.getAudioTracks()) pc.addTrack(track, stream);
    await pc.setLocalDescription(await pc.createAnswer());
    while (pc.iceGatheringState !== 'complete') await sleep(50);
    await post('/answer', pc.localDescription.sdp);
    let inbound = {};
    for (let i = 0; i < 60; i++) {
      await sleep(200);
      (await pc.getStats()).forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'audio') inbound = s; });
      if (inbound.packetsReceived > 100 && inbound.totalAudioEnergy > 0) break;
    }
    await post('/result', JSON.stringify({
      connectionState: pc.connectionState,
      packetsReceived: inbound.packetsReceived || 0,
      totalAudioEnergy: inbound.totalAudioEnergy || 0,
      bytesReceived: inbound.bytesReceived || 0}));
  } catch (err) {
    await post('/result', JSON.stringify({error: String(err)}));
  }
})();
</script></body></html>"#;

/// Chromium, killed (and reaped) when dropped, whatever the test's outcome.
struct Chromium(Child);

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

enum Event {
    Answer(String),
    Result(String),
    Log(String),
}

/// Serves the page, the offer, and collects what the page posts. HTTP/1.1, one request
/// per connection, no keep-alive: all this page needs.
async fn serve(listener: TcpListener, offer: Arc<String>, events: mpsc::Sender<Event>) {
    while let Ok((stream, _)) = listener.accept().await {
        let offer = offer.clone();
        let events = events.clone();
        tokio::spawn(async move {
            let _ = handle(stream, &offer, &events).await;
        });
    }
}

async fn handle(
    stream: TcpStream,
    offer: &str,
    events: &mpsc::Sender<Event>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    let mut content_length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await? == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; content_length.min(1 << 20)];
    reader.read_exact(&mut body).await?;
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (content_type, response) = match (method, path) {
        ("GET", "/") => ("text/html", PAGE.to_owned()),
        ("GET", "/offer") => ("application/sdp", offer.to_owned()),
        ("POST", "/answer") => {
            let _ = events.send(Event::Answer(body)).await;
            ("text/plain", String::new())
        }
        ("POST", "/result") => {
            let _ = events.send(Event::Result(body)).await;
            ("text/plain", String::new())
        }
        ("POST", "/log") => {
            let _ = events.send(Event::Log(body)).await;
            ("text/plain", String::new())
        }
        _ => ("text/plain", "not found".to_owned()),
    };
    let mut stream = reader.into_inner();
    stream
        .write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{response}",
                response.len()
            )
            .as_bytes(),
        )
        .await?;
    stream.shutdown().await
}

fn write_wav(path: &Path, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        writer.write_sample(s).unwrap();
    }
    writer.finalize().unwrap();
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("appmedia-browser-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_exchanges_opus_with_a_media_session() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!(
            "SKIPPED chromium_exchanges_opus_with_a_media_session: {CHROMIUM} is missing \
             (Debian: apt-get install chromium; scripts/setup-debian installs it)"
        );
        return;
    }
    let dir = scratch_dir();
    let wav = dir.join("tone-440.wav");
    write_wav(&wav, &tone(440.0, 3.0, 0.5));

    let session = MediaSession::offer(TransportConfig {
        connect_timeout: Duration::from_secs(20),
        ..TransportConfig::default()
    })
    .await
    .unwrap();
    let offer = Arc::new(session.local_sdp().to_owned());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let (events_tx, mut events) = mpsc::channel(16);
    let server = tokio::spawn(serve(listener, offer, events_tx));

    let _chromium = Chromium(
        Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required",
                "--allow-loopback-in-peer-connection",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
            ])
            .arg(format!(
                "--use-file-for-fake-audio-capture={}",
                wav.display()
            ))
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg(&url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium"),
    );

    let mut worker = None;
    let mut log = Vec::new();
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(event) = events.recv().await {
            match event {
                Event::Answer(sdp) => {
                    session
                        .accept_sdp(&sdp)
                        .await
                        .expect("browser answer accepted");
                    session.connected().await.expect("browser connects");
                    worker = Some(run_media_worker(
                        session.take_endpoint().unwrap(),
                        tone(1000.0, 1.0, 0.5),
                        Duration::from_secs(6),
                    ));
                }
                Event::Log(line) => log.push(line),
                Event::Result(json) => return json,
            }
        }
        String::from("{\"error\":\"server stopped\"}")
    })
    .await
    .unwrap_or_else(|_| panic!("no result from the browser within 60 s; page log: {log:?}"));
    server.abort();

    let browser: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert!(
        browser.get("error").is_none(),
        "browser: {browser}; log: {log:?}"
    );
    assert!(
        browser["packetsReceived"].as_u64().unwrap_or(0) > 0,
        "browser received no RTP: {browser}"
    );
    assert!(
        browser["totalAudioEnergy"].as_f64().unwrap_or(0.0) > 0.0,
        "browser heard silence: {browser}"
    );

    let worker = worker.expect("the page posted an answer");
    let heard = tokio::task::spawn_blocking(move || worker.join().unwrap())
        .await
        .unwrap();
    let stats = session.stats().await;
    assert!(
        heard.received > 50,
        "session received {} packets; {stats:?}",
        heard.received
    );
    let tail = &heard.decoded[heard.decoded.len().min(9600)..];
    let (freq, ratio) = dominant(tail, &[440.0, 1000.0, 250.0, 2000.0], RATE);
    assert_eq!(
        freq, 440.0,
        "session heard {freq} Hz from the browser (ratio {ratio:.1})"
    );
    assert!(ratio > 10.0, "browser's tone not clean: ratio {ratio:.1}");
    eprintln!(
        "browser: {browser}; session heard {freq} Hz (ratio {ratio:.0}) in {} packets; {stats:?}",
        heard.received
    );
    session.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
