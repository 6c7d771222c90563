//! Headless Chromium for the browser interop tests (WebRTC against our stack).

use std::path::Path;
use std::process::Command;

/// Where Debian's `chromium` package puts the browser (scripts/setup-debian installs it).
pub const CHROMIUM: &str = "/usr/bin/chromium";

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
