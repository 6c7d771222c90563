//! `appmedia graph check` as a user and a script run it: real processes of the built binary.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn seed(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/seed")
        .join(name)
}

fn appmedia(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_appmedia"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the appmedia binary runs");
    {
        let mut pipe = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            pipe.write_all(bytes).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn check_file(name: &str) -> Output {
    let path = seed(name);
    appmedia(&["graph", "check", path.to_str().unwrap()], None)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is JSON ({e}): {:?}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(seed(name)).unwrap()).unwrap()
}

#[test]
fn valid_request_prints_the_document_and_its_permissions() {
    let output = check_file("example10-request.json");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout_json(&output), fixture("example10-request.json"));
    let err = stderr(&output);
    assert!(err.contains("create-call request: valid"), "{err}");
    assert!(
        err.contains("needs application permissions: Calls.Initiate.All and Calls.AccessMedia.All"),
        "{err}"
    );
}

#[test]
fn request_without_blob_is_invalid_with_the_reason() {
    let output = check_file("example06-request.json");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    // Still printed back: the document is well-formed, only refused.
    assert_eq!(stdout_json(&output), fixture("example06-request.json"));
    let err = stderr(&output);
    assert!(err.contains("create-call request: invalid"), "{err}");
    assert!(err.contains("error: mediaConfig.blob"), "{err}");
    assert!(err.contains("Calls.JoinGroupCall.All"), "{err}");
}

#[test]
fn calls_and_notifications_check_valid() {
    for name in [
        "example01-response.json",
        "example07-response.json",
        "notification-roster.json",
        "notification-roster-delta.json",
        "notification-content-sharing-created.json",
    ] {
        let output = check_file(name);
        assert_eq!(output.status.code(), Some(0), "{name}: {}", stderr(&output));
        assert_eq!(stdout_json(&output), fixture(name), "{name}");
        assert!(stderr(&output).contains(": valid"), "{name}");
        assert!(
            !stderr(&output).contains("permissions"),
            "{name}: only requests need permissions"
        );
    }
}

#[test]
fn a_notification_with_codes_as_strings_checks_valid_and_prints_numbers() {
    // The shape Microsoft's v1.0 documentation shows: resultInfo codes as strings.
    let doc = serde_json::json!({"@odata.type": "#microsoft.graph.commsNotifications", "value": [{
        "changeType": "deleted", "resourceUrl": "/communications/calls/c1",
        "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "terminated",
            "resultInfo": {"code": "200", "subcode": "5002", "message": "ended"}}}]});
    let output = appmedia(&["graph", "check", "-"], Some(doc.to_string().as_bytes()));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let printed = stdout_json(&output);
    assert_eq!(
        printed["value"][0]["resourceData"]["resultInfo"]["code"],
        serde_json::json!(200)
    );
}

#[test]
fn stdin_is_read_with_a_dash() {
    let bytes = std::fs::read(seed("notification-established.json")).unwrap();
    let output = appmedia(&["graph", "check", "-"], Some(&bytes));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout_json(&output),
        fixture("notification-established.json")
    );
    assert!(
        stderr(&output).contains("state established"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn not_json_exits_2_with_nothing_on_stdout() {
    let output = appmedia(&["graph", "check", "-"], Some(b"{\"value\": [,]}"));
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(stderr(&output).contains("not JSON"), "{}", stderr(&output));
}

#[test]
fn unknown_resource_exits_2() {
    let output = appmedia(
        &["graph", "check", "-"],
        Some(br##"{"@odata.type": "#microsoft.graph.user", "id": "u"}"##),
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(
        stderr(&output).contains("#microsoft.graph.user"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn known_resource_that_does_not_fit_exits_1_with_nothing_on_stdout() {
    let output = appmedia(
        &["graph", "check", "-"],
        Some(br##"{"@odata.type": "#microsoft.graph.call", "id": "c", "ringingTimeoutInSeconds": "soon"}"##),
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(
        stderr(&output).contains("call: invalid"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn missing_file_exits_2() {
    let output = appmedia(&["graph", "check", "/nonexistent/appmedia/call.json"], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(
        stderr(&output).contains("cannot read"),
        "{}",
        stderr(&output)
    );
}
