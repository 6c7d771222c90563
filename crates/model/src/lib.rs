//! appmedia-model (being written).
