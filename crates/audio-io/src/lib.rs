//! appmedia-audio-io (being written).
