//! The emulator's directory: tenants, app registrations, users, phones, application
//! instances and meetings, with the scripts their simulated parties follow.
//!
//! Read from a TOML file ([`Directory::from_toml_file`]); [`Directory::seed`] is the
//! built-in one (`directory.default.toml`), matching the Graph create-call examples.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use appmedia_signalling::permissions::Permission;
use serde::Deserialize;

/// Why a calling webhook is refused: not an absolute `http`/`https` URL with a host.
pub fn check_webhook(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("{url:?} is not an http(s) URL with a host"));
    }
    Ok(())
}

/// The built-in directory's text.
pub const SEED_DIRECTORY_TOML: &str = include_str!("../directory.default.toml");

/// Why a directory file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The file could not be read.
    #[error("directory file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not TOML of the directory's shape.
    #[error("directory: not a valid directory document: {0}")]
    Parse(#[from] toml::de::Error),
    /// The document is TOML of the right shape but inconsistent.
    #[error("directory: {0}")]
    Inconsistent(String),
}

/// A tenant.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// The tenant id.
    pub id: String,
    /// A name for people.
    #[serde(default)]
    pub display_name: String,
}

/// An app registration: the bot.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// Application (client) id.
    pub id: String,
    /// Display name (the call's `source` when the bot sends none).
    pub display_name: String,
    /// Home tenant.
    pub tenant: String,
    /// Client secret for the client-credentials grant; empty: the application has none and
    /// authenticates with a certificate only.
    #[serde(default)]
    pub client_secret: String,
    /// Certificates (PEM text of each, the public half only) the application may sign client
    /// assertions with — the app registration's "Certificates & secrets" uploads.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// Application permissions granted (the token's `roles`).
    #[serde(default)]
    pub roles: Vec<String>,
    /// The bot registration's calling webhook: where the service posts the `incoming`
    /// notification of a call to the bot (an `http(s)` URL). None: the bot cannot be called
    /// until one is set (`PUT /control/applications/{id}/calling-webhook`).
    #[serde(default)]
    pub calling_webhook: Option<String>,
    /// Whose online meetings the application may read with Graph's Get onlineMeeting (besides
    /// `OnlineMeetings.Read.All`): Graph's application access policy, as user ids, or `"*"`
    /// for a tenant-wide policy. Empty: none ("No application access policy found").
    #[serde(default)]
    pub online_meetings_policy: Vec<String>,
    /// Other tenants whose administrator consented to this multi-tenant application
    /// (`/adminconsent`): it may get tokens for them and create calls there, e.g. join a
    /// meeting organised in another tenant. Any other tenant refuses it a token (AADSTS700016).
    #[serde(default)]
    pub consented_tenants: Vec<String>,
    /// The registration's "Allow public client flows": the resource-owner password grant
    /// without client authentication. Off (the default), that grant authenticates the
    /// application as the client-credentials grant does.
    #[serde(default)]
    pub public_client: bool,
}

impl Application {
    /// Whether the application exists in tenant `id`: its home, or a tenant that consented.
    pub fn is_in_tenant(&self, id: &str) -> bool {
        std::iter::once(&self.tenant)
            .chain(&self.consented_tenants)
            .any(|t| t.eq_ignore_ascii_case(id))
    }
}

impl std::fmt::Debug for Application {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("id", &self.id)
            .field("display_name", &self.display_name)
            .field("tenant", &self.tenant)
            .field("client_secret", &redacted(&self.client_secret))
            .field("certificates", &self.certificates.len())
            .field("roles", &self.roles)
            .field("calling_webhook", &self.calling_webhook)
            .field("consented_tenants", &self.consented_tenants)
            .field("public_client", &self.public_client)
            .finish()
    }
}

/// `"<redacted>"` for a secret that is set, `""` for none.
fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() { "" } else { "<redacted>" }
}

/// Compares a presented secret with the expected one in time that does not depend on where
/// they differ (only on the presented length), so a guesser learns nothing from timing.
pub fn secret_matches(presented: &str, expected: &str) -> bool {
    let (presented, expected) = (presented.as_bytes(), expected.as_bytes());
    let mut difference = presented.len() ^ expected.len();
    for (i, byte) in presented.iter().enumerate() {
        difference |= usize::from(byte ^ expected.get(i).copied().unwrap_or(0));
    }
    difference == 0 && !expected.is_empty()
}

