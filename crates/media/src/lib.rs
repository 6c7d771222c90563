//! appmedia-media (being written).
pub mod codec;
pub mod jitter;
pub mod rtp;
