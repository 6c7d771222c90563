//! appmedia-media (being written).
