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
        /// An incoming call that has not been answered yet.
        Incoming = "incoming",
        /// The call is being set up (answered or placed, media not yet connected).
        Establishing = "establishing",
        /// The callee is being alerted (an outgoing call).
        Ringing = "ringing",
        /// The call is connected and media can flow.
        Established = "established",
        /// The call is on hold.
        Hold = "hold",
        /// A transfer of the call is in progress.
        Transferring = "transferring",
        /// The transfer target accepted the transfer.
        TransferAccepted = "transferAccepted",
        /// The incoming call is being redirected to other targets.
        Redirecting = "redirecting",
        /// The call is being hung up.
        Terminating = "terminating",
        /// The call has ended; `resultInfo` says why.
        Terminated = "terminated",
    }
}

graph_enum! {
    /// `callDirection`.
    CallDirection {
        /// The call was placed to the bot.
        Incoming = "incoming",
        /// The bot placed the call.
        Outgoing = "outgoing",
    }
}

graph_enum! {
    /// `modality` (requestedModalities, activeModalities, mediaStream.mediaType).
    /// Graph's own `unknown` and `unknownFutureValue` land in `Unknown`.
    Modality {
        /// Audio.
        Audio = "audio",
        /// Camera video.
        Video = "video",
        /// Screen sharing sent as video.
        VideoBasedScreenSharing = "videoBasedScreenSharing",
        /// Data channel.
        Data = "data",
    }
}

graph_enum! {
    /// `mediaDirection` of a media stream.
    MediaDirection {
        /// No media either way.
        Inactive = "inactive",
        /// The bot only sends media.
        SendOnly = "sendOnly",
        /// The bot only receives media.
        ReceiveOnly = "receiveOnly",
        /// Media flows both ways.
        SendReceive = "sendReceive",
    }
}

graph_enum! {
    /// `changeType` of a comms notification.
    ChangeType {
        /// The resource was created.
        Created = "created",
        /// The resource changed.
        Updated = "updated",
        /// The resource was deleted (for a call: it has ended).
        Deleted = "deleted",
    }
}

graph_enum! {
    /// `endpointType` of a participant.
    EndpointType {
        /// An ordinary Teams client or bot.
        Default = "default",
        /// A voicemail endpoint.
        Voicemail = "voicemail",
        /// A Skype for Business client.
        SkypeForBusiness = "skypeForBusiness",
        /// A Skype for Business VoIP phone.
        SkypeForBusinessVoipPhone = "skypeForBusinessVoipPhone",
    }
}

graph_enum! {
    /// `routingPolicy` of a call.
    RoutingPolicy {
        /// No routing restriction.
        None = "none",
        /// The call is not logged as missed.
        NoMissedCall = "noMissedCall",
        /// The callee's forwarding rules apply only to phone numbers.
        DisableForwardingExceptPhone = "disableForwardingExceptPhone",
        /// The callee's forwarding rules are not applied.
        DisableForwarding = "disableForwarding",
        /// Route to Skype for Business endpoints when possible.
        PreferSkypeForBusiness = "preferSkypeForBusiness",
    }
}

graph_enum! {
    /// `routingType` of a call route.
    RoutingType {
        /// The call was forwarded.
        Forwarded = "forwarded",
        /// The target was found by directory lookup.
        Lookup = "lookup",
        /// The call was forked to the callee's other endpoints.
        SelfFork = "selfFork",
    }
}

graph_enum! {
    /// `mediaState` (of `callMediaState.audio`).
    MediaState {
        /// Media is flowing.
        Active = "active",
        /// No media is flowing.
        Inactive = "inactive",
    }
}

graph_enum! {
    /// `callTranscriptionState`.
    CallTranscriptionState {
        /// Transcription has not started.
        NotStarted = "notStarted",
        /// The call is being transcribed.
        Active = "active",
        /// Transcription has stopped.
        Inactive = "inactive",
    }
}

graph_enum! {
    /// `tone`: a DTMF tone.
    Tone {
        /// The digit 0.
        Tone0 = "tone0",
        /// The digit 1.
        Tone1 = "tone1",
        /// The digit 2.
        Tone2 = "tone2",
        /// The digit 3.
        Tone3 = "tone3",
        /// The digit 4.
        Tone4 = "tone4",
        /// The digit 5.
        Tone5 = "tone5",
        /// The digit 6.
        Tone6 = "tone6",
        /// The digit 7.
        Tone7 = "tone7",
        /// The digit 8.
        Tone8 = "tone8",
        /// The digit 9.
        Tone9 = "tone9",
        /// The `*` key.
        Star = "star",
        /// The `#` key.
        Pound = "pound",
        /// The `A` key (column four of the DTMF keypad).
        A = "a",
        /// The `B` key.
        B = "b",
        /// The `C` key.
        C = "c",
        /// The `D` key.
        D = "d",
        /// A hook flash.
        Flash = "flash",
    }
}

