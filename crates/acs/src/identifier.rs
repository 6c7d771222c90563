//! Who takes part in an ACS call: a phone number, an ACS user, a Teams user, a Teams app (a
//! resource account's application) — ACS's `CommunicationIdentifierModel`, and its raw id.
//!
//! On the wire an identifier is an object with a `kind`, the kind's own object and a
//! `rawId`; older API versions and some events omit `kind`, and the audio stream names
//! participants by raw id only (`participantRawID`). [`Identifier::from_raw_id`] reads raw ids
//! by their documented prefixes (`4:` phone numbers, `8:acs:` ACS users, `8:orgid:` Teams
//! users, `28:orgid:` Teams apps, with the government clouds' variants); anything else is kept
//! as [`Identifier::Unknown`] rather than refused, as Microsoft's SDKs do.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The Microsoft cloud a Teams identity lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Cloud {
    /// The commercial cloud (`orgid`).
    #[default]
    Public,
    /// US Government DoD (`dod`).
    Dod,
    /// US Government Community Cloud High (`gcch`).
    Gcch,
}

impl Cloud {
    fn raw_prefix(self) -> &'static str {
        match self {
            Cloud::Public => "orgid",
            Cloud::Dod => "dod",
            Cloud::Gcch => "gcch",
        }
    }
}

/// One participant of an ACS call.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identifier {
    /// A phone number in E.164 (`+14255550123`); raw id `4:+14255550123`.
    PhoneNumber(String),
    /// An ACS user; its id is its raw id (`8:acs:{resource}_{user}`).
    CommunicationUser(String),
    /// A Teams user by Entra object id; raw id `8:orgid:{id}` (`8:teamsvisitor:` anonymous).
    MicrosoftTeamsUser {
        /// The user's Entra object id.
        user_id: String,
        /// Its cloud.
        cloud: Cloud,
        /// An anonymous meeting guest.
        anonymous: bool,
    },
    /// A Teams application (a resource account's bot); raw id `28:orgid:{app id}`.
    MicrosoftTeamsApp {
        /// The application id.
        app_id: String,
        /// Its cloud.
        cloud: Cloud,
    },
    /// An identity of a kind this crate does not model; kept by its raw id.
    Unknown(String),
}

impl Identifier {
    /// A phone number.
    pub fn phone(number: impl Into<String>) -> Self {
        Identifier::PhoneNumber(number.into())
    }

    /// An ACS user.
    pub fn user(id: impl Into<String>) -> Self {
        Identifier::CommunicationUser(id.into())
    }

    /// A Teams user in the public cloud.
    pub fn teams_user(user_id: impl Into<String>) -> Self {
        Identifier::MicrosoftTeamsUser {
            user_id: user_id.into(),
            cloud: Cloud::Public,
            anonymous: false,
        }
    }

    /// Reads a raw id by its prefix; an unknown prefix gives [`Identifier::Unknown`].
    pub fn from_raw_id(raw: &str) -> Self {
        if let Some(number) = raw.strip_prefix("4:") {
            return Identifier::PhoneNumber(number.to_owned());
        }
        if raw.starts_with("8:acs:")
            || raw.starts_with("8:spool:")
            || raw.starts_with("8:dod-acs:")
            || raw.starts_with("8:gcch-acs:")
        {
            return Identifier::CommunicationUser(raw.to_owned());
        }
        if let Some(id) = raw.strip_prefix("8:teamsvisitor:") {
            return Identifier::MicrosoftTeamsUser {
                user_id: id.to_owned(),
                cloud: Cloud::Public,
                anonymous: true,
            };
        }
        for cloud in [Cloud::Public, Cloud::Dod, Cloud::Gcch] {
            let prefix = cloud.raw_prefix();
            if let Some(id) = raw
                .strip_prefix("8:")
                .and_then(|r| r.strip_prefix(prefix))
                .and_then(|r| r.strip_prefix(':'))
            {
                return Identifier::MicrosoftTeamsUser {
                    user_id: id.to_owned(),
                    cloud,
                    anonymous: false,
                };
            }
            if let Some(id) = raw
                .strip_prefix("28:")
                .and_then(|r| r.strip_prefix(prefix))
                .and_then(|r| r.strip_prefix(':'))
            {
                return Identifier::MicrosoftTeamsApp {
                    app_id: id.to_owned(),
                    cloud,
                };
            }
        }
        Identifier::Unknown(raw.to_owned())
    }

