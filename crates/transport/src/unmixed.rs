//! Unmixed per-speaker audio over WebRTC: which outgoing packet goes on which m-line, and
//! how the receiving side gets the speaker's own SSRC back.
//!
//! A session that receives unmixed audio offers, after its first (mixed, send-receive) audio
//! m-line, `N` receive-only audio m-lines. The answering side puts one send-only track on
//! each (msid track id `unmixed-<i>`, its own SSRC, fixed by the SDP). Speakers come and go
//! faster than SDP can be renegotiated, so the slots are assigned at run time:
//!
//! * the sender gives each new speaker SSRC a free slot (or the one idle longest, after
//!   [`SLOT_IDLE`]) and keeps it while the speaker talks; a packet with no slot left is
//!   dropped and counted;
//! * it rewrites the packet's SSRC to the slot's and carries the speaker's SSRC as the only
//!   CSRC (RFC 3550 §7.1: the contributing source), with the sequence numbers made continuous
//!   on the slot so SRTP's rollover counter never sees a jump;
//! * the receiving side puts the CSRC back as the SSRC, so its media core sees one stream per
//!   speaker, keyed by the speaker's own SSRC (the emulator uses the roster's
//!   `mediaStreams[].sourceId`).

use std::time::{Duration, Instant};

use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

/// msid track id prefix of the tracks sent on unmixed m-lines (`unmixed-0`, `unmixed-1`...).
pub const UNMIXED_TRACK_PREFIX: &str = "unmixed-";

/// Unmixed m-lines one session may offer or answer: bounds what a hostile offer can make
/// the answering side build.
pub const MAX_UNMIXED_AUDIO_STREAMS: usize = 64;

/// A slot whose speaker sent nothing for this long may be given to another speaker.
pub const SLOT_IDLE: Duration = Duration::from_secs(1);

/// Where one outgoing packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// The first m-line, with its own SSRC.
    Main,
    /// Unmixed m-line `slot`, with this sequence number; the original SSRC becomes the CSRC.
    Unmixed { slot: usize, sequence_number: u16 },
    /// Every unmixed slot is busy with another speaker.
    NoSlot,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The speaker SSRC it carries now.
    source: Option<u32>,
    last_used: Option<Instant>,
    /// Added (wrapping) to the speaker's sequence numbers.
    seq_offset: u16,
    /// The last sequence number sent on the slot.
    last_seq: u16,
}

/// Assigns outgoing speaker streams to the negotiated unmixed m-lines.
#[derive(Debug)]
pub(crate) struct Router {
    mixed_ssrc: Option<u32>,
    slots: Vec<Slot>,
}

impl Router {
    /// `mixed_ssrc`: the SSRC that goes on the first m-line when there are unmixed slots
    /// (`None`: everything does). `slots`: the unmixed m-lines this side sends on.
    pub(crate) fn new(mixed_ssrc: Option<u32>, slots: usize) -> Self {
        Router {
            mixed_ssrc,
            slots: vec![
                Slot {
                    source: None,
                    last_used: None,
                    seq_offset: 0,
                    last_seq: 0,
                };
                slots
            ],
        }
    }

    pub(crate) fn route(&mut self, ssrc: u32, sequence_number: u16, now: Instant) -> Route {
        let Some(mixed) = self.mixed_ssrc else {
            return Route::Main;
        };
        if self.slots.is_empty() || ssrc == mixed {
            return Route::Main;
        }
        let slot = match self.slots.iter().position(|s| s.source == Some(ssrc)) {
            Some(i) => i,
            None => {
                let free = self.slots.iter().position(|s| s.source.is_none());
                let idle = || {
                    self.slots
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| {
                            s.last_used
                                .is_some_and(|t| now.saturating_duration_since(t) >= SLOT_IDLE)
                        })
                        .min_by_key(|(_, s)| s.last_used)
                        .map(|(i, _)| i)
                };
                let Some(i) = free.or_else(idle) else {
                    return Route::NoSlot;
                };
                let s = &mut self.slots[i];
                // The new speaker's first packet continues the slot's sequence.
                let next = if s.last_used.is_some() {
                    s.last_seq.wrapping_add(1)
                } else {
                    sequence_number
                };
                s.seq_offset = next.wrapping_sub(sequence_number);
                s.source = Some(ssrc);
                i
            }
        };
        let s = &mut self.slots[slot];
        let out = sequence_number.wrapping_add(s.seq_offset);
        s.last_seq = out;
        s.last_used = Some(now);
        Route::Unmixed {
            slot,
            sequence_number: out,
        }
    }

    /// The speaker each slot carries now.
    #[cfg(test)]
    fn sources(&self) -> Vec<Option<u32>> {
        self.slots.iter().map(|s| s.source).collect()
    }
}

