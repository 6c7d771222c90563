//! appmedia-media (being written).
pub mod rtp;