    /// The raw id: what the audio stream's `participantRawID` and the events carry.
    pub fn raw_id(&self) -> String {
        match self {
            Identifier::PhoneNumber(number) => format!("4:{number}"),
            Identifier::CommunicationUser(id) | Identifier::Unknown(id) => id.clone(),
            Identifier::MicrosoftTeamsUser {
                user_id,
                anonymous: true,
                ..
            } => format!("8:teamsvisitor:{user_id}"),
            Identifier::MicrosoftTeamsUser { user_id, cloud, .. } => {
                format!("8:{}:{user_id}", cloud.raw_prefix())
            }
            Identifier::MicrosoftTeamsApp { app_id, cloud } => {
                format!("28:{}:{app_id}", cloud.raw_prefix())
            }
        }
    }

    /// The phone number, for a phone participant.
    pub fn phone_number(&self) -> Option<&str> {
        match self {
            Identifier::PhoneNumber(n) => Some(n),
            _ => None,
        }
    }
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw_id())
    }
}

/// `CommunicationIdentifierModel` as it travels.
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number: Option<PhoneWire>,
    #[serde(skip_serializing_if = "Option::is_none")]
    communication_user: Option<UserWire>,
    #[serde(skip_serializing_if = "Option::is_none")]
    microsoft_teams_user: Option<TeamsUserWire>,
    #[serde(skip_serializing_if = "Option::is_none")]
    microsoft_teams_app: Option<TeamsAppWire>,
}

#[derive(Serialize, Deserialize)]
struct PhoneWire {
    value: String,
}

