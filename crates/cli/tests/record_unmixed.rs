//! `appmedia record` joining a meeting receives unmixed audio: one file per speaker, named by
//! the roster's `mediaStreams[].sourceId`, mapped to the participant's display name, and each
//! file carries what that participant says (tests/fixtures/two-speaker-meeting.toml: John
//! speaks john-speech.wav, Jane jane-speech.wav).

mod common;

use std::path::Path;

use common::{TempDir, appmedia, median_match, read_wav, root, samples, summary};

#[test]
fn a_meeting_recording_has_one_file_per_speaker_with_their_names() {
    let out = TempDir::new("record-unmixed");
    let output = appmedia()
        .args([
            "record",
            "--join-meeting-id",
            "1234567",
            "--passcode",
            "psw123",
        ])
        .args(["--seconds", "4", "--json", "--directory"])
        .arg(root().join("tests/fixtures/two-speaker-meeting.toml"))
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let s = summary(&output);
    assert!(output.status.success(), "{s:#}");
    assert_eq!(s["ok"], true, "{s:#}");

    let speakers = s["speakers"].as_object().expect("speakers map");
    let id_of = |name: &str| {
        speakers
            .iter()
            .find(|(_, n)| n.as_str() == Some(name))
            .unwrap_or_else(|| panic!("{name} in the speakers map: {s:#}"))
            .0
            .parse::<u32>()
            .unwrap()
    };
    let (john_id, jane_id) = (id_of("John"), id_of("Jane"));
    assert_ne!(john_id, jane_id);

    let tracks = s["recordings"].as_array().expect("recordings");
    let file_of = |id: u32, name: &str| {
        let t = tracks
            .iter()
            .find(|t| t["source_id"] == id)
            .unwrap_or_else(|| panic!("a file for {name} ({id}): {s:#}"));
        assert_eq!(t["speaker"], name, "{t:#}");
        assert_eq!(t["state"], "finished", "{t:#}");
        let path = t["path"].as_str().unwrap().to_owned();
        assert!(
            path.ends_with(&format!("-speaker-{id}.wav")),
            "named by source id: {path}"
        );
        path
    };
    let (john_file, jane_file) = (file_of(john_id, "John"), file_of(jane_id, "Jane"));
    let speaker_files = tracks
        .iter()
        .filter(|t| t["track"].as_str().unwrap().starts_with("speaker "))
        .count();
    assert_eq!(speaker_files, 2, "only the two speakers: {s:#}");

    // Each file is what its participant says, not the other one.
    let (_, john) = read_wav(&samples().join("john-speech.wav"));
    let (_, jane) = read_wav(&samples().join("jane-speech.wav"));
    for (file, own, other, who) in [
        (&john_file, &john, &jane, "John"),
        (&jane_file, &jane, &john, "Jane"),
    ] {
        let (rate, heard) = read_wav(Path::new(file));
        assert_eq!(rate, 16_000, "{file}");
        assert!(heard.len() > 16_000 * 2, "{file}: {} samples", heard.len());
        let (r_own, own_matches) = median_match(own, &heard);
        let (r_other, _) = median_match(other, &heard);
        eprintln!("{who} in {file}: own r = {r_own:.3}, other r = {r_other:.3}");
        assert!(
            r_own > 0.6,
            "{who}'s speech in {file}: r = {r_own:.2} ({own_matches:?})"
        );
        assert!(
            r_other < r_own - 0.2,
            "{file} sounds like the other speaker too: own {r_own:.2}, other {r_other:.2}"
        );
    }
}

#[test]
fn a_bad_directory_file_is_refused_before_any_call() {
    let dir = TempDir::new("record-bad-directory");
    let file = dir.path().join("directory.toml");
    std::fs::write(&file, "[[users]]\nid = 7\n").unwrap();
    let output = appmedia()
        .args(["record", "--seconds", "1", "--directory"])
        .arg(&file)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--directory") && stderr.contains("directory.toml"),
        "{stderr}"
    );
}

/// The same meeting joined by its Teams join link: thread, organizer and tenant come from the
/// link, and the bot hears both speakers.
#[test]
fn a_meeting_is_joined_by_its_teams_link() {
    let fixture = root().join("tests/fixtures/two-speaker-meeting.toml");
    let directory = appmedia_emulator::Directory::from_toml_file(&fixture).unwrap();
    let link = directory.meetings[0].join_url();
    let out = TempDir::new("record-join-url");
    let output = appmedia()
        .args(["record", "--join-url", &link])
        .args(["--seconds", "3", "--json", "--directory"])
        .arg(&fixture)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let s = summary(&output);
    assert!(output.status.success(), "{link}: {s:#}");
    assert_eq!(s["ok"], true, "{s:#}");
    let names: Vec<&str> = s["speakers"]
        .as_object()
        .expect("speakers map")
        .values()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(names.contains(&"John") && names.contains(&"Jane"), "{s:#}");

    // A link that is not a Teams meeting link is refused before any call.
    let output = appmedia()
        .args([
            "record",
            "--join-url",
            "https://example.com/l/meetup-join/x/0",
        ])
        .args(["--seconds", "3", "--json", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let s = summary(&output);
    assert!(!output.status.success());
    assert!(
        s["error"]
            .as_str()
            .unwrap_or("")
            .contains("not a Teams meeting link"),
        "{s:#}"
    );
}
