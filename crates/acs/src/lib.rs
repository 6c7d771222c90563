//! appmedia-acs: Azure Communication Services (ACS) Call Automation, the protocol a bot
//! speaks to run on real Microsoft calls from Linux.
//!
//! Against Microsoft Graph, app-hosted media needs Microsoft's closed media platform. ACS Call
//! Automation is the documented open way to a real call's audio: the service reaches PSTN
//! numbers, ACS users and Teams users, and streams the call's audio to the bot's WebSocket (PCM
//! 16 or 24 kHz, 20 ms frames, mixed or one stream per participant), playing back what the
//! bot sends. This crate is that protocol in Rust, both sides (the bot SDK's ACS backend uses
//! it as a client, `appmedia emulator` as the service):
//!
//! * [`identifier`]: phone numbers, ACS users, Teams users and apps, and their raw ids;
//! * [`connection`] and [`hmac`]: the resource's connection string and ACS's HMAC-SHA256
//!   request signing (and its verification);
//! * [`client`]: the REST client (signing, idempotency keys, retries);
//! * [`models`]: the REST resources (create, answer, reject, redirect, transfer, participants,
//!   play, DTMF, recording) and the service's error body;
//! * [`events`]: the CloudEvents posted to a call's callback and Event Grid's `IncomingCall`
//!   webhook with its validation handshake;
//! * [`streaming`]: the audio WebSocket's messages, read with every malformed case refused.
//!
//! ```
//! use appmedia_acs::connection::ConnectionString;
//! use appmedia_acs::hmac;
//!
//! let cs = ConnectionString::parse(
//!     "endpoint=https://contoso.communication.azure.com/;accesskey=c2VjcmV0LWtleQ==",
//! )?;
//! let url = cs.endpoint.join("calling/callConnections?api-version=2025-05-15")?;
//! let signed = hmac::sign(&cs.access_key, "POST", &url, b"{}", std::time::SystemTime::now());
//! assert!(signed.authorization.starts_with("HMAC-SHA256 SignedHeaders=x-ms-date;host;"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod client;
pub mod connection;
pub mod events;
pub mod hmac;
pub mod identifier;
pub mod models;
pub mod streaming;

pub use client::{AcsClient, AcsClientConfig, AcsError, Credential};
pub use connection::ConnectionString;
pub use identifier::Identifier;