/// An application instance (resource account) with a phone number, for PSTN calls.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApplicationInstance {
    /// Instance id.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// The application it belongs to; only that application may call from it.
    pub application: String,
    /// Its phone number (E.164).
    pub phone: String,
}

/// Whether a called party picks up.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    /// Answers after the ring delay.
    #[default]
    Answer,
    /// Declines after the ring delay.
    Decline,
    /// Lets it ring until the call's ringing timeout.
    NoAnswer,
}

/// What a called party sends once it answered (with app-hosted media).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Sound {
    /// Nothing.
    #[default]
    Silent,
    /// Repeats what the bot says one frame (20 ms) later.
    Echo,
    /// Repeats what the bot says this many milliseconds later (at most 2000): a far-end
    /// echo that a bot can tell apart from its own audio.
    EchoAfterMs(u64),
    /// Speaks this file (relative to the media-samples directory) once.
    Speak(String),
}

/// The longest `echo-after-ms` (the media processor's echo line limit).
pub const MAX_ECHO_AFTER_MS: u64 = 2000;

/// How a called user or phone behaves.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    /// Answer, decline or let it ring.
    #[serde(default)]
    pub answer: Answer,
    /// How long it rings before the party answers or declines.
    #[serde(default = "default_ring_delay_ms")]
    pub ring_delay_ms: u64,
    /// When set, the party hangs up this long after answering.
    #[serde(default)]
    pub hang_up_after_ms: Option<u64>,
    /// What the party sends once it answered.
    #[serde(default)]
    pub media: Sound,
    /// Keys the party presses on its keypad (RFC 4733 DTMF to the bot) after answering.
    #[serde(default)]
    pub press: Option<KeyPresses>,
    /// Content the party shares after answering (a user in a peer-to-peer call): the bot
    /// gets `contentSharingSessions` notifications when it asked for them.
    #[serde(default)]
    pub share: Option<Sharing>,
}

/// Content a party shares: `share = { after-ms = 800, update-after-ms = 1000,
/// stop-after-ms = 1200 }` (each after answering).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Sharing {
    /// When sharing starts.
    pub after_ms: u64,
    /// When the shared content changes (once), if it does.
    #[serde(default)]
    pub update_after_ms: Option<u64>,
    /// When sharing stops, if it does before the call ends.
    #[serde(default)]
    pub stop_after_ms: Option<u64>,
}

impl Sharing {
    /// The sharing session's changes, in order, each with its time after answering.
    pub fn changes(&self) -> Vec<(Duration, appmedia_model::ChangeType)> {
        use appmedia_model::ChangeType;
        let at = |ms: u64| Duration::from_millis(ms);
        let mut changes = vec![(at(self.after_ms), ChangeType::Created)];
        changes.extend(self.update_after_ms.map(|ms| (at(ms), ChangeType::Updated)));
        changes.extend(self.stop_after_ms.map(|ms| (at(ms), ChangeType::Deleted)));
        changes
    }

    fn check(&self) -> Result<(), String> {
        let start = self.after_ms;
        if self.update_after_ms.is_some_and(|ms| ms <= start) {
            return Err("share: update-after-ms must come after after-ms".into());
        }
        let last = self.update_after_ms.unwrap_or(start);
        if self.stop_after_ms.is_some_and(|ms| ms <= last) {
            return Err("share: stop-after-ms must come after the start and the update".into());
        }
        Ok(())
    }
}

/// Keys a party presses: `press = { after-ms = 2000, keys = "123#" }`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KeyPresses {
    /// Milliseconds after answering.
    pub after_ms: u64,
    /// The keys, in order: `0`-`9`, `*`, `#`, `A`-`D`.
    pub keys: String,
}

impl KeyPresses {
    /// The keys as tones; `None` when one is not a keypad key.
    pub fn tones(&self) -> Option<Vec<appmedia_media::dtmf::Tone>> {
        self.keys
            .chars()
            .map(appmedia_media::dtmf::Tone::from_char)
            .collect()
    }
}

fn default_ring_delay_ms() -> u64 {
    1000
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            answer: Answer::Answer,
            ring_delay_ms: default_ring_delay_ms(),
            hang_up_after_ms: None,
            media: Sound::Silent,
            press: None,
            share: None,
        }
    }
}

