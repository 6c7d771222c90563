//! `appmedia loadtest --transport rtp|webrtc`: the real binary runs a couple of calls
//! over loopback sessions for about two seconds and reports the wire in its JSON.
//! Nothing here asserts speed (a shared machine); only that audio crossed the wire.

use std::process::Command;

fn loadtest(transport: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_appmedia"))
        .args(["loadtest", "--json", "--calls", "2", "--seconds", "2"])
        .args(["--workers", "1", "--transport", transport])
        .args(["--connect-timeout", "20"])
        .output()
        .expect("run appmedia");
    assert!(
        out.status.success(),
        "appmedia loadtest --transport {transport} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn check(v: &serde_json::Value, transport: &str) {
    assert_eq!(v["transport"], transport, "{v}");
    assert_eq!(v["calls"], 2, "{v}");
    assert!(v["ticks"].as_u64().unwrap_or(0) > 0, "no ticks: {v}");
    for key in [
        "cpu_per_call_pct",
        "transport_cpu_per_call_pct",
        "media_cpu_per_call_pct",
    ] {
        assert!(v[key].as_f64().is_some(), "{key} missing: {v}");
    }
    let wire = &v["wire"];
    for key in [
        "setup_ms",
        "packets_sent",
        "packets_received",
        "packets_missing",
    ] {
        assert!(wire[key].as_f64().is_some(), "wire.{key} missing: {v}");
    }
    assert!(
        wire["packets_received"].as_u64().unwrap_or(0) > 0,
        "no audio crossed the wire: {v}"
    );
    assert!(wire["packets_sent"].as_u64().unwrap_or(0) > 0, "{v}");
    assert_eq!(wire["send_errors"], 0, "{v}");
}

#[test]
fn loadtest_over_plain_rtp() {
    let v = loadtest("rtp");
    check(&v, "rtp");
    // Plain RTP has neither RTCP loss nor SRTP.
    assert!(v["wire"]["srtp_rejected"].is_null(), "{v}");
}

#[test]
fn loadtest_over_webrtc() {
    let v = loadtest("webrtc");
    check(&v, "webrtc");
    assert!(v["wire"]["packets_lost"].as_i64().is_some(), "{v}");
    assert!(v["wire"]["srtp_rejected"].as_u64().is_some(), "{v}");
}

#[test]
fn loadtest_without_a_transport_has_no_wire() {
    let v = loadtest("none");
    assert_eq!(v["transport"], "none", "{v}");
    assert!(v["wire"].is_null(), "{v}");
    assert!(v["ticks"].as_u64().unwrap_or(0) > 0, "{v}");
}
