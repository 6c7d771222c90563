//! A call's audio over ACS's streaming WebSocket: the service connects to the bot's
//! `transportUrl` (`{media base}/{call token}`), sends `AudioMetadata` then a frame every 20 ms
//! (one per participant when unmixed), and plays what the bot sends back.
//!
//! Frames go into the call's pipeline through its [`PcmInbox`] (the worker's playout buffer
//! absorbs the bunching of a TCP delivery); what the pipeline's send side produces every tick
//! comes out of its PCM outbox and is written here, so the service gets audio at the pace of
//! the media scheduler, never faster. The socket's I/O stays on this async task; the tick
//! never waits for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appmedia_acs::streaming::{Message as StreamMessage, Received, StreamError, StreamReader};
use appmedia_media::pcm::{PcmFrameOut, PcmRate};
use appmedia_media::pipeline::PcmInbox;
use appmedia_media::queue::Consumer;
use appmedia_transport::EndReason;
use axum::extract::ws::{Message, WebSocket};
use tokio::sync::{Notify, mpsc, watch};

use crate::bot::lock;

/// How often what the pipeline produced is written to the socket.
const WRITE_POLL: Duration = Duration::from_millis(5);
/// How long the service has to connect the socket once the call is up.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Participants of an unmixed stream given a stream key (the mix is key 0).
const MAX_UNMIXED_KEYS: usize = 16;
/// Key presses queued for the driver.
const DTMF_QUEUE: usize = 32;

/// Where the socket is in its life, for the call's driver.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum LinkState {
    Waiting,
    Connected,
    Ended(EndReason),
}

/// A call's audio-socket counters at one moment ([`CallControl::stream_stats`](crate::CallControl::stream_stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Frames handed to the pipeline.
    pub frames_in: u64,
    /// Frames written to the service.
    pub frames_out: u64,
    /// Messages refused (not JSON, unknown kind, wrong length, bad base64, audio before the
    /// metadata, over the size limit...).
    pub refused: u64,
    /// Unmixed frames of participants beyond the stream keys available.
    pub unkeyed: u64,
    /// Binary messages (the protocol is text).
    pub binary: u64,
    /// `StopAudio` sent.
    pub stop_audio_sent: u64,
    /// Connections refused because another one held the call's stream.
    pub connections_refused: u64,
}

/// Counters of what arrived on the socket and what was refused.
#[derive(Debug, Default)]
pub(crate) struct StreamCounters {
    /// Frames handed to the pipeline.
    pub(crate) frames_in: AtomicU64,
    /// Frames written to the service.
    pub(crate) frames_out: AtomicU64,
    /// Messages refused (not JSON, unknown kind, wrong length, bad base64, audio before the
    /// metadata, over the size limit...).
    pub(crate) refused: AtomicU64,
    /// Unmixed frames of participants beyond the keys available.
    pub(crate) unkeyed: AtomicU64,
    /// Binary messages (the protocol is text).
    pub(crate) binary: AtomicU64,
    /// `StopAudio` sent.
    pub(crate) stop_audio_sent: AtomicU64,
    /// Connections refused because another one held the call's stream.
    pub(crate) connections_refused: AtomicU64,
}

/// The driver's view of a call's stream.
pub(crate) struct StreamLink {
    state: watch::Sender<LinkState>,
    close: Notify,
    stop_audio: Notify,
    pub(crate) counters: StreamCounters,
    /// Participants by raw id → stream key (1, 2, ...), in the order they were first seen in
    /// the audio or the roster: the roster's `mediaStreams[].sourceId` and the unmixed
    /// frames' source id agree.
    keys: Mutex<HashMap<String, u32>>,
}

impl StreamCounters {
    fn snapshot(&self) -> StreamStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StreamStats {
            frames_in: get(&self.frames_in),
            frames_out: get(&self.frames_out),
            refused: get(&self.refused),
            unkeyed: get(&self.unkeyed),
            binary: get(&self.binary),
            stop_audio_sent: get(&self.stop_audio_sent),
            connections_refused: get(&self.connections_refused),
        }
    }
}

