//! appmedia-signalling (being written).
