//! `GET /metrics`: the bot's counters in the Prometheus text format, through the `metrics`
//! facade and `metrics-exporter-prometheus`' recorder (built without its HTTP listener and
//! push gateway: the bot's own server serves the text).
//!
//! Several bots may live in one process (tests, an application embedding two), so no global
//! recorder is installed: each bot owns a [`PrometheusRecorder`] and registers its metrics in
//! it once, at start ([`metrics::with_local_recorder`]). The counts stay where they are counted
//! — the bot's and the notification receiver's atomics, the media scheduler's, each call's
//! media snapshot (published by its worker once a second, as it always was) — and a scrape
//! copies their current values into the registered handles and renders. Nothing is added to
//! the 20 ms tick. A counter handle only ever rises ([`metrics::Counter::absolute`] keeps the
//! larger value), so a sum that dips for a moment, while a call leaves, never shows as a reset.
//!
//! The media counters are summed over the bot's calls: the live ones as of their last snapshot
//! (at most a second old), plus what the ended ones left ([`MediaTotals`]), so they never go
//! backwards when a call ends.

use std::time::Duration;

use appmedia_media::pipeline::RtpReceiveTotals;
use appmedia_signalling::callback::ReceiverStats;
use metrics::{Counter, Gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::BotStats;
use crate::media::MediaSnapshot;

/// Media counters summed over calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MediaTotals {
    /// RTP packets sent.
    pub rtp_sent: u64,
    /// RTP received, lost, concealed, FEC-recovered.
    pub rtp_received: RtpReceiveTotals,
    /// Audio bytes written to recordings.
    pub recording_bytes: u64,
}

impl MediaTotals {
    /// Adds a call's media counters (a snapshot's counts cover the whole call so far).
    pub fn add_call(&mut self, media: &MediaSnapshot) {
        self.rtp_sent += media.pipeline.packets_sent;
        self.rtp_received.add(&media.rtp_received);
    }
}

/// What one scrape reads.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sample {
    pub ready: bool,
    pub stats: BotStats,
    pub receiver: ReceiverStats,
    /// Call ticks the media scheduler ran, and how many of them finished late.
    pub ticks: u64,
    pub late_ticks: u64,
    /// Ended calls' media plus the live calls' so far.
    pub media: MediaTotals,
    /// The largest interarrival jitter among the live calls' remote RTP streams.
    pub jitter: Duration,
}

/// How a metric reads its value from a [`Sample`].
#[derive(Clone, Copy)]
enum Read {
    Counter(fn(&Sample) -> u64),
    Gauge(fn(&Sample) -> f64),
}

/// One metric: a name and help text operators rely on (`docs/deploy.md` lists them), an
/// optional label, and where its value comes from.
struct Metric {
    name: &'static str,
    help: &'static str,
    label: Option<(&'static str, &'static str)>,
    read: Read,
}

const fn counter(name: &'static str, help: &'static str, read: fn(&Sample) -> u64) -> Metric {
    Metric {
        name,
        help,
        label: None,
        read: Read::Counter(read),
    }
}

const fn gauge(name: &'static str, help: &'static str, read: fn(&Sample) -> f64) -> Metric {
    Metric {
        name,
        help,
        label: None,
        read: Read::Gauge(read),
    }
}

const REJECTED: &str = "appmedia_bot_notifications_rejected_total";
const REJECTED_HELP: &str = "Notification POSTs refused, by reason: unauthorized (401), \
    malformed (400), too_large (413), other_tenant (403), unknown_call (404), timed_out (408), \
    busy, backpressure, registry_full, overloaded, keys_unavailable (503).";

const fn rejected(reason: &'static str, read: fn(&Sample) -> u64) -> Metric {
    Metric {
        name: REJECTED,
        help: REJECTED_HELP,
        label: Some(("reason", reason)),
        read: Read::Counter(read),
    }
}