impl StreamLink {
    /// The socket's counters now.
    pub(crate) fn stats(&self) -> StreamStats {
        self.counters.snapshot()
    }

    fn new() -> Self {
        StreamLink {
            state: watch::channel(LinkState::Waiting).0,
            close: Notify::new(),
            stop_audio: Notify::new(),
            counters: StreamCounters::default(),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The stream key of a participant's audio (0: the mix), made on first sight; `None`
    /// beyond the keys available.
    pub(crate) fn key_of(&self, raw_id: Option<&str>) -> Option<u32> {
        let Some(raw_id) = raw_id else { return Some(0) };
        let mut keys = lock(&self.keys);
        if let Some(key) = keys.get(raw_id) {
            return Some(*key);
        }
        if keys.len() >= MAX_UNMIXED_KEYS {
            return None;
        }
        let key = keys.len() as u32 + 1;
        keys.insert(raw_id.to_owned(), key);
        Some(key)
    }

    /// Resolves once the service's `AudioMetadata` has arrived, or with why it never will.
    pub(crate) async fn connected(&self) -> Result<(), EndReason> {
        let mut rx = self.state.subscribe();
        let waited = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                match &*rx.borrow_and_update() {
                    LinkState::Connected => return Ok(()),
                    LinkState::Ended(reason) => return Err(reason.clone()),
                    LinkState::Waiting => {}
                }
                if rx.changed().await.is_err() {
                    return Err(EndReason::Closed);
                }
            }
        })
        .await;
        waited.unwrap_or(Err(EndReason::ConnectTimeout {
            timeout_ms: CONNECT_TIMEOUT.as_millis() as u64,
            last_state: "the service did not connect the audio stream".into(),
        }))
    }

    /// Resolves when the stream ends.
    pub(crate) async fn ended(&self) -> EndReason {
        let mut rx = self.state.subscribe();
        loop {
            if let LinkState::Ended(reason) = &*rx.borrow_and_update() {
                return reason.clone();
            }
            if rx.changed().await.is_err() {
                return EndReason::Closed;
            }
        }
    }

    /// Closes the socket (the call is over).
    pub(crate) fn close(&self) {
        self.close.notify_one();
        self.state.send_if_modified(|s| {
            if matches!(s, LinkState::Ended(_)) {
                false
            } else {
                *s = LinkState::Ended(EndReason::Closed);
                true
            }
        });
    }

    /// Asks the service to drop the audio it has queued (barge-in, a cancelled prompt).
    pub(crate) fn stop_audio(&self) {
        self.stop_audio.notify_one();
    }
}

/// A call's stream, waiting for (or held by) its socket.
pub(crate) struct StreamSlot {
    pub(crate) link: Arc<StreamLink>,
    inbox: PcmInbox,
    /// Taken by the socket task while it runs, given back when it ends (a reconnection).
    outbox: Mutex<Option<Consumer<PcmFrameOut>>>,
    rate: PcmRate,
    epoch: Instant,
    dtmf: mpsc::Sender<(char, u32)>,
}

impl StreamSlot {
    pub(crate) fn new(
        inbox: PcmInbox,
        outbox: Consumer<PcmFrameOut>,
        rate: PcmRate,
        epoch: Instant,
    ) -> (Arc<StreamSlot>, mpsc::Receiver<(char, u32)>) {
        let (dtmf, dtmf_rx) = mpsc::channel(DTMF_QUEUE);
        (
            Arc::new(StreamSlot {
                link: Arc::new(StreamLink::new()),
                inbox,
                outbox: Mutex::new(Some(outbox)),
                rate,
                epoch,
                dtmf,
            }),
            dtmf_rx,
        )
    }

    /// The stream key of a participant's unmixed audio (0: the mix).
    fn key_of(&self, raw_id: Option<&str>) -> Option<u32> {
        self.link.key_of(raw_id)
    }

