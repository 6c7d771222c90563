//! Headless Chromium for the browser interop tests (WebRTC against our stack).

use std::path::Path;
use std::process::Command;

/// Where Debian's `chromium` package puts the browser (scripts/setup-debian installs it).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// True (after saying the `test` is skipped) when [`CHROMIUM`] is not installed.
pub fn chromium_missing(test: &str) -> bool {
    let missing = !Path::new(CHROMIUM).exists();
    if missing {
        eprintln!(
            "SKIPPED {test}: {CHROMIUM} is missing \
             (Debian: apt-get install chromium; scripts/setup-debian installs it)"
        );
    }
    missing
}

/// A headless Chromium opening `url`, with `fake_mic` (a WAV) as its microphone, the media
/// permission prompt answered yes, autoplay allowed, loopback ICE candidates allowed, and
/// its profile in `profile_dir`; `extra` switches come before the URL. Stdio is left to
/// the caller.
pub fn headless_chromium(
    fake_mic: &Path,
    profile_dir: &Path,
    extra: &[&str],
    url: &str,
) -> Command {
    let mut command = Command::new(CHROMIUM);
    command
        .args([
            // Chromium 132+ has only the new headless mode: `--headless` is `--headless=new`.
            "--headless=new",
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
            fake_mic.display()
        ))
        .arg(format!("--user-data-dir={}", profile_dir.display()))
        .args(extra)
        .arg(url);
    command
}

/// The emulator's softphone page in headless Chromium, for a test: a fresh directory holds the
/// fake microphone (a tone), the profile and the browser's log; the browser is killed (and
/// reaped) when this is dropped, whatever the test's outcome, then the page's own log lines
/// (its console) are printed and the directory removed.
pub struct SoftphoneBrowser {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl SoftphoneBrowser {
    /// Opens `url` with a `tone_hz` sine (3 s, looped by Chromium) as the microphone.
    pub fn open(url: &str, tone_hz: f32) -> SoftphoneBrowser {
        let dir = std::env::temp_dir().join(format!(
            "appmedia-softphone-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let mic = dir.join("mic.wav");
        crate::audio::write_tone_wav(&mic, tone_hz, 48_000, 3.0, 0.5);
        let log = std::fs::File::create(dir.join("chromium.log")).expect("the browser's log");
        // The page's console goes to the log (--enable-logging=stderr).
        let child = headless_chromium(
            &mic,
            &dir.join("profile"),
            &["--enable-logging=stderr"],
            url,
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(log))
        .spawn()
        .expect("start chromium");
        SoftphoneBrowser { child, dir }
    }

    /// The page's uncaught errors so far (none expected).
    pub fn uncaught(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("chromium.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Uncaught"))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for SoftphoneBrowser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(self.dir.join("chromium.log")).unwrap_or_default();
        for line in text
            .lines()
            .filter(|l| l.contains("softphone: ") || l.contains("Uncaught"))
        {
            eprintln!("page: {}", line.split("softphone: ").nth(1).unwrap_or(line));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client of the softphone page's WebSocket (`/softphone/ws`), speaking its JSON protocol
/// as the page's script does, for tests that play the page from Rust.
pub struct SoftphonePage {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// How long [`expect`](Self::expect) waits for a message.
    patience: std::time::Duration,
}

impl SoftphonePage {
    /// Connects to the emulator at `base_url` (`http://…`) with this run's softphone `key`;
    /// each later wait for a message is bounded by `patience`.
    pub async fn open(base_url: &str, key: &str, patience: std::time::Duration) -> SoftphonePage {
        let url = format!(
            "{}/softphone/ws?key={key}",
            base_url.replacen("http", "ws", 1)
        );
        let (ws, _) = tokio::time::timeout(patience, tokio_tungstenite::connect_async(url))
            .await
            .expect("connects in time")
            .expect("the WebSocket opens");
        SoftphonePage { ws, patience }
    }

    /// Sends one message.
    pub async fn send(&mut self, message: serde_json::Value) {
        use futures_util::SinkExt;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Text(
                message.to_string().into(),
            ))
            .await
            .expect("sent");
    }

    /// The next message of type `kind` (others are skipped), within the page's patience.
    pub async fn expect(&mut self, kind: &str) -> serde_json::Value {
        use futures_util::StreamExt;
        let deadline = tokio::time::Instant::now() + self.patience;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no {kind:?} message within {:?}", self.patience));
            // The emulator sends JSON text only: anything else ends the test.
            let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = next else {
                panic!("the WebSocket ended waiting for {kind:?}: {next:?}");
            };
            let value: serde_json::Value = serde_json::from_str(text.as_str()).expect("JSON");
            if value["type"] == kind {
                return value;
            }
        }
    }

    /// The error message the emulator answers `request` with.
    pub async fn refused(&mut self, request: serde_json::Value) -> String {
        self.send(request).await;
        self.expect("error").await["message"]
            .as_str()
            .expect("an error message")
            .to_owned()
    }
}
