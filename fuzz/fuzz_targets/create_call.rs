//! A create-call request body from a client: JSON into the Graph model and through the
//! validator the client and the emulator share; what validates must serialise and read back
//! as the same request (and validate again).

#![no_main]

use appmedia_model::Call;
use appmedia_signalling::validate::validate_create_call;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(call) = serde_json::from_slice::<Call>(data) else {
        return;
    };
    if validate_create_call(&call).is_err() {
        return;
    }
    let json = serde_json::to_vec(&call).expect("a call serialises");
    let again: Call = serde_json::from_slice(&json).expect("our own JSON reads back");
    assert_eq!(again, call);
    assert!(validate_create_call(&again).is_ok());
});