#[derive(Serialize, Deserialize)]
struct UserWire {
    id: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TeamsUserWire {
    user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    is_anonymous: Option<bool>,
    #[serde(default)]
    cloud: Cloud,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TeamsAppWire {
    app_id: String,
    #[serde(default)]
    cloud: Cloud,
}

impl Serialize for Identifier {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut wire = Wire {
            raw_id: Some(self.raw_id()),
            ..Wire::default()
        };
        match self {
            Identifier::PhoneNumber(value) => {
                wire.kind = Some("phoneNumber".into());
                wire.phone_number = Some(PhoneWire {
                    value: value.clone(),
                });
            }
            Identifier::CommunicationUser(id) => {
                wire.kind = Some("communicationUser".into());
                wire.communication_user = Some(UserWire { id: id.clone() });
            }
            Identifier::MicrosoftTeamsUser {
                user_id,
                cloud,
                anonymous,
            } => {
                wire.kind = Some("microsoftTeamsUser".into());
                wire.microsoft_teams_user = Some(TeamsUserWire {
                    user_id: user_id.clone(),
                    is_anonymous: Some(*anonymous),
                    cloud: *cloud,
                });
            }
            Identifier::MicrosoftTeamsApp { app_id, cloud } => {
                wire.kind = Some("microsoftTeamsApp".into());
                wire.microsoft_teams_app = Some(TeamsAppWire {
                    app_id: app_id.clone(),
                    cloud: *cloud,
                });
            }
            Identifier::Unknown(_) => wire.kind = Some("unknown".into()),
        }
        wire.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Identifier {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        // The kind's own object wins; without one, the raw id decides.
        if let Some(p) = wire.phone_number {
            return Ok(Identifier::PhoneNumber(p.value));
        }
        if let Some(u) = wire.communication_user {
            return Ok(Identifier::CommunicationUser(u.id));
        }
        if let Some(t) = wire.microsoft_teams_user {
            return Ok(Identifier::MicrosoftTeamsUser {
                user_id: t.user_id,
                cloud: t.cloud,
                anonymous: t.is_anonymous.unwrap_or(false),
            });
        }
        if let Some(a) = wire.microsoft_teams_app {
            return Ok(Identifier::MicrosoftTeamsApp {
                app_id: a.app_id,
                cloud: a.cloud,
            });
        }
        match wire.raw_id {
            Some(raw) if !raw.is_empty() => Ok(Identifier::from_raw_id(&raw)),
            _ => Err(serde::de::Error::custom(
                "a communication identifier needs a rawId or one of phoneNumber, \
                 communicationUser, microsoftTeamsUser, microsoftTeamsApp",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn raw_ids_round_trip_by_prefix() {
        for raw in [
            "4:+14255550123",
            "8:acs:1b5cc06b-f352-4571-b1e6-d9b259b7c776_00000000-0000-0000-0000-000000000001",
            "8:orgid:6b06e9b5-4e6e-4e4b-9d4f-000000000001",
            "8:gcch:6b06e9b5-4e6e-4e4b-9d4f-000000000001",
            "8:teamsvisitor:abc",
            "28:orgid:5e2d6d9a-0000-0000-0000-000000000002",
            "28:dod:5e2d6d9a-0000-0000-0000-000000000002",
            "9:something-new",
        ] {
            assert_eq!(Identifier::from_raw_id(raw).raw_id(), raw, "{raw}");
        }
        assert_eq!(
            Identifier::from_raw_id("4:+14255550123"),
            Identifier::phone("+14255550123")
        );
        assert!(matches!(
            Identifier::from_raw_id("28:gcch:app"),
            Identifier::MicrosoftTeamsApp {
                cloud: Cloud::Gcch,
                ..
            }
        ));
        assert!(matches!(
            Identifier::from_raw_id("8:orgidx:1"),
            Identifier::Unknown(_)
        ));
    }

    #[test]
    fn the_wire_model_has_kind_object_and_raw_id() {
        let phone = serde_json::to_value(Identifier::phone("+14255550123")).unwrap();
        assert_eq!(
            phone,
            json!({"rawId": "4:+14255550123", "kind": "phoneNumber",
                   "phoneNumber": {"value": "+14255550123"}})
        );
        let teams = serde_json::to_value(Identifier::teams_user("u1")).unwrap();
        assert_eq!(
            teams,
            json!({"rawId": "8:orgid:u1", "kind": "microsoftTeamsUser",
                   "microsoftTeamsUser": {"userId": "u1", "isAnonymous": false, "cloud": "public"}})
        );
        for id in [
            Identifier::phone("+1"),
            Identifier::user("8:acs:r_u"),
            Identifier::teams_user("u1"),
            Identifier::MicrosoftTeamsApp {
                app_id: "a".into(),
                cloud: Cloud::Dod,
            },
        ] {
            let back: Identifier =
                serde_json::from_value(serde_json::to_value(&id).unwrap()).unwrap();
            assert_eq!(back, id);
        }
    }

    #[test]
    fn older_shapes_without_kind_are_read_by_object_or_raw_id() {
        let by_object: Identifier =
            serde_json::from_value(json!({"communicationUser": {"id": "8:acs:x"}})).unwrap();
        assert_eq!(by_object, Identifier::user("8:acs:x"));
        let by_raw: Identifier = serde_json::from_value(json!({"rawId": "4:+331"})).unwrap();
        assert_eq!(by_raw, Identifier::phone("+331"));
        let empty = serde_json::from_value::<Identifier>(json!({"kind": "phoneNumber"}));
        assert!(empty.unwrap_err().to_string().contains("rawId"));
    }
}
