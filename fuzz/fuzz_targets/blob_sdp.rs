//! The blob in `appHostedMediaConfig` and the SDP inside it (and the softphone page's offers):
//! text from the network through `Blob::parse` without and with a key, through WebRTC's SDP
//! parser as an offer and as an answer; and, when the text is a blob's content, sealed by us
//! and parsed back to the same blob, with its SDP parsed too.

#![no_main]

use appmedia_transport::{BLOB_VERSION, Blob, Integrity, SdpKind};
use libfuzzer_sys::fuzz_target;
use webrtc::peer_connection::RTCSessionDescription;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Blob::parse(text, None);
    let _ = Blob::parse(text, Some(b"a key shared by bot and service"));
    let _ = RTCSessionDescription::offer(text.to_owned());
    let _ = RTCSessionDescription::answer(text.to_owned());

    // A blob's content (no integrity member) of this format version: what we seal we must
    // read back, whatever it holds. (Another version is refused before anything else.)
    let Ok(blob) = serde_json::from_str::<Blob>(text) else {
        return;
    };
    if blob.version != BLOB_VERSION {
        assert!(Blob::parse(&blob.seal(&Integrity::Sha256), None).is_err());
        return;
    }
    for integrity in [Integrity::Sha256, Integrity::HmacSha256(b"k".to_vec())] {
        let sealed = blob.seal(&integrity);
        let parsed = Blob::parse(&sealed, integrity.key()).expect("our own seal verifies");
        assert_eq!(parsed, blob);
    }
    let _ = blob.expect_kind(SdpKind::Answer);
    let sdp = blob.webrtc.sdp.clone();
    let _ = match blob.webrtc.kind {
        SdpKind::Offer => RTCSessionDescription::offer(sdp),
        SdpKind::Answer => RTCSessionDescription::answer(sdp),
    };
});
