//! What the service posts to the callbackUri: `commsNotifications`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::odata::ODATA_TYPE;
use crate::{
    Call, ChangeType, CommsOperation, ContentSharingSession, DeltaParticipants, Nullable,
    Participant,
};

/// `#microsoft.graph.commsNotifications`: the body of one callback POST.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CommsNotifications {
    /// `@odata.type`, normally `#microsoft.graph.commsNotifications`.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// The notifications, in the order the service wrote them.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub value: Nullable<Vec<CommsNotification>>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CommsNotifications {
    /// The `@odata.type` of a notification batch.
    pub const ODATA_TYPE: &'static str = "#microsoft.graph.commsNotifications";

    /// A batch of notifications, annotated as Graph sends it.
    pub fn new(notifications: Vec<CommsNotification>) -> Self {
        CommsNotifications {
            odata_type: Self::ODATA_TYPE.to_owned().into(),
            value: notifications.into(),
            extra: Map::new(),
        }
    }

    /// The notifications as a slice (absent and `null` give an empty slice).
    pub fn notifications(&self) -> &[CommsNotification] {
        self.value.value().map(Vec::as_slice).unwrap_or_default()
    }
}

/// `#microsoft.graph.commsNotification`: one change to one resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CommsNotification {
    /// `@odata.type`, normally `#microsoft.graph.commsNotification`.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// Created, updated or deleted.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub change_type: Nullable<ChangeType>,
    /// The resource path in the service's internal form (`/app/calls/{id}/participants`).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub resource: Nullable<String>,
    /// The resource path (`/communications/calls/{id}` or a collection under it).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub resource_url: Nullable<String>,
    /// The callback the notification was sent to.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub callback_uri: Nullable<String>,
    /// The changed resource.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub resource_data: Nullable<ResourceData>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CommsNotification {
    /// The `@odata.type` of a notification.
    pub const ODATA_TYPE: &'static str = "#microsoft.graph.commsNotification";

    /// A notification of `change_type` on `resource_url` carrying `resource_data`.
    pub fn new(
        change_type: ChangeType,
        resource_url: impl Into<String>,
        resource_data: ResourceData,
    ) -> Self {
        CommsNotification {
            odata_type: Self::ODATA_TYPE.to_owned().into(),
            change_type: change_type.into(),
            resource_url: resource_url.into().into(),
            resource_data: resource_data.into(),
            ..Default::default()
        }
    }

    /// The call id in `resourceUrl` (`/communications/calls/{id}[/...]`), if it has one.
    pub fn call_id(&self) -> Option<&str> {
        let url = self.resource_url.value()?;
        let rest = url.strip_prefix("/communications/calls/")?;
        let id = rest.split('/').next()?;
        (!id.is_empty()).then_some(id)
    }
}

/// `resourceData` of a notification: what changed, chosen by the `@odata.type` of the
/// object or of the list's elements.
///
/// An empty list is read as an empty participant list (a roster with nobody in it); a
/// list that mixes kinds, or an object of a kind not modelled here, is kept as
/// [`ResourceData::Other`] and written back unchanged.
#[derive(Clone, Debug, PartialEq)]
pub enum ResourceData {
    /// A call (state changes, `toneInfo` of a subscribed tone).
    Call(Box<Call>),
    /// A `commsOperation` (any `#microsoft.graph.*Operation`): the progress or end of an
    /// action such as playPrompt, recordResponse or participants/invite.
    Operation(Box<CommsOperation>),
    /// A full roster.
    Participants(Vec<Participant>),
    /// Delta rosters.
    DeltaParticipants(Vec<DeltaParticipants>),
    /// Content-sharing sessions created, updated or deleted.
    ContentSharingSessions(Vec<ContentSharingSession>),
    /// Anything else, verbatim.
    Other(Value),
}

impl Serialize for ResourceData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ResourceData::Call(call) => call.serialize(serializer),
            ResourceData::Operation(operation) => operation.serialize(serializer),
            ResourceData::Participants(list) => list.serialize(serializer),
            ResourceData::DeltaParticipants(list) => list.serialize(serializer),
            ResourceData::ContentSharingSessions(list) => list.serialize(serializer),
            ResourceData::Other(value) => value.serialize(serializer),
        }
    }
}

fn odata_type_of(value: &Value) -> Option<&str> {
    value.get(ODATA_TYPE).and_then(Value::as_str)
}

impl<'de> Deserialize<'de> for ResourceData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let value = Value::deserialize(deserializer)?;
        let parsed = match &value {
            Value::Object(_) if odata_type_of(&value) == Some(Call::ODATA_TYPE) => {
                serde_json::from_value(value).map(|call| ResourceData::Call(Box::new(call)))
            }
            Value::Object(_)
                if odata_type_of(&value).is_some_and(CommsOperation::is_operation_type) =>
            {
                serde_json::from_value(value)
                    .map(|operation| ResourceData::Operation(Box::new(operation)))
            }
            Value::Array(items) if items.is_empty() => Ok(ResourceData::Participants(Vec::new())),
            Value::Array(items) => {
                let first = odata_type_of(&items[0]);
                let uniform = items.iter().all(|item| odata_type_of(item) == first);
                match first {
                    Some(Participant::ODATA_TYPE) if uniform => {
                        serde_json::from_value(value).map(ResourceData::Participants)
                    }
                    Some(DeltaParticipants::ODATA_TYPE) if uniform => {
                        serde_json::from_value(value).map(ResourceData::DeltaParticipants)
                    }
                    Some(ContentSharingSession::ODATA_TYPE) if uniform => {
                        serde_json::from_value(value).map(ResourceData::ContentSharingSessions)
                    }
                    _ => Ok(ResourceData::Other(value)),
                }
            }
            _ => Ok(ResourceData::Other(value)),
        };
        parsed.map_err(|e| D::Error::custom(format_args!("resourceData: {e}")))
    }
}
