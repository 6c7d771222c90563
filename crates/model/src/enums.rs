//! Graph enumerations as Rust enums that keep values they do not know.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Declares a string enumeration with Graph's spellings and an `Unknown(String)`
/// fallback, so a value added to Graph after this code was written (or Graph's own
/// `unknownFutureValue`) parses, is visible to the caller, and is written back as it came.
macro_rules! graph_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[doc = ""]
                #[doc = concat!("Graph's `", $value, "`.")]
                $variant,
            )*
            /// A value this version does not model, kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// Graph's spelling of the value.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $value, )*
                    Self::Unknown(other) => other,
                }
            }

            /// Parses Graph's spelling; anything else becomes `Unknown`.
            pub fn from_graph(value: &str) -> Self {
                match value {
                    $( $value => Self::$variant, )*
                    other => Self::Unknown(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self::from_graph(value)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Ok(Self::from_graph(&value))
            }
        }
    };
}

graph_enum! {
    /// `callState`: where a call is in its life.
    CallState {
        Incoming = "incoming",
        Establishing = "establishing",
        Ringing = "ringing",
        Established = "established",
        Hold = "hold",
        Transferring = "transferring",
        TransferAccepted = "transferAccepted",
        Redirecting = "redirecting",
        Terminating = "terminating",
        Terminated = "terminated",
    }
}

graph_enum! {
    /// `callDirection`.
    CallDirection {
        Incoming = "incoming",
        Outgoing = "outgoing",
    }
}

graph_enum! {
    /// `modality` (requestedModalities, activeModalities, mediaStream.mediaType).
    /// Graph's own `unknown` and `unknownFutureValue` land in `Unknown`.
    Modality {
        Audio = "audio",
        Video = "video",
        VideoBasedScreenSharing = "videoBasedScreenSharing",
        Data = "data",
    }
}

graph_enum! {
    /// `mediaDirection` of a media stream.
    MediaDirection {
        Inactive = "inactive",
        SendOnly = "sendOnly",
        ReceiveOnly = "receiveOnly",
        SendReceive = "sendReceive",
    }
}

graph_enum! {
    /// `changeType` of a comms notification.
    ChangeType {
        Created = "created",
        Updated = "updated",
        Deleted = "deleted",
    }
}

graph_enum! {
    /// `endpointType` of a participant.
    EndpointType {
        Default = "default",
        Voicemail = "voicemail",
        SkypeForBusiness = "skypeForBusiness",
        SkypeForBusinessVoipPhone = "skypeForBusinessVoipPhone",
    }
}

graph_enum! {
    /// `routingPolicy` of a call.
    RoutingPolicy {
        None = "none",
        NoMissedCall = "noMissedCall",
        DisableForwardingExceptPhone = "disableForwardingExceptPhone",
        DisableForwarding = "disableForwarding",
        PreferSkypeForBusiness = "preferSkypeForBusiness",
    }
}

graph_enum! {
    /// `routingType` of a call route.
    RoutingType {
        Forwarded = "forwarded",
        Lookup = "lookup",
        SelfFork = "selfFork",
    }
}

graph_enum! {
    /// `mediaState` (of `callMediaState.audio`).
    MediaState {
        Active = "active",
        Inactive = "inactive",
    }
}

graph_enum! {
    /// `callTranscriptionState`.
    CallTranscriptionState {
        NotStarted = "notStarted",
        Active = "active",
        Inactive = "inactive",
    }
}

graph_enum! {
    /// `tone`: a DTMF tone.
    Tone {
        Tone0 = "tone0",
        Tone1 = "tone1",
        Tone2 = "tone2",
        Tone3 = "tone3",
        Tone4 = "tone4",
        Tone5 = "tone5",
        Tone6 = "tone6",
        Tone7 = "tone7",
        Tone8 = "tone8",
        Tone9 = "tone9",
        Star = "star",
        Pound = "pound",
        A = "a",
        B = "b",
        C = "c",
        D = "d",
        Flash = "flash",
    }
}

