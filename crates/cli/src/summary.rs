//! What `demo`, `record` and `play` keep of a call and how they report it: the signalling log
//! (state transitions with their time, the roster, who each speaker track is), the pieces of
//! their summaries they share, and running a command body to one summary — readable, or one
//! JSON object with `--json`.

use std::collections::BTreeMap;
use std::path::Path;

use appmedia_bot::Event;
use appmedia_media::pipeline::StreamStats;
use appmedia_model::CallState;
use serde_json::{Value, json};

/// What happened on the signalling side of a call.
#[derive(Debug, Default)]
pub struct CallLog {
    pub transitions: Vec<Value>,
    pub roster: Vec<String>,
    /// Roster `mediaStreams[].sourceId` of each participant's audio → its display name: who
    /// a speaker track (`Track::Speaker(source id)`) is.
    pub speakers: BTreeMap<u32, String>,
    pub established: bool,
    pub terminated: bool,
}

/// Records `event` in the log: state transitions with their time, who joined.
pub fn note_event(event: &Event, at_ms: u64, log: &mut CallLog) {
    match event {
        Event::State {
            to, result_info, ..
        } => {
            log.established |= *to == CallState::Established;
            log.terminated |= *to == CallState::Terminated;
            let mut entry = json!({"state": to.as_str(), "at_ms": at_ms});
            if let Some(result) = result_info {
                entry["resultInfo"] = serde_json::to_value(result).unwrap_or(Value::Null);
            }
            log.transitions.push(entry);
        }
        Event::Roster(change) => {
            for p in change.joined.iter().chain(&change.updated) {
                let name = participant_name(p);
                for source in audio_source_ids(p) {
                    log.speakers.insert(source, name.clone());
                }
                if !log.roster.contains(&name) {
                    log.roster.push(name);
                }
            }
        }
        _ => {}
    }
}

/// A participant's display name (else its id): the user, application, application instance
/// or phone it is.
fn participant_name(p: &appmedia_model::Participant) -> String {
    p.info
        .value()
        .and_then(|i| i.identity.value())
        .and_then(|i| {
            [&i.user, &i.application, &i.application_instance, &i.phone]
                .into_iter()
                .find_map(|x| x.value())
        })
        .and_then(|i| i.display_name.value().or(i.id.value()).cloned())
        .unwrap_or_else(|| "unknown".into())
}

/// The source ids of a participant's audio streams (`mediaStreams[].sourceId` whose
/// `mediaType` is audio, or not given); a source id that is not a number is skipped.
fn audio_source_ids(p: &appmedia_model::Participant) -> impl Iterator<Item = u32> + '_ {
    p.media_streams
        .value()
        .into_iter()
        .flatten()
        .filter(|s| {
            s.media_type
                .value()
                .is_none_or(|m| *m == appmedia_model::Modality::Audio)
        })
        .filter_map(|s| s.source_id.value()?.parse().ok())
}

/// A summary's roster, comma-separated.
pub fn roster(s: &Value) -> String {
    let names: Vec<&str> = s["roster"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    names.join(", ")
}

/// The first lines of a call command's readable summary: verdict, call, service, length, why
/// it stopped, roster; and a failed hang-up.
pub fn print_call_headline(command: &str, s: &Value) {
    let verdict = if s["ok"] == true { "OK" } else { "FAILED" };
    println!(
        "appmedia {command}: {verdict} — call {} on {}, {:.1} s, stopped by {}",
        s["call_id"].as_str().unwrap_or("?"),
        s["service"].as_str().unwrap_or("?"),
        s["seconds"].as_f64().unwrap_or(0.0),
        s["stopped_by"].as_str().unwrap_or("?")
    );
    println!("  roster      {}", roster(s));
    if let Some(e) = s["hang_up_error"].as_str() {
        println!("  hang-up failed: {e}");
    }
}

/// The duration of a WAV file, if it is one.
pub fn file_seconds(path: &Path) -> Option<f64> {
    let reader = hound::WavReader::open(path).ok()?;
    let spec = reader.spec();
    Some(f64::from(reader.duration()) / f64::from(spec.sample_rate.max(1)))
}

/// Per-stream jitter statistics as JSON.
pub fn streams_json<'a>(streams: impl Iterator<Item = &'a StreamStats>) -> Vec<Value> {
    streams
        .map(|s| {
            json!({
                "source_id": s.source_id,
                "received": s.jitter.received,
                "lost": s.jitter.lost,
                "concealed": s.jitter.concealed,
                "fec_recovered": s.jitter.fec_recovered,
                "late": s.jitter.late,
                "jitter_buffer_delay_ms": s.jitter.current_delay.as_millis() as u64,
            })
        })
        .collect()
}

/// Runs a command's body on a fresh runtime and reports its summary: one JSON object with
/// `--json` (also for an error), else the readable summary (errors on stderr). The exit code
/// follows the summary's `ok`.
pub fn run_command(
    name: &str,
    json: bool,
    body: impl std::future::Future<Output = Result<Value, String>>,
    print_summary: fn(&Value),
) -> std::process::ExitCode {
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
        .and_then(|runtime| runtime.block_on(body));
    match result {
        Ok(summary) => {
            if json {
                println!("{summary:#}");
            } else {
                print_summary(&summary);
            }
            if summary["ok"] == true {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            if json {
                println!("{:#}", json!({"ok": false, "error": e}));
            }
            eprintln!("appmedia {name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roster_audio_source_ids_name_the_speakers() {
        let participant = |json: Value| serde_json::from_value(json).unwrap();
        let jane = participant(json!({
            "info": {"identity": {"user": {"id": "u-jane", "displayName": "Jane"}}},
            "mediaStreams": [
                {"mediaType": "audio", "sourceId": "3"},
                {"mediaType": "video", "sourceId": "30"},
            ],
        }));
        let phone = participant(json!({
            "info": {"identity": {"phone": {"id": "+15550100006"}}},
            "mediaStreams": [{"sourceId": "4"}, {"mediaType": "audio", "sourceId": "not-a-number"}],
        }));
        let change = appmedia_signalling::roster::RosterChange {
            joined: vec![jane],
            updated: vec![phone],
            left: vec![],
        };
        let mut log = CallLog::default();
        note_event(&Event::Roster(change), 0, &mut log);
        assert_eq!(
            log.speakers,
            BTreeMap::from([(3, "Jane".to_owned()), (4, "+15550100006".to_owned())])
        );
        assert_eq!(log.roster, ["Jane", "+15550100006"]);
    }

    #[test]
    fn state_events_are_transitions_with_their_time() {
        let mut log = CallLog::default();
        for (to, at) in [(CallState::Established, 120), (CallState::Terminated, 3400)] {
            let event = Event::State {
                from: None,
                to,
                result_info: None,
            };
            note_event(&event, at, &mut log);
        }
        assert!(log.established && log.terminated);
        assert_eq!(
            log.transitions,
            [
                json!({"state": "established", "at_ms": 120}),
                json!({"state": "terminated", "at_ms": 3400}),
            ]
        );
    }
}
