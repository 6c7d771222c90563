//! A bot made of the real bot stack, for calls with media: the signalling crate's builders
//! and `GraphClient` (the harness's callback receiver validates the notifications), the
//! transport's `MediaSession` offering its blob, and a media-core `CallPipeline` that sends
//! and plays 20 ms frames in real time.

use std::thread;
use std::time::{Duration, Instant};

use appmedia_media::frame::{FRAME_DURATION, Frame48, SAMPLES_PER_FRAME_48K};
use appmedia_media::pipeline::{
    BotAudioFormat, CallPipeline, PipelineConfig, PipelineEvent, StreamStats,
};
use appmedia_model::{Call, MediaConfig};
use appmedia_signalling::client::{GraphClient, GraphClientConfig};
use appmedia_transport::{MediaSession, TransportConfig};

use appmedia_emulator::EmulatorConfig;

use super::{CALLING_BOT, CALLING_BOT_SECRET, Harness, config, describe_all, test_directory};

/// Every wait of these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(15);

/// A call the bot created with app-hosted media.
pub struct BotCall {
    pub client: GraphClient,
    pub id: String,
    /// When the create request was sent.
    pub created_at: Instant,
    pub session: MediaSession,
    pipeline: Option<CallPipeline>,
    /// `now = 0` of the pipeline's ticks.
    epoch: Instant,
}

/// What the bot heard: 48 kHz samples, the first one played out at `start`.
pub struct Heard {
    pub samples: Vec<f32>,
    pub start: Instant,
    /// The pipeline's events, in order (streams, DTMF keys...).
    pub events: Vec<PipelineEvent>,
    /// Each received stream's counters at the end (jitter buffer, concealment, FEC).
    pub streams: Vec<StreamStats>,
}

impl Heard {
    /// Samples from `from` to `to` seconds after `start` (clamped).
    pub fn window(&self, from: f64, to: f64) -> &[f32] {
        let at = |s: f64| ((s * 48_000.0) as usize).min(self.samples.len());
        &self.samples[at(from)..at(to)]
    }

    /// The instant sample `index` was played out.
    pub fn instant_of(&self, index: usize) -> Instant {
        self.start + Duration::from_secs_f64(index as f64 / 48_000.0)
    }
}

pub fn graph_client(h: &Harness) -> GraphClient {
    GraphClient::new(
        GraphClientConfig::for_base_url(h.emulator.graph_url().parse().unwrap()),
        Harness::token_source(&h.emulator, CALLING_BOT, CALLING_BOT_SECRET),
    )
    .unwrap()
}

impl BotCall {
    /// Offers a media session, creates the call `build(blob)` describes, accepts the answer
    /// from the 201 and, with `media`, plugs a pipeline in and waits for the session to
    /// connect. Returns once the call is established (its notification arrived).
    pub async fn start(h: &Harness, media: bool, build: impl FnOnce(String) -> Call) -> BotCall {
        let session = MediaSession::offer(TransportConfig::default())
            .await
            .unwrap();
        let request = build(session.blob());
        let client = graph_client(h);
        let created_at = Instant::now();
        let created = client.create_call(&request).await.unwrap();
        let id = created.call_id().unwrap().to_owned();
        let Some(MediaConfig::AppHosted(config)) = created.call.media_config.value() else {
            panic!("no app-hosted media config in {:?}", created.call);
        };
        let answer = config.blob.value().expect("an answer blob");
        assert_ne!(
            *answer,
            session.blob(),
            "the 201 carries the emulator's answer"
        );
        let answer = answer.clone();
        Self::connect(h, client, id, created_at, session, &answer, media).await
    }

