//! appmedia-transport (being written).
