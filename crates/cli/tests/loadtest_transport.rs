//! `appmedia loadtest --transport rtp|webrtc|webrtc-port [--far-end process]`: the real
//! binary runs a couple of calls
//! over loopback sessions for about two seconds and reports the wire in its JSON.
//! Nothing here asserts speed (a shared machine); only that audio crossed the wire.

use std::process::Command;

fn loadtest(transport: &str) -> serde_json::Value {
    loadtest_with(transport, &[])
}

fn loadtest_with(transport: &str, more: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_appmedia"))
        .args(["loadtest", "--json", "--calls", "2", "--seconds", "2"])
        .args(["--workers", "1", "--transport", transport])
        .args(more)
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
        "rss_per_call_kib",
        "anon_rss_per_call_kib",
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

#[test]
fn loadtest_on_one_media_port_in_process() {
    let v = loadtest("webrtc-port");
    check(&v, "webrtc-port");
    let wire = &v["wire"];
    // The bots' shared port and one socket per remote party, all in this process.
    assert_eq!(wire["udp_sockets"], 3, "{v}");
    assert_eq!(wire["port"]["sessions"], 2, "{v}");
}

#[test]
fn loadtest_on_one_media_port_with_the_far_ends_in_a_child_process() {
    let v = loadtest_with("webrtc-port", &["--far-end", "process"]);
    check(&v, "webrtc-port");
    let wire = &v["wire"];
    assert_eq!(wire["far_end"], "process", "{v}");
    // This process holds the bot side only: the shared port, no socket per call.
    assert_eq!(wire["udp_sockets"], 1, "{v}");
    assert_eq!(wire["port"]["sessions"], 2, "{v}");
    assert!(
        wire["port"]["worker_transport_ticks"].as_u64().unwrap_or(0) > 0,
        "the sessions ran on the media worker: {v}"
    );
    assert!(v["bot_transport_vs_codec"].as_f64().is_some(), "{v}");
}

#[test]
fn loadtest_on_one_media_port_of_two_sockets() {
    let v = loadtest_with(
        "webrtc-port",
        &["--far-end", "process", "--port-sockets", "2"],
    );
    check(&v, "webrtc-port");
    assert_eq!(v["wire"]["udp_sockets"], 2, "{v}");
    assert_eq!(v["wire"]["port"]["sessions"], 2, "{v}");
}

#[test]
fn loadtest_with_the_far_ends_in_a_child_process_keeps_a_socket_per_bot_session() {
    let v = loadtest_with("webrtc", &["--far-end", "process"]);
    check(&v, "webrtc");
    assert_eq!(v["wire"]["udp_sockets"], 2, "{v}");
}

#[test]
fn a_far_end_process_needs_a_webrtc_transport() {
    let out = Command::new(env!("CARGO_BIN_EXE_appmedia"))
        .args(["loadtest", "--calls", "1", "--seconds", "1"])
        .args(["--transport", "rtp", "--far-end", "process"])
        .output()
        .expect("run appmedia");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--far-end process needs"), "{stderr}");
}
