//! The audio measures shared by appmedia's end-to-end tests (`appmedia-testkit`).

// Each test binary uses its own subset.
#[allow(unused_imports)]
pub use appmedia_testkit::audio::*;
