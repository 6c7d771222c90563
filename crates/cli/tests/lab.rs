//! Two `appmedia lab` processes send each other a tone over plain RTP; each recording
//! must hold the other's tone.

use std::path::Path;
use std::process::Command;

use appmedia_testkit::audio::{goertzel, read_wav};

fn write_tone(path: &Path, freq: f32, rate: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..rate * 3 {
        let t = i as f32 / rate as f32;
        w.write_sample((0.5 * (2.0 * std::f32::consts::PI * freq * t).sin() * 32767.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
}

fn free_port() -> std::net::SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn two_lab_processes_hear_each_other() {
    let dir = std::env::temp_dir().join(format!("appmedia-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (free_port(), free_port());
    // One 48 kHz file and one 16 kHz file: both input paths.
    write_tone(&dir.join("a.wav"), 440.0, 48_000);
    write_tone(&dir.join("b.wav"), 1000.0, 16_000);
    let spawn = |listen, send_to, play: &str, record: &str| {
        Command::new(env!("CARGO_BIN_EXE_appmedia"))
            .args([
                "lab",
                "--listen",
                &format!("{listen}"),
                "--send-to",
                &format!("{send_to}"),
            ])
            .args(["--seconds", "2", "--json", "--play"])
            .arg(dir.join(play))
            .arg("--record")
            .arg(dir.join(record))
            .output()
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| spawn(a, b, "a.wav", "a-heard.wav"));
        let hb = s.spawn(|| spawn(b, a, "b.wav", "b-heard.wav"));
        (ha.join().unwrap().unwrap(), hb.join().unwrap().unwrap())
    });
    for (name, out) in [("a", &ra), ("b", &rb)] {
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            stats["transport"]["rtpReceived"].as_u64().unwrap() > 50,
            "{name}: {stats}"
        );
        assert!(
            stats["transport"]["packetsSent"].as_u64().unwrap() > 50,
            "{name}: {stats}"
        );
    }
    for (file, expect, other) in [
        ("a-heard.wav", 1000.0, 440.0),
        ("b-heard.wav", 440.0, 1000.0),
    ] {
        let (rate, samples) = read_wav(&dir.join(file));
        let tail = &samples[samples.len() / 2..];
        let rate = rate as f32;
        let (hit, miss) = (goertzel(tail, expect, rate), goertzel(tail, other, rate));
        assert!(
            hit > 10.0 * miss,
            "{file}: {expect} Hz power {hit:.3e} vs {other} Hz {miss:.3e}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_fail_with_a_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_appmedia"))
        .args([
            "lab",
            "--listen",
            "127.0.0.1:0",
            "--send-to",
            "127.0.0.1:9",
            "--seconds",
            "1",
        ])
        .args(["--play", "/nonexistent/x.wav"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.wav"));
}
