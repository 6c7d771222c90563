//! Audio measures shared by appmedia's end-to-end tests (the emulator's and the CLI's), so
//! each crate's tests check recordings the same way. Not published.

pub mod audio;
pub mod browser;
