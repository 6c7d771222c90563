//! Joining a Teams meeting by its link, the way users do.
//!
//! A meeting's join link carries what Graph's "join by organizer" request needs — the chat
//! thread, its message, the organizer and the tenant the meeting is scheduled in:
//!
//! ```text
//! https://teams.microsoft.com/l/meetup-join/19%3ameeting_…%40thread.v2/0?context=%7b%22Tid%22%3a%22<tenant>%22%2c%22Oid%22%3a%22<organizer>%22%7d
//! ```
//!
//! [`TeamsJoinLink::parse`] takes it apart as Microsoft's bot samples do (`chatInfo.threadId`
//! from the path, `messageId` from the next segment, `organizerMeetingInfo.organizer.user.id`
//! from the context's `Oid`, the request's `tenantId` from its `Tid`), and
//! [`TeamsJoinLink::join_builder`] makes the request (seed examples 5 and 6). A link that is not
//! a Teams meeting link is a typed [`JoinUrlError`] naming what is wrong. The seed also
//! allows reading these from Graph's Get onlineMeeting; a link needs no extra permission.

use appmedia_model::{ChatInfo, Identity, Nullable};
use percent_encoding::percent_decode_str;
use thiserror::Error;
use url::Url;

use crate::builders::{Media, OrganizerMeetingJoinBuilder};

/// Hosts that serve Teams meeting links: the commercial cloud, the US government clouds and
/// the one operated by 21Vianet.
const TEAMS_HOSTS: &[&str] = &[
    "teams.microsoft.com",
    "gov.teams.microsoft.us",
    "dod.teams.microsoft.us",
    "teams.microsoftonline.cn",
];

/// What a Teams meeting join link says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TeamsJoinLink {
    /// The meeting's chat thread (`19:meeting_…@thread.v2`).
    pub thread_id: String,
    /// The message in the thread (`0` for a meeting outside a channel).
    pub message_id: String,
    /// The reply chain's root message (a channel meeting's context has it).
    pub reply_chain_message_id: Option<String>,
    /// The tenant the meeting is scheduled in (`Tid`).
    pub tenant_id: String,
    /// The organizer's user id (`Oid`).
    pub organizer_id: String,
}

/// Why a join link was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum JoinUrlError {
    /// Not a URL at all.
    #[error("not a URL: {0}")]
    NotAUrl(String),
    /// A URL, but not of a Teams host over https.
    #[error("not a Teams meeting link: {0} is not a Teams host over https")]
    NotTeams(String),
    /// A Teams URL, but not `/l/meetup-join/{thread}/{message}`.
    #[error("not a Teams meeting link: the path is not /l/meetup-join/{{thread}}/{{message}}")]
    NotAMeetingLink,
    /// Still percent-encoded after decoding (a link encoded twice, e.g. by a mail gateway):
    /// decode it once before passing it.
    #[error("the join link is URL-encoded twice ({0}): decode it once first")]
    EncodedTwice(String),
    /// The thread id is not a Teams chat thread (`19:…@thread…`).
    #[error("the join link's thread id {0:?} is not a Teams chat thread")]
    BadThread(String),
    /// No `context` query parameter.
    #[error("the join link has no context (the tenant and organizer)")]
    NoContext,
    /// The context is not a JSON object.
    #[error("the join link's context is not JSON: {0}")]
    BadContext(String),
    /// The context lacks `Tid` or `Oid`.
    #[error("the join link's context has no {0}")]
    MissingInContext(&'static str),
}

