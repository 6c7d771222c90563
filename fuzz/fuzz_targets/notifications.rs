//! A notification batch as Graph POSTs it to the bot's callback: bytes through the callback
//! receiver's handler (authentication off, as on loopback), parsed, applied to the call
//! registry (state, roster with sequence numbers, content sharing) and delivered. Two batches
//! per input (split at the first NUL), so that a second one meets the state the first left.
//! Every answer is a status the receiver documents, and the registry stays within its cap.

#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use appmedia_signalling::auth::CallbackAuth;
use appmedia_signalling::callback::{CallRegistry, CallbackReceiver};
use appmedia_signalling::roster::RosterPolicy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let auth =
        CallbackAuth::disabled_for_loopback("127.0.0.1:9".parse().unwrap()).expect("loopback");
    let registry = Arc::new(
        CallRegistry::new(RosterPolicy::default(), Duration::from_secs(300))
            .with_limits(64, Duration::from_secs(600)),
    );
    let (receiver, _events) = CallbackReceiver::with_channel(auth, registry.clone(), 1024);
    let now = Instant::now();
    for (i, batch) in data.splitn(2, |b| *b == 0).enumerate() {
        let response =
            runtime.block_on(receiver.handle(None, batch, now + Duration::from_secs(i as u64)));
        let status = response.status.as_u16();
        assert!(
            matches!(status, 202 | 400 | 403 | 404 | 503),
            "undocumented status {status}"
        );
    }
    assert!(registry.len() <= 64);
});