impl Behaviour {
    /// The ring delay.
    pub fn ring_delay(&self) -> Duration {
        Duration::from_millis(self.ring_delay_ms)
    }
}

/// A user.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Object id.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Tenant.
    pub tenant: String,
    /// Password for the resource-owner password grant (delegated tokens); none: the grant is refused.
    #[serde(default)]
    pub password: Option<String>,
    /// What the user does when called.
    #[serde(default)]
    pub behaviour: Behaviour,
    /// The user's video stream in the roster (`"receive-only"`, `"send-receive"`, …): a
    /// camera that is on sends. None: audio only. The emulator carries no video; the roster
    /// says what Teams would.
    #[serde(default)]
    pub video: Option<StreamDirection>,
    /// The user's video-based screen-sharing stream in the roster.
    #[serde(default)]
    pub screen_sharing: Option<StreamDirection>,
}

/// A roster media stream's direction, as a directory file writes it.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StreamDirection {
    /// Neither way.
    Inactive,
    /// The user sends.
    SendOnly,
    /// The user receives.
    ReceiveOnly,
    /// Both ways.
    SendReceive,
}

impl From<StreamDirection> for appmedia_model::MediaDirection {
    fn from(direction: StreamDirection) -> Self {
        match direction {
            StreamDirection::Inactive => Self::Inactive,
            StreamDirection::SendOnly => Self::SendOnly,
            StreamDirection::ReceiveOnly => Self::ReceiveOnly,
            StreamDirection::SendReceive => Self::SendReceive,
        }
    }
}

impl User {
    /// The user's streams besides audio (video, screen sharing), as the roster lists them.
    pub fn other_streams(&self) -> Vec<(appmedia_model::Modality, appmedia_model::MediaDirection)> {
        use appmedia_model::Modality;
        [
            (Modality::Video, self.video),
            (Modality::VideoBasedScreenSharing, self.screen_sharing),
        ]
        .into_iter()
        .filter_map(|(kind, direction)| Some((kind, direction?.into())))
        .collect()
    }
}

impl std::fmt::Debug for User {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("display_name", &self.display_name)
            .field("tenant", &self.tenant)
            .field("password", &self.password.as_deref().map(redacted))
            .field("behaviour", &self.behaviour)
            .field("video", &self.video)
            .field("screen_sharing", &self.screen_sharing)
            .finish()
    }
}

/// A phone number reachable over the emulated PSTN.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Phone {
    /// E.164 number.
    pub number: String,
    /// What the phone's owner does when called.
    #[serde(default)]
    pub behaviour: Behaviour,
}

/// Someone in a meeting when the bot joins.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Presence {
    /// User id.
    pub user: String,
    /// Muted at the start.
    #[serde(default)]
    pub muted: bool,
}

/// What happens in a meeting.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MeetingAction {
    /// The user joins (unmuted).
    Join,
    /// The user leaves.
    Leave,
    /// The user mutes.
    Mute,
    /// The user unmutes.
    Unmute,
    /// The user starts sharing content.
    StartSharing,
    /// The shared content changes.
    UpdateSharing,
    /// The user stops sharing.
    StopSharing,
}

/// One scripted meeting event, at a time after the bot joined.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MeetingEvent {
    /// Milliseconds after the bot's join request.
    pub at_ms: u64,
    /// Who.
    pub user: String,
    /// What.
    pub action: MeetingAction,
}

/// A scheduled meeting.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Meeting {
    /// The numeric join id.
    pub join_meeting_id: String,
    /// The passcode.
    #[serde(default)]
    pub passcode: Option<String>,
    /// Whether a join without passcode is refused (a wrong passcode always is).
    #[serde(default)]
    pub passcode_required: bool,
    /// The organizer's user id.
    pub organizer: String,
    /// The chat thread id.
    pub thread_id: String,
    /// The meeting's tenant.
    pub tenant: String,
    /// How long the join takes (establishing → established).
    #[serde(default = "default_join_delay_ms")]
    pub join_delay_ms: u64,
    /// Who is there when the bot joins.
    #[serde(default)]
    pub present: Vec<Presence>,
    /// What happens afterwards.
    #[serde(default)]
    pub events: Vec<MeetingEvent>,
}

