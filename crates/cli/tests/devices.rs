//! `appmedia devices` against an ALSA configuration made by the test (a child process gets
//! ALSA_CONFIG_PATH, so nothing here depends on the machine's sound hardware).

use std::path::PathBuf;
use std::process::Command;

fn alsa_config(tag: &str) -> (PathBuf, String) {
    let dir =
        std::env::temp_dir().join(format!("appmedia-cli-devices-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rc = dir.join("asoundrc");
    std::fs::write(
        &rc,
        r#"
pcm.appmedia_cli_test {
    type null
    hint { show on description "appmedia CLI test device" }
}
"#,
    )
    .unwrap();
    let mut path = rc.display().to_string();
    if std::path::Path::new("/usr/share/alsa/alsa.conf").exists() {
        path = format!("/usr/share/alsa/alsa.conf:{path}");
    }
    (dir, path)
}

#[test]
fn lists_devices_as_a_table_and_as_json() {
    let (dir, path) = alsa_config("list");
    let out = Command::new(env!("CARGO_BIN_EXE_appmedia"))
        .arg("devices")
        .env("ALSA_CONFIG_PATH", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("NAME"), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("appmedia_cli_test "))
        .unwrap_or_else(|| panic!("device missing from:\n{stdout}"));
    assert!(line.contains("appmedia CLI test device"), "{line}");

    let out = Command::new(env!("CARGO_BIN_EXE_appmedia"))
        .args(["devices", "--json", "--output", "--formats"])
        .env("ALSA_CONFIG_PATH", &path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON value");
    let dev = json
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "appmedia_cli_test")
        .expect("device in JSON");
    assert_eq!(dev["description"], "appmedia CLI test device");
    assert_eq!(dev["output"], true);
    // The null device takes 48 kHz f32: the format a call would use.
    assert_eq!(dev["outputFormat"], "48000 Hz, 2 ch, f32");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn conflicting_filters_are_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_appmedia"))
        .args(["devices", "--input", "--output"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
