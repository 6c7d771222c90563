//! Who is speaking: the streams whose unmixed frames the bot gets this tick (loudest first),
//! the active speakers (Graph's `ActiveSpeakers`) and the dominant speaker, with hysteresis.

use super::receive::RemoteStream;
use super::{EventRing, PipelineConfig, PipelineEvent};

/// The speaker tracking's state, derived each tick from the receive side's streams.
pub(super) struct Speakers {
    /// Indices into the receive side's streams of this tick's unmixed frames, loudest first.
    pub(super) unmixed: Vec<usize>,
    /// Source ids of everyone speaking, loudest first.
    pub(super) active: Vec<u32>,
    pub(super) dominant: Option<u32>,
    candidate: Option<u32>,
    candidate_ticks: u32,
    quiet_ticks: u32,
}

impl Speakers {
    pub(super) fn new(config: &PipelineConfig) -> Self {
        Speakers {
            unmixed: Vec::with_capacity(config.max_remote_streams),
            active: Vec::with_capacity(config.max_remote_streams),
            dominant: None,
            candidate: None,
            candidate_ticks: 0,
            quiet_ticks: 0,
        }
    }

    /// A source left (its stream closed or was replaced): it can no longer lead.
    pub(super) fn forget(&mut self, source_id: u32, events: &mut EventRing) {
        if self.dominant == Some(source_id) {
            self.dominant = None;
            events.push(PipelineEvent::DominantSpeakerChanged { source_id: None });
        }
        if self.candidate == Some(source_id) {
            self.candidate = None;
        }
    }

    /// This tick's speakers, from the streams as the receive side just played them.
    pub(super) fn update(
        &mut self,
        streams: &[RemoteStream],
        config: &PipelineConfig,
        events: &mut EventRing,
    ) {
        self.active.clear();
        self.unmixed.clear();
        for (i, s) in streams.iter().enumerate() {
            if s.live && s.active_ticks > 0 {
                self.unmixed.push(i);
            }
        }
        self.unmixed.sort_unstable_by(|&a, &b| {
            streams[b]
                .smoothed_dbov
                .total_cmp(&streams[a].smoothed_dbov)
        });
        for &i in &self.unmixed {
            self.active.push(streams[i].source_id);
        }
        self.unmixed.truncate(config.max_unmixed);

        // Dominant speaker: the loudest active speaker must lead for a while before it takes
        // over (hysteresis); with nobody active for a second the dominant speaker is cleared.
        let loudest = self.active.first().copied();
        match loudest {
            None => {
                self.quiet_ticks += 1;
                self.candidate = None;
                if self.dominant.is_some() && self.quiet_ticks >= 50 {
                    self.dominant = None;
                    events.push(PipelineEvent::DominantSpeakerChanged { source_id: None });
                }
            }
            Some(id) => {
                self.quiet_ticks = 0;
                let dominant_active = self.dominant.is_some_and(|d| self.active.contains(&d));
                if self.dominant == Some(id) {
                    self.candidate = None;
                } else {
                    if self.candidate == Some(id) {
                        self.candidate_ticks += 1;
                    } else {
                        self.candidate = Some(id);
                        self.candidate_ticks = 1;
                    }
                    let hold = if dominant_active {
                        config.dominant_hold_ticks
                    } else {
                        1
                    };
                    if self.candidate_ticks >= hold {
                        self.dominant = Some(id);
                        self.candidate = None;
                        events.push(PipelineEvent::DominantSpeakerChanged {
                            source_id: Some(id),
                        });
                    }
                }
            }
        }
    }
}
