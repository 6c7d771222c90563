//! Who hosts the media: `serviceHostedMediaConfig` or `appHostedMediaConfig`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Nullable;

/// `#microsoft.graph.mediaInfo`: a prompt the service fetches ahead of time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MediaInfo {
    /// `@odata.type`, when sent.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// Where the audio file is.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub uri: Nullable<String>,
    /// The caller's id for the prompt (used for caching).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub resource_id: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl MediaInfo {
    /// A prompt at `uri` with the caller's `resource_id`.
    pub fn new(uri: impl Into<String>, resource_id: impl Into<String>) -> Self {
        MediaInfo {
            uri: uri.into().into(),
            resource_id: resource_id.into().into(),
            ..Default::default()
        }
    }
}

/// `#microsoft.graph.serviceHostedMediaConfig`: the service plays and records media.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceHostedMediaConfig {
    /// Prompts to fetch before they are played.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub pre_fetch_media: Nullable<Vec<MediaInfo>>,
    /// Keep the bot out of the default audio group.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub remove_from_default_audio_group: Nullable<bool>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `#microsoft.graph.appHostedMediaConfig`: the bot hosts the media; `blob` describes its endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppHostedMediaConfig {
    /// The media session configuration (opaque to Graph; appmedia's format is documented in docs/).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub blob: Nullable<String>,
    /// Keep the bot out of the default audio group.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub remove_from_default_audio_group: Nullable<bool>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AppHostedMediaConfig {
    /// A config carrying the media session's blob.
    pub fn new(blob: impl Into<String>) -> Self {
        AppHostedMediaConfig {
            blob: blob.into().into(),
            ..Default::default()
        }
    }
}

odata_union! {
    /// `mediaConfig` of a call, chosen by `@odata.type`.
    MediaConfig {
        /// `#microsoft.graph.serviceHostedMediaConfig`
        ServiceHosted(ServiceHostedMediaConfig) = "#microsoft.graph.serviceHostedMediaConfig",
        /// `#microsoft.graph.appHostedMediaConfig`
        AppHosted(AppHostedMediaConfig) = "#microsoft.graph.appHostedMediaConfig",
    }
}

impl MediaConfig {
    /// True for application-hosted media (needs `Calls.AccessMedia.All` and a blob).
    pub fn is_app_hosted(&self) -> bool {
        matches!(self, MediaConfig::AppHosted(_))
    }
}
