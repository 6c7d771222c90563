//! A hostile or broken stream through the receive path: each 8-byte record of the input is
//! one RTP packet (sequence step, timestamp step, SSRC switch, arrival time, payload) pushed
//! into the jitter buffer, which is popped every 20 ms of simulated time; what it plays goes
//! through the Opus decoder (payloads of any content), lost frames through FEC or
//! concealment. The buffer never holds more than its capacity and the decoder never fails
//! on a frame it was asked to conceal.

#![no_main]

use std::time::Duration;

use appmedia_media::codec::OpusDecoder;
use appmedia_media::frame::SAMPLES_PER_FRAME_48K;
use appmedia_media::jitter::{JitterBuffer, JitterConfig, Playout};
use appmedia_media::rtp::{RtpHeader, RtpPacket, RtpPacketSpec};
use libfuzzer_sys::fuzz_target;

const TICK: Duration = Duration::from_millis(20);

fuzz_target!(|data: &[u8]| {
    let config = JitterConfig::default();
    let mut buffer = JitterBuffer::new(config);
    let mut decoder = OpusDecoder::new().expect("decoder");
    let mut out = [0.0f32; SAMPLES_PER_FRAME_48K];
    let (mut sequence, mut timestamp, mut ssrc) = (0u16, 0u32, 1u32);
    let mut now = Duration::ZERO;
    let mut next_tick = TICK;
    for record in data.chunks_exact(8) {
        let [flags, seq_step, ts_hi, ts_lo, arrival, len, fill, marker] = *record else {
            unreachable!("chunks of 8");
        };
        sequence = sequence.wrapping_add(u16::from(seq_step).wrapping_sub(1));
        let ts_step = u32::from(u16::from_be_bytes([ts_hi, ts_lo]));
        timestamp = if flags & 0x80 != 0 {
            timestamp.wrapping_sub(ts_step)
        } else {
            timestamp.wrapping_add(ts_step)
        };
        if flags & 0x40 != 0 {
            ssrc = ssrc.wrapping_add(1);
        }
        now += Duration::from_millis(u64::from(arrival));
        // Ticks that fell due before this packet arrived.
        while next_tick <= now {
            play(&mut buffer, &mut decoder, &mut out, next_tick);
            next_tick += TICK;
        }
        let payload = vec![fill; usize::from(len % 128)];
        let mut header = RtpHeader::new(111, sequence, timestamp, ssrc);
        header.marker = marker & 1 == 1;
        let Ok(bytes) = RtpPacketSpec::new(header, &payload).to_bytes() else {
            continue;
        };
        let packet = RtpPacket::parse(bytes).expect("our own packet parses");
        buffer.set_silent(flags & 0x20 != 0);
        let _ = buffer.push(packet, now);
        assert!(buffer.len() <= config.capacity);
    }
    // Drain: ticks until the buffer is empty (two seconds at most), then a few more of
    // underrun. Concealing on after that repeats what the underrun ticks already did and
    // only slowed the target down (each tick is a libopus call).
    let mut after_empty = 0;
    for _ in 0..100 {
        play(&mut buffer, &mut decoder, &mut out, next_tick);
        next_tick += TICK;
        if buffer.is_empty() {
            after_empty += 1;
            if after_empty == 5 {
                break;
            }
        }
    }
    assert!(buffer.len() <= config.capacity);
});

fn play(buffer: &mut JitterBuffer, decoder: &mut OpusDecoder, out: &mut [f32], now: Duration) {
    match buffer.pop(now) {
        Playout::Frame(packet) => {
            if decoder.decode(packet.payload(), out).is_err() {
                decoder.conceal(out).expect("concealment never fails");
            }
        }
        Playout::Lost { fec: Some(next) } => {
            let payload = next.payload().to_vec();
            if decoder.decode_fec(&payload, out).is_err() {
                decoder.conceal(out).expect("concealment never fails");
            }
        }
        Playout::Lost { fec: None } => decoder.conceal(out).expect("concealment never fails"),
        _ => {}
    }
}