/// Every metric the bot exposes. The names and help texts of the first ones are those of the
/// hand-written exposition they replaced: keep them, dashboards and alerts use them.
const METRICS: &[Metric] = &[
    gauge(
        "appmedia_bot_ready",
        "1 while the instance takes new calls.",
        |s| f64::from(u8::from(s.ready)),
    ),
    gauge("appmedia_bot_live_calls", "Calls whose driver runs.", |s| {
        s.stats.live_calls as f64
    }),
    gauge(
        "appmedia_bot_calls_held_peak",
        "The most calls held at once since the start.",
        |s| s.stats.calls_held_peak as f64,
    ),
    counter("appmedia_bot_calls_created_total", "Calls placed.", |s| {
        s.stats.calls_created
    }),
    counter(
        "appmedia_bot_incoming_received_total",
        "Incoming calls offered.",
        |s| s.stats.incoming_received,
    ),
    counter(
        "appmedia_bot_incoming_answered_total",
        "Incoming calls answered.",
        |s| s.stats.incoming_answered,
    ),
    counter(
        "appmedia_bot_incoming_rejected_total",
        "Incoming calls rejected.",
        |s| s.stats.incoming_rejected,
    ),
    counter(
        "appmedia_bot_incoming_redirected_total",
        "Incoming calls redirected.",
        |s| s.stats.incoming_redirected,
    ),
    counter(
        "appmedia_bot_incoming_expired_total",
        "Incoming calls left past the answer deadline.",
        |s| s.stats.incoming_expired,
    ),
    counter(
        "appmedia_bot_incoming_dropped_total",
        "Incoming calls dropped (queue full or shutting down).",
        |s| s.stats.incoming_dropped,
    ),
    counter(
        "appmedia_bot_keep_alives_sent_total",
        "keepAlive requests sent.",
        |s| s.stats.keep_alives_sent,
    ),
    counter(
        "appmedia_bot_keep_alive_failures_total",
        "keepAlive requests that failed.",
        |s| s.stats.keep_alive_failures,
    ),
    counter(
        "appmedia_bot_notifications_accepted_total",
        "Notification POSTs answered 202.",
        |s| s.receiver.accepted,
    ),
    counter(
        "appmedia_bot_notifications_unauthorized_total",
        "Notification POSTs refused for their token (401).",
        |s| s.receiver.unauthorized,
    ),
    counter(
        "appmedia_bot_notifications_malformed_total",
        "Notification POSTs refused as malformed (400).",
        |s| s.receiver.malformed,
    ),
    counter(
        "appmedia_bot_notifications_unknown_call_total",
        "Notification POSTs for calls not held here (404).",
        |s| s.receiver.unknown_call,
    ),
    counter(
        "appmedia_bot_notifications_busy_total",
        "New calls refused while draining or full (503).",
        |s| s.receiver.busy,
    ),
    counter(
        "appmedia_bot_notifications_backpressure_total",
        "Notification POSTs refused (503) while the bot's event queue was full.",
        |s| s.receiver.backpressure,
    ),
    counter(
        "appmedia_bot_notifications_other_tenant_total",
        "Notification POSTs refused (403): a call of another tenant.",
        |s| s.receiver.other_tenant,
    ),
    counter(
        "appmedia_bot_notifications_timed_out_total",
        "Notification POSTs whose body did not arrive in time (408).",
        |s| s.receiver.timed_out,
    ),
    counter(
        "appmedia_bot_notifications_overloaded_total",
        "Notification POSTs refused (503): too many at once.",
        |s| s.receiver.overloaded,
    ),
    counter(
        "appmedia_bot_connections_refused_total",
        "Connections closed at once at the connection cap.",
        |s| s.receiver.connections_refused,
    ),
    counter(
        "appmedia_bot_orphan_notifications_total",
        "Notifications whose call never became known.",
        |s| s.stats.orphan_notifications,
    ),
    rejected("unauthorized", |s| s.receiver.unauthorized),
    rejected("malformed", |s| s.receiver.malformed),
    rejected("too_large", |s| s.receiver.too_large),
    rejected("other_tenant", |s| s.receiver.other_tenant),
    rejected("unknown_call", |s| s.receiver.unknown_call),
    rejected("timed_out", |s| s.receiver.timed_out),
    rejected("busy", |s| s.receiver.busy),
    rejected("backpressure", |s| s.receiver.backpressure),
    rejected("registry_full", |s| s.receiver.registry_full),
    rejected("overloaded", |s| s.receiver.overloaded),
    rejected("keys_unavailable", |s| s.receiver.keys_unavailable),
    counter(
        "appmedia_bot_roster_corrections_total",
        "Rosters the read with each keepAlive found different from the notified one \
         (notifications lost on the way).",
        |s| s.stats.roster_corrections,
    ),
    counter(
        "appmedia_bot_state_corrections_total",
        "Call states read from the service ahead of the notified one while the call was \
         being set up (a state notification was lost on the way).",
        |s| s.stats.state_corrections,
    ),
    counter(
        "appmedia_bot_recording_failures_total",
        "Recording files stopped by a write error (a full disk) while their call went on.",
        |s| s.stats.recording_failures,
    ),
    counter(
        "appmedia_bot_media_ticks_total",
        "20 ms media ticks run, over all calls.",
        |s| s.ticks,
    ),
    counter(
        "appmedia_bot_media_late_ticks_total",
        "Media ticks that finished after their 20 ms period had ended.",
        |s| s.late_ticks,
    ),
    counter(
        "appmedia_bot_rtp_packets_sent_total",
        "RTP packets the calls sent.",
        |s| s.media.rtp_sent,
    ),
    counter(
        "appmedia_bot_rtp_packets_received_total",
        "RTP packets the calls received (taken into their jitter buffers).",
        |s| s.media.rtp_received.packets,
    ),
    counter(
        "appmedia_bot_rtp_packets_lost_total",
        "RTP packets whose playout time passed before they arrived (never received, or too late).",
        |s| s.media.rtp_received.lost,
    ),
    gauge(
        "appmedia_bot_rtp_jitter_seconds",
        "The largest RFC 3550 interarrival jitter among the live calls' remote RTP streams.",
        |s| s.jitter.as_secs_f64(),
    ),
    counter(
        "appmedia_bot_concealed_frames_total",
        "20 ms frames made up by packet-loss concealment.",
        |s| s.media.rtp_received.concealed,
    ),
    counter(
        "appmedia_bot_fec_recovered_frames_total",
        "20 ms frames rebuilt from the next packet's Opus in-band FEC.",
        |s| s.media.rtp_received.fec_recovered,
    ),
    counter(
        "appmedia_bot_recording_bytes_total",
        "Audio bytes written to recordings (16-bit PCM; WAV headers not counted).",
        |s| s.media.recording_bytes,
    ),
];

