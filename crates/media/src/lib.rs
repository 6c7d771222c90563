//! appmedia-media (being written).
pub mod codec;
pub mod rtp;