    /// Runs one connection of the service's socket until it closes or the call ends.
    pub(crate) async fn serve(self: Arc<Self>, socket: WebSocket) {
        let Some(outbox) = lock(&self.outbox).take() else {
            self.link
                .counters
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            let mut socket = socket;
            let _ = socket.send(Message::Close(None)).await;
            return;
        };
        let reason = self.run(socket, &outbox).await;
        *lock(&self.outbox) = Some(outbox);
        tracing::info!(%reason, "ACS audio stream ended");
        self.link.state.send_if_modified(|s| {
            if matches!(s, LinkState::Ended(_)) {
                false
            } else {
                *s = LinkState::Ended(reason);
                true
            }
        });
    }

    async fn run(&self, mut socket: WebSocket, outbox: &Consumer<PcmFrameOut>) -> EndReason {
        let mut reader = StreamReader::bot();
        let mut write = tokio::time::interval(WRITE_POLL);
        write.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let counters = &self.link.counters;
        loop {
            tokio::select! {
                () = self.link.close.notified() => {
                    let _ = socket.send(Message::Close(None)).await;
                    return EndReason::Closed;
                }
                () = self.link.stop_audio.notified() => {
                    // What the pipeline produced but did not send yet is dropped too.
                    while outbox.pop().is_some() {}
                    if socket.send(Message::Text(StreamMessage::stop_audio().to_json().into())).await.is_err() {
                        return EndReason::ClosedByPeer;
                    }
                    counters.stop_audio_sent.fetch_add(1, Ordering::Relaxed);
                }
                _ = write.tick() => {
                    while let Some(frame) = outbox.pop() {
                        let text = StreamMessage::outbound_audio(frame.frame.samples()).to_json();
                        if socket.send(Message::Text(text.into())).await.is_err() {
                            return EndReason::ClosedByPeer;
                        }
                        counters.frames_out.fetch_add(1, Ordering::Relaxed);
                    }
                }
                message = socket.recv() => match message {
                    None | Some(Ok(Message::Close(_))) => return EndReason::ClosedByPeer,
                    Some(Err(e)) => {
                        // A protocol violation (an oversized message, say) ends the socket.
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "ACS audio stream failed");
                        return EndReason::ClosedByPeer;
                    }
                    Some(Ok(Message::Text(text))) => self.receive(&mut reader, text.as_str()),
                    Some(Ok(Message::Binary(_))) => {
                        counters.binary.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                }
            }
        }
    }

    fn receive(&self, reader: &mut StreamReader, text: &str) {
        let counters = &self.link.counters;
        match reader.read(text) {
            Ok(Received::Metadata(metadata)) => {
                if metadata.sample_rate != self.rate.hz() {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        rate = metadata.sample_rate,
                        expected = self.rate.hz(),
                        "the service streams another rate than the one asked for"
                    );
                    return;
                }
                self.link.state.send_if_modified(|s| {
                    if *s == LinkState::Waiting {
                        *s = LinkState::Connected;
                        true
                    } else {
                        false
                    }
                });
            }
            Ok(Received::Audio(frame)) => {
                if reader.metadata().map(|m| m.sample_rate) != Some(self.rate.hz()) {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let Some(key) = self.key_of(frame.participant_raw_id.as_deref()) else {
                    counters.unkeyed.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let arrival = self.epoch.elapsed();
                match self.inbox.push(key, self.rate, frame.samples(), arrival) {
                    Ok(_) => {
                        counters.frames_in.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(Received::Dtmf(dtmf)) => {
                let key = dtmf.data.chars().next();
                let source = self.key_of(dtmf.participant_raw_id.as_deref()).unwrap_or(0);
                match key {
                    Some(key) if appmedia_acs::models::tone_name(key).is_some() => {
                        let _ = self.dtmf.try_send((key.to_ascii_uppercase(), source));
                    }
                    _ => {
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(Received::StopAudio) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                log_refusal(&e);
            }
        }
    }
}

/// One line per refusal at debug level: a hostile peer could flood the log otherwise.
fn log_refusal(e: &StreamError) {
    tracing::debug!(error = %e, "ACS audio stream message refused");
}