impl TeamsJoinLink {
    /// Takes a join link apart.
    pub fn parse(link: &str) -> Result<TeamsJoinLink, JoinUrlError> {
        let url = Url::parse(link.trim()).map_err(|e| JoinUrlError::NotAUrl(e.to_string()))?;
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if url.scheme() != "https" || !TEAMS_HOSTS.contains(&host.as_str()) {
            return Err(JoinUrlError::NotTeams(format!("{}://{host}", url.scheme())));
        }
        let segments: Vec<&str> = url
            .path_segments()
            .map(|s| s.filter(|p| !p.is_empty()).collect())
            .unwrap_or_default();
        let [l, meetup, thread, message] = segments.as_slice() else {
            return Err(JoinUrlError::NotAMeetingLink);
        };
        if !l.eq_ignore_ascii_case("l") || !meetup.eq_ignore_ascii_case("meetup-join") {
            return Err(JoinUrlError::NotAMeetingLink);
        }
        let thread_id = decode_once(thread)?;
        let message_id = decode_once(message)?;
        if !(thread_id.starts_with("19:") && thread_id.contains("@thread")) {
            return Err(JoinUrlError::BadThread(thread_id));
        }
        if message_id.is_empty() || !message_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(JoinUrlError::NotAMeetingLink);
        }
        let context = url
            .query_pairs()
            .find(|(k, _)| k.eq_ignore_ascii_case("context"))
            .map(|(_, v)| v.into_owned())
            .ok_or(JoinUrlError::NoContext)?;
        if context.contains('%') {
            return Err(JoinUrlError::EncodedTwice(context));
        }
        let context: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&context).map_err(|e| JoinUrlError::BadContext(e.to_string()))?;
        let field = |name: &'static str| {
            context
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        Ok(TeamsJoinLink {
            tenant_id: field("Tid").ok_or(JoinUrlError::MissingInContext("Tid"))?,
            organizer_id: field("Oid").ok_or(JoinUrlError::MissingInContext("Oid"))?,
            reply_chain_message_id: field("MessageId"),
            thread_id,
            message_id,
        })
    }

    /// What a Get onlineMeeting answer says (the seed's other way to the same request):
    /// `None` when it lacks the thread, the organizer or the organizer's tenant.
    pub fn from_online_meeting(meeting: &appmedia_model::OnlineMeeting) -> Option<TeamsJoinLink> {
        let chat = meeting.chat_info.value()?;
        let organizer = meeting.organizer()?;
        Some(TeamsJoinLink {
            thread_id: chat.thread_id.value()?.clone(),
            message_id: chat
                .message_id
                .value()
                .cloned()
                .unwrap_or_else(|| "0".into()),
            reply_chain_message_id: chat.reply_chain_message_id.value().cloned(),
            tenant_id: organizer.tenant_id.value()?.clone(),
            organizer_id: organizer.id.value()?.clone(),
        })
    }

    /// The link in the form Teams writes it.
    pub fn to_url(&self) -> String {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let mut context = serde_json::json!({"Tid": self.tenant_id, "Oid": self.organizer_id});
        if let Some(reply) = &self.reply_chain_message_id {
            context["MessageId"] = reply.clone().into();
        }
        format!(
            "https://teams.microsoft.com/l/meetup-join/{}/{}?context={}",
            enc(&self.thread_id),
            enc(&self.message_id),
            enc(&context.to_string())
        )
    }

    /// The request's `chatInfo`.
    pub fn chat_info(&self) -> ChatInfo {
        ChatInfo {
            thread_id: self.thread_id.clone().into(),
            message_id: self.message_id.clone().into(),
            reply_chain_message_id: self
                .reply_chain_message_id
                .clone()
                .map_or(Nullable::Absent, Nullable::Value),
            ..ChatInfo::default()
        }
    }

    /// A request joining this meeting (seed examples 5 and 6), in the meeting's tenant.
    pub fn join_builder(
        &self,
        callback_uri: impl Into<String>,
        media: Media,
    ) -> OrganizerMeetingJoinBuilder {
        OrganizerMeetingJoinBuilder::new(
            callback_uri,
            self.chat_info(),
            Identity::new(self.organizer_id.clone()),
            self.tenant_id.clone(),
            media,
        )
    }
}

