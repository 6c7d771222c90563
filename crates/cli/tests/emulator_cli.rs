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
    // Each meeting's join link, as a comment, that reads back as the meeting.
    let meeting = &Directory::seed().meetings[0];
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("# {}: https://", meeting.join_meeting_id)))
        .unwrap_or_else(|| panic!("no join link line:\n{text}"));
    let link =
        appmedia_signalling::join_url::TeamsJoinLink::parse(line.split_once(": ").unwrap().1)
            .unwrap();
    assert_eq!(
        (
            link.thread_id.as_str(),
            link.organizer_id.as_str(),
            link.tenant_id.as_str()
        ),
        (
            meeting.thread_id.as_str(),
            meeting.organizer.as_str(),
            meeting.tenant.as_str()
        )
    );
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

/// One HTTP/1.1 request; the status and the body.
fn http(
    host_port: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(host_port).expect("the emulator listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A bot's webhook that takes one notification: its Authorization header and JSON body.
fn take_notification(listener: &std::net::TcpListener) -> (String, serde_json::Value) {
    // Bounded: a notification that never comes fails the test instead of hanging it.
    listener.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(std::time::Instant::now() < deadline, "no notification came");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let (mut authorization, mut length) = (String::new(), 0usize);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "authorization" => authorization = value.trim().to_owned(),
                "content-length" => length = value.trim().parse().unwrap(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    stream
        .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .unwrap();
    (authorization, serde_json::from_slice(&body).unwrap())
}

#[test]
fn json_mode_prints_one_ready_line_and_its_urls_ring_a_bot() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_appmedia"))
        .args(["emulator", "--bind", "127.0.0.1:0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut running = Running(child);
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let ready: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let base = ready["base_url"].as_str().unwrap();
    let host = base.strip_prefix("http://").unwrap();
    assert_eq!(ready["graph_url"], format!("{base}/v1.0"));
    assert_eq!(ready["control_url"], format!("{base}/control"));
    let softphone = ready["softphone_url"].as_str().unwrap();
    assert!(
        softphone.starts_with(&format!("{base}/softphone?key="))
            && softphone.len() > base.len() + 30,
        "{softphone}"
    );
    assert!(
        ready["notification_openid_url"]
            .as_str()
            .unwrap()
            .starts_with(base)
    );
    // ACS Call Automation: an https endpoint with this run's key, its CA file, its number.
    let acs = &ready["acs"];
    let connection_string = acs["connection_string"].as_str().unwrap();
    assert!(
        connection_string.starts_with("endpoint=https://127.0.0.1:")
            && connection_string.contains(";accesskey="),
        "{connection_string}"
    );
    let ca = std::fs::read_to_string(acs["ca_cert"].as_str().unwrap()).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(acs["phone_number"].as_str().unwrap().starts_with('+'));
    assert!(
        acs["events_openid_url"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:")
    );
    assert!(acs["events_issuer"].as_str().is_some());
    let app = &ready["applications"][0];
    let (app_id, secret) = (
        app["id"].as_str().unwrap(),
        app["client_secret"].as_str().unwrap(),
    );
    let token_url = app["token_url"].as_str().unwrap();
    assert_eq!(
        token_url,
        format!(
            "{base}/{}/oauth2/v2.0/token",
            app["tenant"].as_str().unwrap()
        )
    );

    // A tiny bot: its webhook, set through the control API; John calls it.
    let webhook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let webhook_url = format!("http://{}/calls", webhook.local_addr().unwrap());
    let json = [("Content-Type", "application/json")];
    let (status, _) = http(
        host,
        "PUT",
        &format!("/control/applications/{app_id}/calling-webhook"),
        &json,
        &format!(r#"{{"url":"{webhook_url}"}}"#),
    );
    assert_eq!(status, 204);
    let (status, body) = http(
        host,
        "POST",
        "/control/incoming-calls",
        &json,
        &format!(r#"{{"from":"112f7296-5fa4-42ca-bae8-6a692b15d4b8","to":"{app_id}"}}"#),
    );
    assert_eq!(status, 201, "{body}");
    let call_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["callId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (authorization, offered) = take_notification(&webhook);
    assert!(authorization.starts_with("Bearer "), "{authorization}");
    let call = &offered["value"][0]["resourceData"];
    assert_eq!(
        (call["id"].as_str(), call["state"].as_str()),
        (Some(call_id.as_str()), Some("incoming"))
    );

    // The bot signs in with the line's credentials and rejects the call.
    let (status, token) = http(
        host,
        "POST",
        token_url.strip_prefix(base).unwrap(),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!(
            "grant_type=client_credentials&client_id={app_id}&client_secret={secret}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"
        ),
    );
    assert_eq!(status, 200, "{token}");
    let token = serde_json::from_str::<serde_json::Value>(&token).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let bearer = format!("Bearer {token}");
    let (status, body) = http(
        host,
        "POST",
        &format!("/v1.0/communications/calls/{call_id}/reject"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &bearer),
        ],
        r#"{"reason":"busy"}"#,
    );
    assert_eq!(status, 202, "{body}");
    let (_, ended) = take_notification(&webhook);
    assert_eq!(ended["value"][0]["resourceData"]["state"], "terminated");
    let (status, view) = http(host, "GET", &format!("/control/calls/{call_id}"), &[], "");
    assert_eq!(status, 200);
    assert!(view.contains(r#""state":"terminated""#), "{view}");

    // Nothing but the one line ever reached stdout.
    let _ = running.0.kill();
    let _ = running.0.wait();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "more than one line on stdout");
}