enum Handle {
    Counter(Counter, fn(&Sample) -> u64),
    Gauge(Gauge, fn(&Sample) -> f64),
}

/// One bot's recorder, its registered metrics and the handle that renders them.
pub(crate) struct Exposition {
    handles: Vec<Handle>,
    render: PrometheusHandle,
}

impl Exposition {
    /// A recorder of the bot's own, with every metric described and registered (each shows
    /// from the first scrape, at 0 until it moves).
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let render = recorder.handle();
        let handles = metrics::with_local_recorder(&recorder, || {
            METRICS
                .iter()
                .map(|m| match m.read {
                    Read::Counter(read) => {
                        metrics::describe_counter!(m.name, m.help);
                        let handle = match m.label {
                            Some((key, value)) => metrics::counter!(m.name, key => value),
                            None => metrics::counter!(m.name),
                        };
                        Handle::Counter(handle, read)
                    }
                    Read::Gauge(read) => {
                        metrics::describe_gauge!(m.name, m.help);
                        Handle::Gauge(metrics::gauge!(m.name), read)
                    }
                })
                .collect()
        });
        Exposition { handles, render }
    }

    /// Records `sample` and renders the text exposition.
    pub fn render(&self, sample: &Sample) -> String {
        for handle in &self.handles {
            match handle {
                Handle::Counter(counter, read) => counter.absolute(read(sample)),
                Handle::Gauge(gauge, read) => gauge.set(read(sample)),
            }
        }
        self.render.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// `name{labels}` → value, from the text.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("name value");
                (series.to_owned(), value.parse().expect("a number"))
            })
            .collect()
    }

    #[test]
    fn every_metric_is_rendered_with_its_help_and_type() {
        let text = Exposition::new().render(&Sample::default());
        let values = parse(&text);
        for m in METRICS {
            let kind = match m.read {
                Read::Counter(_) => "counter",
                Read::Gauge(_) => "gauge",
            };
            assert!(
                text.contains(&format!("# TYPE {} {kind}\n", m.name)),
                "{}\n{text}",
                m.name
            );
            assert!(text.contains(&format!("# HELP {} {}\n", m.name, m.help)));
            let series = match m.label {
                Some((k, v)) => format!("{}{{{k}=\"{v}\"}}", m.name),
                None => m.name.to_owned(),
            };
            assert_eq!(values.get(&series), Some(&0.0), "{series}\n{text}");
        }
    }

    #[test]
    fn two_bots_in_one_process_keep_their_own_counts() {
        let (a, b) = (Exposition::new(), Exposition::new());
        let mut sample = Sample::default();
        sample.receiver.unauthorized = 3;
        sample.receiver.keys_unavailable = 2;
        sample.stats.roster_corrections = 1;
        sample.jitter = Duration::from_micros(2500);
        sample.ready = true;
        let text = a.render(&sample);
        let values = parse(&text);
        assert_eq!(
            values[r#"appmedia_bot_notifications_rejected_total{reason="unauthorized"}"#],
            3.0
        );
        assert_eq!(values["appmedia_bot_notifications_unauthorized_total"], 3.0);
        assert_eq!(
            values[r#"appmedia_bot_notifications_rejected_total{reason="keys_unavailable"}"#],
            2.0
        );
        assert_eq!(values["appmedia_bot_roster_corrections_total"], 1.0);
        assert_eq!(values["appmedia_bot_rtp_jitter_seconds"], 0.0025);
        assert_eq!(values["appmedia_bot_ready"], 1.0);
        assert!(
            text.contains("\nappmedia_bot_ready 1\n"),
            "a gauge of 1 prints as 1\n{text}"
        );
        let other = parse(&b.render(&Sample::default()));
        assert_eq!(other["appmedia_bot_notifications_unauthorized_total"], 0.0);
    }

    #[test]
    fn a_counter_whose_sum_dips_keeps_its_highest_value() {
        let exposition = Exposition::new();
        let mut sample = Sample::default();
        sample.media.rtp_received.packets = 500;
        exposition.render(&sample);
        // A call leaving for a moment between the live sum and the ended totals.
        sample.media.rtp_received.packets = 200;
        let values = parse(&exposition.render(&sample));
        assert_eq!(values["appmedia_bot_rtp_packets_received_total"], 500.0);
    }

    #[test]
    fn the_operator_docs_list_every_metric() {
        let docs =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/deploy.md"))
                .expect("docs/deploy.md");
        for m in METRICS {
            // `name` or `name{label}`.
            assert!(
                docs.contains(&format!("`{}`", m.name)) || docs.contains(&format!("`{}{{", m.name)),
                "docs/deploy.md does not list `{}`",
                m.name
            );
        }
    }
}
