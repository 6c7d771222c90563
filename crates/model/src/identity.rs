//! Who is in a call: `identity`, `identitySet`, `participantInfo`, `invitationParticipantInfo`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{EndpointType, IdentityKind, Nullable};

/// `#microsoft.graph.identity`: an id and a display name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Identity {
    /// `@odata.type`, normally `#microsoft.graph.identity`; kept as sent.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// The object id (user, application, application instance) or, for `phone`, the E.164 number.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub id: Nullable<String>,
    /// Display name.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub display_name: Nullable<String>,
    /// Tenant of the identity (organizers of meetings in another tenant carry it).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub tenant_id: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Identity {
    /// The `@odata.type` the builders write.
    pub const ODATA_TYPE: &'static str = "#microsoft.graph.identity";

    /// An identity with an id and the `#microsoft.graph.identity` annotation.
    pub fn new(id: impl Into<String>) -> Self {
        Identity {
            odata_type: Self::ODATA_TYPE.to_owned().into(),
            id: id.into().into(),
            ..Default::default()
        }
    }

    /// The kind of identity its `@odata.type` names (`None` when it has none).
    pub fn kind(&self) -> Option<IdentityKind> {
        self.odata_type.value().map(|t| IdentityKind::from_graph(t))
    }

    /// Sets the display name.
    pub fn with_display_name(mut self, display_name: impl Into<String>) -> Self {
        self.display_name = display_name.into().into();
        self
    }

    /// Sets the tenant id.
    pub fn with_tenant_id(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = tenant_id.into().into();
        self
    }
}

/// `#microsoft.graph.identitySet` (the communications flavour): one identity per kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IdentitySet {
    /// `@odata.type`, normally `#microsoft.graph.identitySet`.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// A Teams (Entra ID) user.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub user: Nullable<Identity>,
    /// An application (a bot).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub application: Nullable<Identity>,
    /// An application instance (a bot's resource account, which can own a phone number).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub application_instance: Nullable<Identity>,
    /// A phone number (PSTN); the id is E.164.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub phone: Nullable<Identity>,
    /// An anonymous guest.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub guest: Nullable<Identity>,
    /// A device.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub device: Nullable<Identity>,
    /// Properties this model does not name (encrypted, onPremises, ...), kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl IdentitySet {
    /// The `@odata.type` the builders write.
    pub const ODATA_TYPE: &'static str = "#microsoft.graph.identitySet";

    fn annotated() -> Self {
        IdentitySet {
            odata_type: Self::ODATA_TYPE.to_owned().into(),
            ..Default::default()
        }
    }

    /// A set holding a user.
    pub fn user(identity: Identity) -> Self {
        IdentitySet {
            user: identity.into(),
            ..Self::annotated()
        }
    }

    /// A set holding an application.
    pub fn application(identity: Identity) -> Self {
        IdentitySet {
            application: identity.into(),
            ..Self::annotated()
        }
    }

    /// A set holding an application instance.
    pub fn application_instance(identity: Identity) -> Self {
        IdentitySet {
            application_instance: identity.into(),
            ..Self::annotated()
        }
    }

    /// A set holding a phone number.
    pub fn phone(identity: Identity) -> Self {
        IdentitySet {
            phone: identity.into(),
            ..Self::annotated()
        }
    }

    /// A set holding a guest.
    pub fn guest(identity: Identity) -> Self {
        IdentitySet {
            guest: identity.into(),
            ..Self::annotated()
        }
    }
}

/// `#microsoft.graph.participantInfo`: a participant as the call sees it (source, answeredBy, roster).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ParticipantInfo {
    /// `@odata.type`, normally `#microsoft.graph.participantInfo`.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// Who.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub identity: Nullable<IdentitySet>,
    /// ISO 3166-1 alpha-2 country code of the participant's best location.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub country_code: Nullable<String>,
    /// Kind of endpoint.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub endpoint_type: Nullable<EndpointType>,
    /// Home region.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub region: Nullable<String>,
    /// Language culture string (e.g. `en-US`).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub language_id: Nullable<String>,
    /// Participant id.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub participant_id: Nullable<String>,
    /// Client platform id.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub platform_id: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ParticipantInfo {
    /// The `@odata.type` the builders write.
    pub const ODATA_TYPE: &'static str = "#microsoft.graph.participantInfo";

    /// A participant info with an identity and the annotation.
    pub fn new(identity: IdentitySet) -> Self {
        ParticipantInfo {
            odata_type: Self::ODATA_TYPE.to_owned().into(),
            identity: identity.into(),
            ..Default::default()
        }
    }
}

/// `#microsoft.graph.invitationParticipantInfo`: someone the call invites (a target).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InvitationParticipantInfo {
    /// `@odata.type`, normally `#microsoft.graph.invitationParticipantInfo`.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// Who.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub identity: Nullable<IdentitySet>,
    /// Kind of endpoint.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub endpoint_type: Nullable<EndpointType>,
    /// Home region.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub region: Nullable<String>,
    /// The call this invitation replaces (consultative transfer).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub replaces_call_id: Nullable<String>,
    /// Language culture string.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub language_id: Nullable<String>,
    /// Whether the participant is hidden from the roster.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub hidden: Nullable<bool>,
    /// Participant id.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub participant_id: Nullable<String>,
    /// Whether to remove the participant from the default audio routing group.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub remove_from_default_audio_routing_group: Nullable<bool>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl InvitationParticipantInfo {
    /// The `@odata.type` the builders write.
    pub const ODATA_TYPE: &'static str = "#microsoft.graph.invitationParticipantInfo";

    /// An invitation with an identity and the annotation.
    pub fn new(identity: IdentitySet) -> Self {
        InvitationParticipantInfo {
            odata_type: Self::ODATA_TYPE.to_owned().into(),
            identity: identity.into(),
            ..Default::default()
        }
    }
}
