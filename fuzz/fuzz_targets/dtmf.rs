//! Telephone events (RFC 4733) from the network: each 8-byte record of the input is one
//! packet (SSRC selector, timestamp step, arrival step, then a 4-byte event payload of any
//! content) through the DTMF detector, polled as the media tick does. Every tone it reports
//! is of a stream it was fed, and no more tones come out than packets went in.

#![no_main]

use std::time::Duration;

use appmedia_media::dtmf::{DtmfDetector, TelephoneEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut detector: DtmfDetector = DtmfDetector::new();
    let mut now = Duration::ZERO;
    let mut timestamp = 0u32;
    let mut tones = 0usize;
    for record in data.chunks(8) {
        let [ssrc, ts_step, arrival, payload @ ..] = record else {
            let _ = TelephoneEvent::parse(record);
            continue;
        };
        let _ = TelephoneEvent::parse(payload);
        timestamp = timestamp.wrapping_add(u32::from(*ts_step) * 160);
        now += Duration::from_millis(u64::from(*arrival));
        detector.push(u32::from(ssrc % 8), timestamp, payload, now, |tone| {
            assert!(tone.ssrc < 8, "a tone of a stream never fed: {tone:?}");
            tones += 1;
        });
        detector.poll(now, |_| tones += 1);
        assert!(tones <= data.len() / 8 + 1);
    }
    // Every event ends within the detector's timeout once packets stop.
    detector.poll(now + Duration::from_secs(60), |_| tones += 1);
    assert!(tones <= 2 * (data.len() / 8 + 1));
});
