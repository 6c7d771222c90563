//! One RTP packet from the network: parsed (header, CSRCs, RFC 8285 extensions, padding), its
//! elements and audio levels read, and — when it parses — written again by our own writer,
//! which must read back as the same packet.

#![no_main]

use appmedia_media::rtp::{AudioLevel, HeaderExtension, RtpPacket, RtpPacketSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = RtpPacket::parse(bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    let elements: Vec<HeaderExtension<'_>> = packet.extensions().collect();
    for element in &elements {
        let _ = AudioLevel::from_element(element.data);
    }
    for id in 0..=255u8 {
        let _ = packet.audio_level(id);
    }
    assert!(packet.payload().len() + packet.padding_len() <= data.len());
    assert_eq!(packet.extension_data().is_some(), data[0] & 0x10 != 0);

    // Our writer, given what was read, writes a packet that reads back the same. It may
    // refuse (e.g. elements no single RFC 8285 form can carry): that is an error, not a panic.
    let Ok(padding) = u8::try_from(packet.padding_len()) else {
        return;
    };
    let spec = RtpPacketSpec {
        header: *packet.header(),
        extensions: &elements,
        payload: packet.payload(),
        padding,
    };
    let Ok(written) = spec.to_bytes() else {
        return;
    };
    let again = RtpPacket::parse(written).expect("our own packet parses");
    assert_eq!(again.header(), packet.header());
    assert_eq!(again.payload(), packet.payload());
    assert_eq!(again.padding_len(), packet.padding_len());
    let elements_again: Vec<(u8, &[u8])> = again.extensions().map(|e| (e.id, e.data)).collect();
    let elements: Vec<(u8, &[u8])> = elements.iter().map(|e| (e.id, e.data)).collect();
    assert_eq!(elements_again, elements);
});