graph_enum! {
    /// The `@odata.type` of an identity: plain `identity`, or one of the derived
    /// communications identities whose extra properties (`hidden`, `applicationType`,
    /// `email`, ...) an [`Identity`](crate::Identity) keeps in `extra`.
    IdentityKind {
        /// A plain `identity`.
        Identity = "#microsoft.graph.identity",
        /// A Teams user.
        CommunicationsUserIdentity = "#microsoft.graph.communicationsUserIdentity",
        /// An application (bot).
        CommunicationsApplicationIdentity = "#microsoft.graph.communicationsApplicationIdentity",
        /// An application instance (a bot with a phone number or resource account).
        CommunicationsApplicationInstanceIdentity = "#microsoft.graph.communicationsApplicationInstanceIdentity",
        /// A guest (anonymous meeting participant).
        CommunicationsGuestIdentity = "#microsoft.graph.communicationsGuestIdentity",
        /// A PSTN phone number.
        CommunicationsPhoneIdentity = "#microsoft.graph.communicationsPhoneIdentity",
        /// An identity Graph hides behind an encrypted id.
        CommunicationsEncryptedIdentity = "#microsoft.graph.communicationsEncryptedIdentity",
        /// An Azure Communication Services user.
        AzureCommunicationServicesUserIdentity = "#microsoft.graph.azureCommunicationServicesUserIdentity",
    }
}

graph_enum! {
    /// `operationStatus`: where a `commsOperation` is in its life.
    OperationStatus {
        /// Accepted but not started.
        NotStarted = "notStarted",
        /// In progress.
        Running = "running",
        /// Finished successfully.
        Completed = "completed",
        /// Finished with an error (see `resultInfo`).
        Failed = "failed",
    }
}

graph_enum! {
    /// `rejectReason` of `call: reject`.
    RejectReason {
        /// No reason given.
        None = "none",
        /// The bot is busy.
        Busy = "busy",
        /// The bot refuses the call.
        Forbidden = "forbidden",
    }
}

graph_enum! {
    /// `recordingStatus` of `call: updateRecordingStatus`. Graph's own `unknown` is
    /// `Unspecified`, because `Unknown(String)` is the macro's fallback for values
    /// this version does not know.
    RecordingStatus {
        /// Graph's `unknown`: the status is not known.
        Unspecified = "unknown",
        /// The bot is not recording.
        NotRecording = "notRecording",
        /// The bot is recording.
        Recording = "recording",
        /// Recording failed.
        Failed = "failed",
    }
}

graph_enum! {
    /// `screenSharingRole` of `call: changeScreenSharingRole`.
    ScreenSharingRole {
        /// Views the shared screen.
        Viewer = "viewer",
        /// Shares its screen.
        Sharer = "sharer",
    }
}

graph_enum! {
    /// `playPromptCompletionReason` of a `playPromptOperation` (Graph's `unknown` is `Unspecified`).
    PlayPromptCompletionReason {
        /// Graph's `unknown`: no reason given.
        Unspecified = "unknown",
        /// Every prompt was played.
        CompletedSuccessfully = "completedSuccessfully",
        /// The operation was cancelled (`cancelMediaProcessing`) before it finished.
        MediaOperationCanceled = "mediaOperationCanceled",
    }
}

graph_enum! {
    /// `recordCompletionReason` of a `recordOperation`.
    RecordCompletionReason {
        /// The operation was cancelled.
        OperationCanceled = "operationCanceled",
        /// One of the stop tones was pressed.
        StopToneDetected = "stopToneDetected",
        /// The recording reached its maximum duration.
        MaxRecordDurationReached = "maxRecordDurationReached",
        /// Nobody spoke before the initial silence timeout.
        InitialSilenceTimeout = "initialSilenceTimeout",
        /// The caller was silent longer than the maximum silence timeout.
        MaxSilenceTimeout = "maxSilenceTimeout",
        /// The prompt before the recording could not be played.
        PlayPromptFailed = "playPromptFailed",
        /// The beep before the recording could not be played.
        PlayBeepFailed = "playBeepFailed",
        /// No media arrived in time.
        MediaReceiveTimeout = "mediaReceiveTimeout",
        /// Some other error.
        UnspecifiedError = "unspecifiedError",
    }
}

graph_enum! {
    /// `sendDtmfCompletionReason` of a `sendDtmfTonesOperation` (Graph's `unknown` is `Unspecified`).
    SendDtmfCompletionReason {
        /// Graph's `unknown`: no reason given.
        Unspecified = "unknown",
        /// Every tone was sent.
        CompletedSuccessfully = "completedSuccessfully",
        /// The operation was cancelled before every tone was sent.
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
