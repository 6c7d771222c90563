//! `appmedia emulator` as a user runs it: the built binary, on a free loopback port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use appmedia_emulator::Directory;

/// Kills the emulator when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(host_port: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(host_port).expect("the emulator listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn print_directory_prints_the_built_in_directory() {
    let output = Command::new(env!("CARGO_BIN_EXE_appmedia"))
        .args(["emulator", "--print-directory"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(Directory::from_toml_str(&text).unwrap(), Directory::seed());
}

#[test]
fn a_bad_directory_file_exits_2_naming_the_file() {
    let output = Command::new(env!("CARGO_BIN_EXE_appmedia"))
        .args(["emulator", "--directory", "/nonexistent/directory.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/directory.toml"), "{stderr}");
}

#[test]
fn serves_on_loopback_and_publishes_the_notification_keys() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_appmedia"))
        .args(["emulator", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    let base = first
        .trim()
        .strip_prefix("Graph calling emulator on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    assert!(base.starts_with("127.0.0.1:"), "{base}");
    let response = http_get(base, "/.well-known/openid-configuration");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"jwks_uri\""), "{response}");
    let response = http_get(base, "/v1.0/communications/calls/nope");
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(
        response.contains("InvalidAuthenticationToken"),
        "{response}"
    );
}