impl Meeting {
    /// The meeting's Teams join link: what a person clicks, and what a bot may join by
    /// (`TeamsJoinLink`); its message id is `0`, a meeting outside a channel.
    pub fn join_url(&self) -> String {
        appmedia_signalling::join_url::TeamsJoinLink {
            thread_id: self.thread_id.clone(),
            message_id: "0".into(),
            reply_chain_message_id: None,
            tenant_id: self.tenant.clone(),
            organizer_id: self.organizer.clone(),
        }
        .to_url()
    }
}

fn default_join_delay_ms() -> u64 {
    500
}

/// A scripted call to a bot: `[[incoming_calls]] from = "…", to = "…", at_ms = 2000`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScriptedIncomingCall {
    /// Who calls: a user id, or a phone number (`+` and digits) listed in `[[phones]]`.
    pub from: String,
    /// Whom: an application id, an application-instance id or an instance's phone number.
    pub to: String,
    /// A meeting (joinMeetingId or chat thread id) calling the bot's application instance.
    #[serde(default)]
    pub meeting: Option<String>,
    /// Milliseconds after the emulator started.
    pub at_ms: u64,
}

/// The whole directory.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    /// Tenants.
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    /// App registrations.
    #[serde(default)]
    pub applications: Vec<Application>,
    /// Application instances.
    #[serde(default)]
    pub application_instances: Vec<ApplicationInstance>,
    /// Users.
    #[serde(default)]
    pub users: Vec<User>,
    /// PSTN numbers.
    #[serde(default)]
    pub phones: Vec<Phone>,
    /// Meetings.
    #[serde(default)]
    pub meetings: Vec<Meeting>,
    /// Service-hosted media: prompt URI (`mediaInfo.uri` of `preFetchMedia` and `playPrompt`)
    /// → file relative to the media-samples directory. The seed's URIs need no entry
    /// ([`SEED_MEDIA`]); an entry here overrides them.
    #[serde(default)]
    pub media: BTreeMap<String, String>,
    /// Calls to the bots, made by the emulator at set times after it started.
    #[serde(default)]
    pub incoming_calls: Vec<ScriptedIncomingCall>,
    /// Resource-specific consent: the chats whose owners granted an application a
    /// permission such as `Calls.JoinGroupCalls.Chat`.
    #[serde(default)]
    pub rsc_grants: Vec<RscGrant>,
}

/// A resource-specific consent: `[[rsc_grants]] application = "…", chat = "19:…@thread.v2",
/// permissions = ["Calls.JoinGroupCalls.Chat"]`. Graph checks it per chat; it is never one of
/// the token's `roles`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RscGrant {
    /// The application.
    pub application: String,
    /// The chat's thread id (a meeting's `chatInfo.threadId`).
    pub chat: String,
    /// The resource-specific permissions granted there.
    pub permissions: Vec<String>,
}

/// Where the seed's prompt URIs are found when the directory does not say: a beep (a 1 kHz
/// tone) and a spoken IVR prompt from `media-samples/`.
pub const SEED_MEDIA: &[(&str, &str)] = &[
    ("https://cdn.contoso.com/beep.wav", "tone-1khz-16k.wav"),
    ("https://cdn.contoso.com/cool.wav", "prompt.wav"),
];

impl Directory {
    /// The built-in directory matching the seed examples.
    pub fn seed() -> Self {
        // The file is part of the crate and checked by a unit test; a failure here is a
        // build defect, not outside input.
        Self::from_toml_str(SEED_DIRECTORY_TOML).expect("directory.default.toml is valid")
    }