/// Percent-decodes a path segment once; one still encoded after that was encoded twice.
fn decode_once(segment: &str) -> Result<String, JoinUrlError> {
    let decoded = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| JoinUrlError::NotAMeetingLink)?
        .into_owned();
    if decoded.contains('%') {
        return Err(JoinUrlError::EncodedTwice(decoded));
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREAD: &str = "19:meeting_Win6Ydo4wsMijFjZS00ZGVjLTk5MGUtOTRjNWY2NmNkYTFm@thread.v2";
    const TENANT: &str = "aa67bd4c-8475-432d-bd41-39f255720e0a";
    const ORGANIZER: &str = "5810cede-f3cc-42eb-b2c1-e9bd5d53ec96";

    /// A link as Teams writes it (lower-case escapes, as in "Copy join link").
    fn teams_link() -> String {
        format!(
            "https://teams.microsoft.com/l/meetup-join/19%3ameeting_Win6Ydo4wsMijFjZS00ZGVjLTk5MGUtOTRjNWY2NmNkYTFm%40thread.v2/0?context=%7b%22Tid%22%3a%22{TENANT}%22%2c%22Oid%22%3a%22{ORGANIZER}%22%7d"
        )
    }

    #[test]
    fn a_teams_link_gives_the_seed_join_request() {
        let link = TeamsJoinLink::parse(&teams_link()).unwrap();
        assert_eq!(
            link,
            TeamsJoinLink {
                thread_id: THREAD.into(),
                message_id: "0".into(),
                reply_chain_message_id: None,
                tenant_id: TENANT.into(),
                organizer_id: ORGANIZER.into(),
            }
        );
        let call = link
            .join_builder("https://bot.example.com/callback", Media::service_hosted())
            .build()
            .unwrap();
        let json = serde_json::to_value(&call).unwrap();
        assert_eq!(json["chatInfo"]["threadId"], THREAD);
        assert_eq!(json["chatInfo"]["messageId"], "0");
        assert_eq!(json["tenantId"], TENANT);
        assert_eq!(
            json["meetingInfo"]["organizer"]["user"]["id"], ORGANIZER,
            "{json:#}"
        );
        // Written back, it reads the same.
        assert_eq!(TeamsJoinLink::parse(&link.to_url()).unwrap(), link);
    }

    #[test]
    fn a_channel_meeting_keeps_its_reply_chain_and_other_clouds_are_teams_too() {
        let link = teams_link()
            .replace("teams.microsoft.com", "gov.teams.microsoft.us")
            .replace("%22%7d", "%22%2c%22MessageId%22%3a%221603385312134%22%7d");
        let link = TeamsJoinLink::parse(&link).unwrap();
        assert_eq!(
            link.reply_chain_message_id.as_deref(),
            Some("1603385312134")
        );
        assert_eq!(
            link.chat_info()
                .reply_chain_message_id
                .value()
                .map(String::as_str),
            Some("1603385312134")
        );
    }

    #[test]
    fn links_that_are_not_teams_meeting_links_are_named_errors() {
        let good = teams_link();
        let cases: Vec<(String, JoinUrlError)> = vec![
            ("not a url".into(), JoinUrlError::NotAUrl(String::new())),
            (
                good.replace("https://teams.microsoft.com", "https://teams.evil.example"),
                JoinUrlError::NotTeams(String::new()),
            ),
            (
                good.replace("https://", "http://"),
                JoinUrlError::NotTeams(String::new()),
            ),
            (
                good.replace("/l/meetup-join/", "/l/channel/"),
                JoinUrlError::NotAMeetingLink,
            ),
            (good.replace("/0?", "?"), JoinUrlError::NotAMeetingLink),
            (good.replace("/0?", "/abc?"), JoinUrlError::NotAMeetingLink),
            (
                good.replace("19%3ameeting_", "20%3ameeting_"),
                JoinUrlError::BadThread(String::new()),
            ),
            // Encoded twice: every % became %25.
            (
                good.replace('%', "%25"),
                JoinUrlError::EncodedTwice(String::new()),
            ),
            (
                good.split('?').next().unwrap().to_owned(),
                JoinUrlError::NoContext,
            ),
            (
                format!("{}?context=%7bnot-json", good.split('?').next().unwrap()),
                JoinUrlError::BadContext(String::new()),
            ),
            (
                good.replace("%22Tid%22", "%22Xid%22"),
                JoinUrlError::MissingInContext("Tid"),
            ),
            (
                good.replace("%22Oid%22", "%22Xid%22"),
                JoinUrlError::MissingInContext("Oid"),
            ),
        ];
        for (link, expected) in cases {
            let err = TeamsJoinLink::parse(&link).expect_err(&link);
            assert_eq!(
                std::mem::discriminant(&err),
                std::mem::discriminant(&expected),
                "{link}: {err}"
            );
            assert!(!err.to_string().is_empty());
        }
    }
}
