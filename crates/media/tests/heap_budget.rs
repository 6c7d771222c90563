//! Memory per call: the target is at most 256 KiB of RSS per call. This measures the
//! Rust heap of a two-party call's pipeline (construction plus a warmed-up remote stream) with
//! a byte-counting allocator. libopus allocates its encoder and decoder state with C malloc
//! (48 KiB together at 48 kHz mono: opus_encoder_get_size 31668 + opus_decoder_get_size
//! 18468), which this cannot see, so the Rust budget is set
//! to leave room for it.

use std::time::Duration;

use appmedia_media::alloc_count::{CountingAllocator, live_bytes};
use appmedia_media::pipeline::{CallPipeline, PipelineConfig};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const RUST_HEAP_BUDGET: isize = 200 * 1024;

#[test]
fn a_two_party_call_fits_the_memory_budget() {
    let mut peer = CallPipeline::new(PipelineConfig {
        local_ssrc: 1,
        ..PipelineConfig::default()
    })
    .unwrap();
    let peer_bot = peer.bot_sender();
    let before = live_bytes();
    // A two-party call needs one remote stream slot (the default keeps four for conferences).
    let mut call = CallPipeline::new(PipelineConfig {
        local_ssrc: 2,
        max_remote_streams: 1,
        ..PipelineConfig::default()
    })
    .unwrap();
    let bot = call.bot_sender();
    for i in 0..100u32 {
        let now = Duration::from_millis(20) * i;
        peer_bot.send_pcm16k(&[3; 640]).unwrap();
        bot.send_pcm16k(&[5; 640]).unwrap();
        peer.tick(now);
        // The packet's own buffer belongs to the transport; it is freed once played.
        if let Some(p) = peer.outgoing_packet() {
            call.push_rtp(bytes::Bytes::copy_from_slice(p), now);
        }
        call.tick(now);
    }
    assert_eq!(call.stream_stats().count(), 1);
    let used = live_bytes() - before;
    assert!(
        used <= RUST_HEAP_BUDGET,
        "a two-party call holds {} KiB of Rust heap (budget {} KiB)",
        used / 1024,
        RUST_HEAP_BUDGET / 1024
    );
    assert!(
        used > 50 * 1024,
        "the counter must see the call ({used} bytes)"
    );
    eprintln!("two-party call: {} KiB of Rust heap", used / 1024);
}

/// The same call over raw PCM (Azure Communication Services audio streaming, 16 kHz both
/// ways): no libopus state at all, so the whole per-call target is Rust heap; instead of the
/// codec it holds the stream's playout ring and upsampler, the send side's downsampler and
/// the PCM inbox.
const PCM_CALL_HEAP_BUDGET: isize = 256 * 1024;

#[test]
fn a_pcm_call_fits_the_memory_budget() {
    use appmedia_media::pcm::PcmRate;
    use appmedia_media::pipeline::SendOutput;

    let before = live_bytes();
    let mut call = CallPipeline::new(PipelineConfig {
        local_ssrc: 2,
        max_remote_streams: 1,
        send_output: SendOutput::Pcm(PcmRate::Hz16000),
        ..PipelineConfig::default()
    })
    .unwrap();
    let inbox = call.pcm_inbox();
    let bot = call.bot_sender();
    let outbox = call.pcm_outbox(4).unwrap();
    for i in 0..100u32 {
        let now = Duration::from_millis(20) * i;
        inbox.push(0, PcmRate::Hz16000, &[300; 320], now).unwrap();
        bot.send_pcm16k(&[5; 640]).unwrap();
        call.tick(now);
        while outbox.pop().is_some() {}
    }
    assert_eq!(call.stream_stats().count(), 1);
    assert!(call.stats().pcm_frames_sent > 90);
    let used = live_bytes() - before;
    assert!(
        used <= PCM_CALL_HEAP_BUDGET,
        "a PCM call holds {} KiB of Rust heap (budget {} KiB)",
        used / 1024,
        PCM_CALL_HEAP_BUDGET / 1024
    );
    assert!(
        used > 50 * 1024,
        "the counter must see the call ({used} bytes)"
    );
    eprintln!("PCM call: {} KiB of Rust heap", used / 1024);
}
