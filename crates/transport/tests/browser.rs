//! Proof against a WebRTC stack nobody here wrote: headless Chromium connects its
//! RTCPeerConnection to a MediaSession, and to a PortSession on a shared media port.
//!
//! The page fetches the session's offer from a tiny HTTP server on 127.0.0.1, answers it,
//! posts the answer back, and after a few seconds posts its `getStats()` result. Chromium
//! captures a WAV made here (a 440 Hz tone) as its microphone; the session sends a 1 kHz
//! tone. Both directions are checked by frequency.
//!
//! Installs nothing: skipped (with a message) when /usr/bin/chromium is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use appmedia_testkit::browser::{chromium_missing, headless_chromium};
use appmedia_transport::{MediaPort, MediaSession, PortSession, TransportConfig, WebRtcSession};
use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

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
    if (location.search === '?browser-offers') {
      for (const track of stream.getAudioTracks()) pc.addTrack(track, stream);
      await pc.setLocalDescription(await pc.createOffer());
      post('/log', 'offer created');
      while (pc.iceGatheringState !== 'complete') await sleep(50);
      post('/log', 'gathered');
      const answer = await (await post('/browser-offer', pc.localDescription.sdp)).text();
      post('/log', 'answer received: ' + answer.length + ' bytes');
      await pc.setRemoteDescription({type: 'answer', sdp: answer});
      post('/log', 'answer applied');
    } else {
      const offer = await (await fetch('/offer')).text();
      await pc.setRemoteDescription({type: 'offer', sdp: offer});
      for (const track of stream.getAudioTracks()) pc.addTrack(track, stream);
      await pc.setLocalDescription(await pc.createAnswer());
      while (pc.iceGatheringState !== 'complete') await sleep(50);
      await post('/answer', pc.localDescription.sdp);
    }
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
    /// The browser's offer, and where to send the session's answer.
    BrowserOffer(String, tokio::sync::oneshot::Sender<String>),
    Result(String),
    Log(String),
}

/// Serves the page, the offer, and collects what the page posts. HTTP/1.1, one request
/// per connection, no keep-alive: all this page needs.
async fn serve(listener: TcpListener, offer: Arc<String>, events: mpsc::Sender<Event>) {
    // `offer` is empty when the browser makes the offer.
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
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (content_type, response) = match (method, path) {
        ("GET", "/") => ("text/html", PAGE.to_owned()),
        ("GET", "/offer") => ("application/sdp", offer.to_owned()),
        ("POST", "/browser-offer") => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = events.send(Event::BrowserOffer(body, tx)).await;
            ("application/sdp", rx.await.unwrap_or_default())
        }
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

fn write_tone_wav(path: &Path) {
    write_wav(path, &tone(440.0, 3.0, 0.5));
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("appmedia-browser-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Which side makes the offer.
#[derive(Clone, Copy, PartialEq)]
enum Offerer {
    /// The session offers (as a bot does with its blob); the browser answers.
    Session,
    /// A session on a shared media port offers; the browser answers.
    PortSession,
    /// The browser offers (as the emulator's softphone page will); the session answers.
    Browser,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_answers_a_media_session_offer() {
    exchange_with_chromium(Offerer::Session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_answers_a_port_session_offer() {
    exchange_with_chromium(Offerer::PortSession).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_session_answers_a_chromium_offer() {
    exchange_with_chromium(Offerer::Browser).await;
}

async fn exchange_with_chromium(offerer: Offerer) {
    if chromium_missing("chromium interop test") {
        return;
    }
    let dir = scratch_dir();
    let wav = dir.join("tone-440.wav");
    write_tone_wav(&wav);
    let config = TransportConfig {
        connect_timeout: Duration::from_secs(20),
        ..TransportConfig::default()
    };
    let port = MediaPort::bind(&config, 0).unwrap();
    let mut session = match offerer {
        Offerer::Session => Some(WebRtcSession::Own(
            MediaSession::offer(config.clone()).await.unwrap(),
        )),
        Offerer::PortSession => Some(WebRtcSession::Port(
            PortSession::offer(&port, config.clone()).unwrap(),
        )),
        Offerer::Browser => None,
    };
    let offer = Arc::new(
        session
            .as_ref()
            .map(|s| s.local_sdp().to_owned())
            .unwrap_or_default(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = match offerer {
        Offerer::Session | Offerer::PortSession => {
            format!("http://{}/", listener.local_addr().unwrap())
        }
        Offerer::Browser => format!("http://{}/?browser-offers", listener.local_addr().unwrap()),
    };
    let (events_tx, mut events) = mpsc::channel(16);
    let server = tokio::spawn(serve(listener, offer, events_tx));

    let _chromium = Chromium(
        headless_chromium(&wav, &dir.join("profile"), &[], &url)
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
                    let s = session.as_ref().expect("the session offered");
                    s.accept_sdp(&sdp).await.expect("browser answer accepted");
                    s.connected().await.expect("browser connects");
                    worker = Some(run_media_worker(
                        s.take_endpoint().unwrap(),
                        tone(1000.0, 1.0, 0.5),
                        Duration::from_secs(6),
                    ));
                }
                Event::BrowserOffer(sdp, reply) => {
                    let s = MediaSession::answer_sdp(config.clone(), &sdp)
                        .await
                        .expect("the browser's offer is usable");
                    let _ = reply.send(s.local_sdp().to_owned());
                    tokio::time::timeout(Duration::from_secs(20), s.connected())
                        .await
                        .expect("connects within 20 s")
                        .expect("browser connects");
                    worker = Some(run_media_worker(
                        s.take_endpoint().unwrap(),
                        tone(1000.0, 1.0, 0.5),
                        Duration::from_secs(6),
                    ));
                    session = Some(WebRtcSession::Own(s));
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
    let session = session.expect("a session was made");
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