graph_enum! {
    /// The `@odata.type` of an identity: plain `identity`, or one of the derived
    /// communications identities whose extra properties (`hidden`, `applicationType`,
    /// `email`, ...) an [`Identity`](crate::Identity) keeps in `extra`.
    IdentityKind {
        Identity = "#microsoft.graph.identity",
        CommunicationsUserIdentity = "#microsoft.graph.communicationsUserIdentity",
        CommunicationsApplicationIdentity = "#microsoft.graph.communicationsApplicationIdentity",
        CommunicationsApplicationInstanceIdentity = "#microsoft.graph.communicationsApplicationInstanceIdentity",
        CommunicationsGuestIdentity = "#microsoft.graph.communicationsGuestIdentity",
        CommunicationsPhoneIdentity = "#microsoft.graph.communicationsPhoneIdentity",
        CommunicationsEncryptedIdentity = "#microsoft.graph.communicationsEncryptedIdentity",
        AzureCommunicationServicesUserIdentity = "#microsoft.graph.azureCommunicationServicesUserIdentity",
    }
}

graph_enum! {
    /// `operationStatus`: where a `commsOperation` is in its life.
    OperationStatus {
        NotStarted = "notStarted",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
    }
}

graph_enum! {
    /// `rejectReason` of `call: reject`.
    RejectReason {
        None = "none",
        Busy = "busy",
        Forbidden = "forbidden",
    }
}

graph_enum! {
    /// `recordingStatus` of `call: updateRecordingStatus`. Graph's own `unknown` is
    /// `Unspecified`, because `Unknown(String)` is the macro's fallback for values
    /// this version does not know.
    RecordingStatus {
        Unspecified = "unknown",
        NotRecording = "notRecording",
        Recording = "recording",
        Failed = "failed",
    }
}

graph_enum! {
    /// `screenSharingRole` of `call: changeScreenSharingRole`.
    ScreenSharingRole {
        Viewer = "viewer",
        Sharer = "sharer",
    }
}

graph_enum! {
    /// `playPromptCompletionReason` of a `playPromptOperation` (Graph's `unknown` is `Unspecified`).
    PlayPromptCompletionReason {
        Unspecified = "unknown",
        CompletedSuccessfully = "completedSuccessfully",
        MediaOperationCanceled = "mediaOperationCanceled",
    }
}

graph_enum! {
    /// `recordCompletionReason` of a `recordOperation`.
    RecordCompletionReason {
        OperationCanceled = "operationCanceled",
        StopToneDetected = "stopToneDetected",
        MaxRecordDurationReached = "maxRecordDurationReached",
        InitialSilenceTimeout = "initialSilenceTimeout",
        MaxSilenceTimeout = "maxSilenceTimeout",
        PlayPromptFailed = "playPromptFailed",
        PlayBeepFailed = "playBeepFailed",
        MediaReceiveTimeout = "mediaReceiveTimeout",
        UnspecifiedError = "unspecifiedError",
    }
}

graph_enum! {
    /// `sendDtmfCompletionReason` of a `sendDtmfTonesOperation` (Graph's `unknown` is `Unspecified`).
    SendDtmfCompletionReason {
        Unspecified = "unknown",
        CompletedSuccessfully = "completedSuccessfully",
        MediaOperationCanceled = "mediaOperationCanceled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_parse_and_unknown_values_survive() {
        let state: CallState = serde_json::from_str("\"established\"").unwrap();
        assert_eq!(state, CallState::Established);
        let future: CallState = serde_json::from_str("\"unknownFutureValue\"").unwrap();
        assert_eq!(future, CallState::Unknown("unknownFutureValue".into()));
        assert_eq!(
            serde_json::to_string(&future).unwrap(),
            "\"unknownFutureValue\""
        );
        assert_eq!(Modality::from_graph("unknown").as_str(), "unknown");
        assert_eq!(
            Modality::VideoBasedScreenSharing.to_string(),
            "videoBasedScreenSharing"
        );
    }

    #[test]
    fn graph_unknown_is_a_named_value_not_the_fallback() {
        assert_eq!(
            RecordingStatus::from_graph("unknown"),
            RecordingStatus::Unspecified
        );
        assert_eq!(RecordingStatus::Unspecified.as_str(), "unknown");
        assert_eq!(
            RecordingStatus::from_graph("paused"),
            RecordingStatus::Unknown("paused".into())
        );
        assert_eq!(
            PlayPromptCompletionReason::from_graph("completedSuccessfully"),
            PlayPromptCompletionReason::CompletedSuccessfully
        );
    }

    #[test]
    fn non_string_is_an_error() {
        assert!(serde_json::from_str::<CallState>("3").is_err());
    }
}