/// How many unmixed m-lines an offer asks for: the receive-only audio m-lines after the
/// first audio m-line (the mixed one). A browser's offer has none.
pub(crate) fn offered_unmixed_streams(offer_sdp: &str) -> usize {
    let mut audio_sections = 0usize;
    let mut recvonly = 0usize;
    let mut in_audio = false;
    let mut current_recvonly = false;
    let mut close = |in_audio: bool, current_recvonly: bool, audio_sections: usize| {
        if in_audio && current_recvonly && audio_sections > 1 {
            recvonly += 1;
        }
    };
    for line in offer_sdp.lines() {
        let line = line.trim_end();
        if line.starts_with("m=") {
            close(in_audio, current_recvonly, audio_sections);
            in_audio = line.starts_with("m=audio ");
            current_recvonly = false;
            if in_audio {
                audio_sections += 1;
            }
        } else if line == "a=recvonly" {
            current_recvonly = true;
        }
    }
    close(in_audio, current_recvonly, audio_sections);
    recvonly
}

/// What an offer adds, after its mixed m-line, for each unmixed speaker stream it asks
/// for: a receive-only audio transceiver.
pub(crate) fn receive_only() -> RTCRtpTransceiverInit {
    RTCRtpTransceiverInit {
        direction: RTCRtpTransceiverDirection::Recvonly,
        streams: vec![],
        send_encodings: vec![],
    }
}

/// Gives a packet received on an unmixed m-line back its speaker's SSRC (the CSRC the
/// sender put there). A packet without a CSRC keeps the slot's SSRC.
pub(crate) fn restore_speaker(header: &mut rtc::rtp::header::Header) {
    if let Some(&speaker) = header.csrc.first() {
        header.ssrc = speaker;
        header.csrc.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_slots_or_mixed_ssrc_everything_is_main() {
        let now = Instant::now();
        assert_eq!(Router::new(None, 4).route(7, 1, now), Route::Main);
        assert_eq!(Router::new(Some(9), 0).route(7, 1, now), Route::Main);
        assert_eq!(Router::new(Some(9), 4).route(9, 1, now), Route::Main);
    }

    #[test]
    fn speakers_keep_their_slot_and_overflow_is_refused() {
        let now = Instant::now();
        let mut r = Router::new(Some(1), 2);
        assert_eq!(
            r.route(10, 100, now),
            Route::Unmixed {
                slot: 0,
                sequence_number: 100
            }
        );
        assert_eq!(
            r.route(11, 5, now),
            Route::Unmixed {
                slot: 1,
                sequence_number: 5
            }
        );
        assert_eq!(r.route(12, 7, now), Route::NoSlot, "both slots busy");
        assert_eq!(
            r.route(10, 101, now),
            Route::Unmixed {
                slot: 0,
                sequence_number: 101
            }
        );
        assert_eq!(r.sources(), vec![Some(10), Some(11)]);
    }

    #[test]
    fn an_idle_slot_passes_on_with_continuous_sequence_numbers() {
        let start = Instant::now();
        let mut r = Router::new(Some(1), 2);
        r.route(10, 65535, start);
        r.route(11, 40, start + SLOT_IDLE / 2);
        // Speaker 10 went quiet a full idle period ago; 11 has not.
        let later = start + SLOT_IDLE;
        assert_eq!(
            r.route(12, 3000, later),
            Route::Unmixed {
                slot: 0,
                sequence_number: 0
            },
            "continues after 65535 on slot 0"
        );
        assert_eq!(
            r.route(12, 3001, later),
            Route::Unmixed {
                slot: 0,
                sequence_number: 1
            }
        );
        assert_eq!(r.sources(), vec![Some(12), Some(11)]);
    }

    #[test]
    fn counts_only_receive_only_audio_after_the_first() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n";
        assert_eq!(offered_unmixed_streams(sdp), 2);
        let first_recvonly = "v=0\r\nm=audio 9 X 111\r\na=recvonly\r\n";
        assert_eq!(offered_unmixed_streams(first_recvonly), 0);
    }

    #[test]
    fn the_speaker_comes_back_from_the_csrc() {
        let mut h = rtc::rtp::header::Header {
            ssrc: 0xAAAA,
            csrc: vec![42],
            ..Default::default()
        };
        restore_speaker(&mut h);
        assert_eq!((h.ssrc, h.csrc.len()), (42, 0));
        restore_speaker(&mut h);
        assert_eq!(h.ssrc, 42, "no CSRC: unchanged");
    }
}