    /// Accepts the emulator's `answer` blob to the bot's offered `session` of call `id` and,
    /// with `media`, plugs a pipeline in and waits for the session to connect. Returns once
    /// the call is established (its notification arrived).
    pub async fn connect(
        h: &Harness,
        client: GraphClient,
        id: String,
        created_at: Instant,
        session: MediaSession,
        answer: &str,
        media: bool,
    ) -> BotCall {
        session.accept(answer).await.unwrap();
        let epoch = Instant::now();
        let pipeline = media.then(|| {
            let mut pipeline = CallPipeline::new(PipelineConfig {
                bot_format: BotAudioFormat::Pcm48k,
                ..PipelineConfig::default()
            })
            .unwrap();
            session.attach_pipeline(&mut pipeline, epoch);
            pipeline
        });
        if media {
            tokio::time::timeout(WAIT, session.connected())
                .await
                .expect("connected in time")
                .expect("connected");
        }
        wait_for_state(h, "state:established").await;
        BotCall {
            client,
            id,
            created_at,
            session,
            pipeline,
            epoch,
        }
    }

    /// Runs the bot in real time for `frames` 20 ms frames: each tick it sends `say(k)` (when
    /// `Some`) and plays out the frame it hears. Returns what it heard.
    pub async fn run(
        &mut self,
        frames: u32,
        mut say: impl FnMut(u32) -> Option<Frame48> + Send + 'static,
    ) -> Heard {
        let mut pipeline = self.pipeline.take().expect("a bot with media runs once");
        let epoch = self.epoch;
        let (heard, start, events, streams) = tokio::task::spawn_blocking(move || {
            let sender = pipeline.bot_sender();
            // Ticks stay on the pipeline's 20 ms grid from its epoch.
            let first = (epoch.elapsed().as_nanos() / FRAME_DURATION.as_nanos()) as u32 + 1;
            let mut heard = Vec::with_capacity(frames as usize * SAMPLES_PER_FRAME_48K);
            let mut events = Vec::new();
            for k in 0..frames {
                let now = FRAME_DURATION * (first + k);
                if let Some(wait) = (epoch + now).checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                if let Some(frame) = say(k) {
                    sender.send_48k(&frame).unwrap();
                }
                pipeline.tick(now);
                heard.extend_from_slice(pipeline.bot_frame_48k());
                while let Some(event) = pipeline.poll_event() {
                    events.push(event);
                }
            }
            let streams = pipeline.stream_stats().collect();
            (heard, epoch + FRAME_DURATION * first, events, streams)
        })
        .await
        .unwrap();
        Heard {
            samples: heard,
            start,
            events,
            streams,
        }
    }
}

/// Waits (bounded) until a notification described as `what` arrived.
pub async fn wait_for_state(h: &Harness, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if describe_all(&h.received.all()).iter().any(|d| d == what) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in {:?}",
            describe_all(&h.received.all())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A 48 kHz frame `k` of a sine at `freq`, amplitude `amp`.
pub fn tone_frame(freq: f32, amp: f32, k: u32) -> Frame48 {
    let mut frame: Frame48 = [0.0; SAMPLES_PER_FRAME_48K];
    for (n, out) in frame.iter_mut().enumerate() {
        let t = (k as usize * SAMPLES_PER_FRAME_48K + n) as f32 / 48_000.0;
        *out = amp * (2.0 * std::f32::consts::PI * freq * t).sin();
    }
    frame
}

/// Waits (bounded) for a WAV file to hold at least `seconds` of audio and returns it.
pub async fn wait_for_wav(path: &std::path::Path, seconds: f32) -> (u32, Vec<f32>) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(reader) = hound::WavReader::open(path) {
            let rate = reader.spec().sample_rate;
            let samples: Vec<f32> = reader
                .into_samples::<i16>()
                .filter_map(Result::ok)
                .map(|s| f32::from(s) / 32768.0)
                .collect();
            if samples.len() as f32 >= rate as f32 * seconds {
                return (rate, samples);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no recording at {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh directory for recordings, removed by the test at the end.
pub fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("appmedia-emulator-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The repository's media samples.
pub fn media_samples() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../media-samples")
}

/// The emulator with the audio tests' directory (`fixtures/audio-parties.toml`), recording
/// calls to `recordings` when set, and one bot.
pub async fn audio_parties(recordings: Option<std::path::PathBuf>) -> Harness {
    Harness::start(EmulatorConfig {
        directory: test_directory("audio-parties.toml"),
        recordings_dir: recordings,
        ..config()
    })
    .await
}