    /// From TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, DirectoryError> {
        let directory: Directory = toml::from_str(text)?;
        directory.check()?;
        Ok(directory)
    }

    /// From a TOML file.
    pub fn from_toml_file(path: &Path) -> Result<Self, DirectoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| DirectoryError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    fn check(&self) -> Result<(), DirectoryError> {
        let bad = |m: String| Err(DirectoryError::Inconsistent(m));
        let tenants: HashSet<&str> = self.tenants.iter().map(|t| t.id.as_str()).collect();
        for app in &self.applications {
            if let Some(unknown) = std::iter::once(&app.tenant)
                .chain(&app.consented_tenants)
                .find(|t| !tenants.contains(t.as_str()))
            {
                return bad(format!(
                    "application {} names unknown tenant {unknown}",
                    app.id
                ));
            }
        }
        for user in &self.users {
            if !tenants.contains(user.tenant.as_str()) {
                return bad(format!(
                    "user {} names unknown tenant {}",
                    user.id, user.tenant
                ));
            }
        }
        let behaviours = (self.users.iter().map(|u| (u.id.as_str(), &u.behaviour))).chain(
            self.phones
                .iter()
                .map(|p| (p.number.as_str(), &p.behaviour)),
        );
        for (who, behaviour) in behaviours {
            if let Some(press) = &behaviour.press
                && (press.keys.is_empty() || press.tones().is_none())
            {
                return bad(format!(
                    "{who}: press keys = {:?} are not keypad keys (0-9, *, #, A-D)",
                    press.keys
                ));
            }
            if let Some(Err(e)) = behaviour.share.as_ref().map(Sharing::check) {
                return bad(format!("{who}: {e}"));
            }
            if let Sound::EchoAfterMs(ms) = behaviour.media
                && ms > MAX_ECHO_AFTER_MS
            {
                return bad(format!(
                    "{who}: echo-after-ms = {ms} is longer than {MAX_ECHO_AFTER_MS}"
                ));
            }
        }
        for app in &self.applications {
            if app.client_secret.is_empty() && app.certificates.is_empty() {
                return bad(format!(
                    "application {}: needs a client_secret or a certificate",
                    app.id
                ));
            }
            for (i, pem) in app.certificates.iter().enumerate() {
                if let Err(e) = appmedia_signalling::auth::Certificate::from_pem(pem.as_bytes()) {
                    return bad(format!("application {}: certificates[{i}]: {e}", app.id));
                }
            }
            if let Some(webhook) = &app.calling_webhook
                && let Err(e) = check_webhook(webhook)
            {
                return bad(format!("application {}: calling_webhook: {e}", app.id));
            }
        }
        for app in &self.applications {
            if let Some(rsc) = (app.roles.iter()).find(|r| {
                r.parse::<Permission>()
                    .is_ok_and(Permission::is_resource_specific)
            }) {
                return bad(format!(
                    "application {}: {rsc} is resource-specific consent, granted per chat in \
                     [[rsc_grants]], not a tenant-wide role",
                    app.id
                ));
            }
        }
        for grant in &self.rsc_grants {
            if self.application(&grant.application).is_none() {
                return bad(format!(
                    "rsc_grants: unknown application {}",
                    grant.application
                ));
            }
            if let Some(other) = (grant.permissions.iter()).find(|p| {
                !p.parse::<Permission>()
                    .is_ok_and(Permission::is_resource_specific)
            }) {
                return bad(format!(
                    "rsc_grants for {} in {}: {other} is not a resource-specific permission",
                    grant.application, grant.chat
                ));
            }
        }
        for instance in &self.application_instances {
            if self.application(&instance.application).is_none() {
                return bad(format!(
                    "application instance {} names unknown application {}",
                    instance.id, instance.application
                ));
            }
        }
        for meeting in &self.meetings {
            if self.user(&meeting.organizer).is_none() {
                return bad(format!(
                    "meeting {} names unknown organizer {}",
                    meeting.join_meeting_id, meeting.organizer
                ));
            }
            let mentioned = meeting
                .present
                .iter()
                .map(|p| &p.user)
                .chain(meeting.events.iter().map(|e| &e.user));
            for user in mentioned {
                if self.user(user).is_none() {
                    return bad(format!(
                        "meeting {} names unknown user {user}",
                        meeting.join_meeting_id
                    ));
                }
            }
        }
        for (i, call) in self.incoming_calls.iter().enumerate() {
            if let Err(e) = self.incoming_route(&call.from, &call.to, call.meeting.as_deref()) {
                return bad(format!("incoming_calls[{i}]: {e}"));
            }
        }
        Ok(())
    }

    /// The resource-specific permissions application `app` was granted in chat `chat`.
    pub fn rsc_permissions<'a>(
        &'a self,
        app: &'a str,
        chat: &'a str,
    ) -> impl Iterator<Item = &'a str> {
        (self.rsc_grants.iter())
            .filter(move |g| g.application.eq_ignore_ascii_case(app) && g.chat == chat)
            .flat_map(|g| g.permissions.iter().map(String::as_str))
    }

    /// The tenant `id`.
    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.id.eq_ignore_ascii_case(id))
    }

    /// The app registration `id`.
    pub fn application(&self, id: &str) -> Option<&Application> {
        self.applications
            .iter()
            .find(|a| a.id.eq_ignore_ascii_case(id))
    }

    /// The application instance `id`.
    pub fn application_instance(&self, id: &str) -> Option<&ApplicationInstance> {
        self.application_instances
            .iter()
            .find(|a| a.id.eq_ignore_ascii_case(id))
    }

    /// The application instance whose phone number is `number`.
    pub fn application_instance_by_phone(&self, number: &str) -> Option<&ApplicationInstance> {
        self.application_instances
            .iter()
            .find(|a| a.phone == number)
    }

    /// The user `id`.
    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id.eq_ignore_ascii_case(id))
    }

    /// The phone `number`.
    pub fn phone(&self, number: &str) -> Option<&Phone> {
        self.phones.iter().find(|p| p.number == number)
    }

    /// The meeting with join id `id`.
    pub fn meeting_by_join_id(&self, id: &str) -> Option<&Meeting> {
        self.meetings.iter().find(|m| m.join_meeting_id == id)
    }

    /// The file (relative to the media-samples directory) a prompt URI stands for: the
    /// directory's `[media]` table, else [`SEED_MEDIA`]. A file must stay inside that
    /// directory: absolute paths and `..` are refused (`None`).
    pub fn media_file(&self, uri: &str) -> Option<&str> {
        let file = self.media.get(uri).map(String::as_str).or_else(|| {
            SEED_MEDIA
                .iter()
                .find(|(u, _)| *u == uri)
                .map(|(_, file)| *file)
        })?;
        let inside = Path::new(file)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        inside.then_some(file)
    }

    /// Every file a party speaks.
    pub fn spoken_files(&self) -> Vec<&str> {
        let behaviours = self
            .users
            .iter()
            .map(|u| &u.behaviour)
            .chain(self.phones.iter().map(|p| &p.behaviour));
        let mut files: Vec<&str> = behaviours
            .filter_map(|b| match &b.media {
                Sound::Speak(file) => Some(file.as_str()),
                _ => None,
            })
            .collect();
        files.sort_unstable();
        files.dedup();
        files
    }

    /// The meeting with chat thread `thread_id`.
    pub fn meeting_by_thread(&self, thread_id: &str) -> Option<&Meeting> {
        self.meetings.iter().find(|m| m.thread_id == thread_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_directory_has_the_seed_parties() {
        let d = Directory::seed();
        assert_eq!(
            d.user("112f7296-5fa4-42ca-bae8-6a692b15d4b8")
                .map(|u| u.display_name.as_str()),
            Some("John")
        );
        assert_eq!(
            d.user("5810cede-f3cc-42eb-b2c1-e9bd5d53ec96")
                .map(|u| u.display_name.as_str()),
            Some("Bob")
        );
        assert!(d.phone("+12345678901").is_some());
        // Transfer and invitation targets: one answers, one declines.
        assert_eq!(
            d.phone("+12345678902").map(|p| p.behaviour.answer),
            Some(Answer::Answer)
        );
        assert_eq!(
            d.phone("+12345678903").map(|p| p.behaviour.answer),
            Some(Answer::Decline)
        );
        assert!(
            d.application_instance("3d913abb-aec0-4964-8fa6-3c6850c4f278")
                .is_some()
        );
        let meeting = d.meeting_by_join_id("1234567").unwrap();
        assert_eq!(meeting.passcode.as_deref(), Some("psw123"));
        assert_eq!(meeting.organizer, "5810cede-f3cc-42eb-b2c1-e9bd5d53ec96");
        assert!(d.meeting_by_thread(&meeting.thread_id).is_some());
        assert!(d.tenant("aa67bd4c-8475-432d-bd41-39f255720e0a").is_some());
    }

    #[test]
    fn inconsistent_directories_are_refused_with_the_value() {
        let text = r#"
            [[tenants]]
            id = "t"
            [[users]]
            id = "u"
            display_name = "U"
            tenant = "nope"
        "#;
        let err = Directory::from_toml_str(text).unwrap_err().to_string();
        assert!(err.contains("unknown tenant nope"), "{err}");
    }

    #[test]
    fn prompt_uris_map_to_files_inside_the_samples_directory() {
        let mut d = Directory::seed();
        assert_eq!(
            d.media_file("https://cdn.contoso.com/beep.wav"),
            Some("tone-1khz-16k.wav")
        );
        assert_eq!(d.media_file("https://cdn.contoso.com/nope.wav"), None);
        let text = r#"
            [media]
            "https://cdn.contoso.com/beep.wav" = "dtmf.wav"
            "https://x/escape.wav" = "../secret.wav"
            "https://x/abs.wav" = "/etc/passwd"
        "#;
        d.media = Directory::from_toml_str(text).unwrap().media;
        assert_eq!(
            d.media_file("https://cdn.contoso.com/beep.wav"),
            Some("dtmf.wav")
        );
        assert_eq!(
            d.media_file("https://cdn.contoso.com/cool.wav"),
            Some("prompt.wav")
        );
        assert_eq!(d.media_file("https://x/escape.wav"), None);
        assert_eq!(d.media_file("https://x/abs.wav"), None);
    }

    #[test]
    fn keys_a_party_presses_must_be_keypad_keys() {
        let directory = |keys: &str| {
            format!(
                "[[phones]]\nnumber = \"+15550100\"\nbehaviour = {{ press = {{ after-ms = 10, keys = \"{keys}\" }} }}\n"
            )
        };
        let ok = Directory::from_toml_str(&directory("42#*")).unwrap();
        let press = ok.phones[0].behaviour.press.as_ref().unwrap();
        assert_eq!(press.tones().map(|t| t.len()), Some(4));
        for bad in ["", "4x"] {
            let err = Directory::from_toml_str(&directory(bad)).unwrap_err();
            assert!(err.to_string().contains("not keypad keys"), "{err}");
        }
    }

    #[test]
    fn a_partys_sharing_script_runs_forward() {
        let directory = |share: &str| {
            format!("[[phones]]\nnumber = \"+15550100\"\nbehaviour = {{ share = {share} }}\n")
        };
        let ok = Directory::from_toml_str(&directory(
            "{ after-ms = 10, update-after-ms = 20, stop-after-ms = 30 }",
        ))
        .unwrap();
        let changes = ok.phones[0].behaviour.share.as_ref().unwrap().changes();
        use appmedia_model::ChangeType::{Created, Deleted, Updated};
        let at = Duration::from_millis;
        assert_eq!(
            changes,
            [(at(10), Created), (at(20), Updated), (at(30), Deleted)]
        );
        let only_start = Directory::from_toml_str(&directory("{ after-ms = 10 }")).unwrap();
        let share = only_start.phones[0].behaviour.share.as_ref().unwrap();
        assert_eq!(share.changes(), [(at(10), Created)]);
        for bad in [
            "{ after-ms = 10, update-after-ms = 10 }",
            "{ after-ms = 10, update-after-ms = 20, stop-after-ms = 15 }",
            "{ after-ms = 10, stop-after-ms = 5 }",
        ] {
            let err = Directory::from_toml_str(&directory(bad)).unwrap_err();
            assert!(err.to_string().contains("share:"), "{bad}: {err}");
        }
    }

    #[test]
    fn resource_specific_consent_is_granted_per_chat_never_as_a_role() {
        let app = |roles: &str| {
            format!(
                "[[tenants]]\nid = \"t\"\n[[applications]]\nid = \"a\"\ndisplay_name = \"A\"\n\
                 tenant = \"t\"\nclient_secret = \"s\"\nroles = [{roles}]\n"
            )
        };
        let err = Directory::from_toml_str(&app("\"Calls.JoinGroupCalls.Chat\"")).unwrap_err();
        assert!(err.to_string().contains("resource-specific"), "{err}");
        let grant = |application: &str, permission: &str| {
            format!(
                "{}[[rsc_grants]]\napplication = \"{application}\"\nchat = \"19:c@thread.v2\"\n\
                 permissions = [\"{permission}\"]\n",
                app("")
            )
        };
        let ok = Directory::from_toml_str(&grant("a", "Calls.JoinGroupCalls.Chat")).unwrap();
        assert_eq!(
            ok.rsc_permissions("A", "19:c@thread.v2")
                .collect::<Vec<_>>(),
            ["Calls.JoinGroupCalls.Chat"]
        );
        assert_eq!(ok.rsc_permissions("a", "19:other@thread.v2").count(), 0);
        let err = Directory::from_toml_str(&grant("b", "Calls.JoinGroupCalls.Chat")).unwrap_err();
        assert!(err.to_string().contains("unknown application b"), "{err}");
        let err = Directory::from_toml_str(&grant("a", "Calls.JoinGroupCall.All")).unwrap_err();
        assert!(err.to_string().contains("not a resource-specific"), "{err}");
    }

    #[test]
    fn calling_webhooks_and_scripted_incoming_calls_are_checked_when_read() {
        let base = r#"
            [[tenants]]
            id = "t"
            [[applications]]
            id = "a"
            display_name = "A"
            tenant = "t"
            client_secret = "s"
            calling_webhook = "WEBHOOK"
            [[users]]
            id = "u"
            display_name = "U"
            tenant = "t"
            [[incoming_calls]]
            from = "FROM"
            to = "a"
            at_ms = 100
        "#;
        let directory = |webhook: &str, from: &str| {
            Directory::from_toml_str(&base.replace("WEBHOOK", webhook).replace("FROM", from))
        };
        let ok = directory("http://127.0.0.1:9/calls", "u").unwrap();
        assert_eq!(
            ok.applications[0].calling_webhook.as_deref(),
            Some("http://127.0.0.1:9/calls")
        );
        assert_eq!(ok.incoming_calls[0].at_ms, 100);
        let err = directory("ftp://x", "u").unwrap_err().to_string();
        assert!(err.contains("application a: calling_webhook"), "{err}");
        let err = directory("http://127.0.0.1:9/calls", "nobody")
            .unwrap_err()
            .to_string();
        assert!(err.contains("incoming_calls[0]: from: \"nobody\""), "{err}");
    }

    #[test]
    fn unknown_keys_and_actions_are_refused() {
        assert!(matches!(
            Directory::from_toml_str("[[tenants]]\nid = \"t\"\ncolour = 1\n"),
            Err(DirectoryError::Parse(_))
        ));
        let text = r#"
            [[tenants]]
            id = "t"
            [[users]]
            id = "u"
            display_name = "U"
            tenant = "t"
            behaviour = { answer = "maybe" }
        "#;
        assert!(matches!(
            Directory::from_toml_str(text),
            Err(DirectoryError::Parse(_))
        ));
    }

    #[test]
    fn an_application_is_in_its_home_tenant_and_those_that_consented() {
        let directory = Directory::seed();
        let bot = directory
            .application("2891555a-92ff-42e6-80fa-6e1300c6b5c6")
            .unwrap();
        assert!(bot.is_in_tenant("AA67BD4C-8475-432D-BD41-39F255720E0A"));
        assert!(bot.is_in_tenant("86dc81db-c112-4228-9222-63f3esaa1edb"));
        assert!(!bot.is_in_tenant("00000000-0000-0000-0000-000000000000"));
        let limited = directory
            .application("6b3f1a52-0d1c-4c8e-9a55-3f2a1c0e7d10")
            .unwrap();
        assert!(!limited.is_in_tenant("86dc81db-c112-4228-9222-63f3esaa1edb"));
        let text = r#"
            [[tenants]]
            id = "t"
            [[applications]]
            id = "a"
            display_name = "A"
            tenant = "t"
            consented_tenants = ["nowhere"]
        "#;
        match Directory::from_toml_str(text) {
            Err(DirectoryError::Inconsistent(m)) => assert!(m.contains("nowhere"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output_and_compare_in_constant_time() {
        let directory = Directory::seed();
        let printed = format!("{directory:?}");
        assert!(!printed.contains("calling-bot-secret"), "{printed}");
        assert!(!printed.contains("john-password"), "{printed}");
        assert!(printed.contains("<redacted>"));
        assert!(secret_matches("calling-bot-secret", "calling-bot-secret"));
        for wrong in [
            "",
            "calling-bot-secre",
            "calling-bot-secretx",
            "Calling-bot-secret",
        ] {
            assert!(!secret_matches(wrong, "calling-bot-secret"), "{wrong}");
        }
        assert!(!secret_matches("", ""), "an empty secret never matches");
    }
}
