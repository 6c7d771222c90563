//! The bot side of `demo`, `record` and `play`, on the bot SDK (`appmedia-bot`): the command
//! line's service and call flags mapped onto a [`BotConfig`] (the emulator started in-process
//! unless `--graph-url`), and the create-call request built from `--to` / `--phone` /
//! `--join-meeting-id`. Running the call is `call.rs`; the summaries are `summary.rs`.
//!
//! Everything else — tokens, the notification server, the media session and its 20 ms ticks
//! on the SDK's scheduler, recordings, prompts, keepAlive — is the SDK's. A "configured Graph
//! endpoint" for media means a running `appmedia emulator`: the real Microsoft Graph only
//! accepts blobs made by Microsoft's .NET media platform, not this project's blob
//! (docs/local-audio.md).

use std::net::SocketAddr;
use std::path::PathBuf;

use appmedia_bot::{BotConfig, ClientAuth, ClientCertificate, MediaOptions, Service};
use appmedia_emulator::directory::Sound;
use appmedia_emulator::{Directory, Emulator, EmulatorConfig};
use appmedia_model::{Identity, IdentitySet, ParticipantInfo};
use appmedia_signalling::builders::{JoinMeetingIdBuilder, PeerToPeerCallBuilder, PstnCallBuilder};
use appmedia_signalling::join_url::TeamsJoinLink;
use clap::Args;

/// The seed directory's tenant, bot application and its secret: the defaults, so that every
/// command works against the emulator with no flags.
pub const SEED_TENANT: &str = "aa67bd4c-8475-432d-bd41-39f255720e0a";
pub const SEED_BOT_APP: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";
const SEED_BOT_SECRET: &str = "calling-bot-secret";
/// The seed's application instance that owns the bot's phone number (PSTN calls come from it).
const SEED_APP_INSTANCE: &str = "3d913abb-aec0-4964-8fa6-3c6850c4f278";
/// The seed's user John, called when no target is given.
pub const JOHN: &str = "112f7296-5fa4-42ca-bae8-6a692b15d4b8";
/// What John says in the embedded emulator (relative to --media-samples).
pub const JOHN_SPEAKS: &str = "john-speech.wav";
/// What a called phone says in the embedded emulator.
const PHONE_SPEAKS: &str = "jane-speech.wav";

/// How many unmixed per-speaker streams the bot offers to receive (Graph gives four); every
/// one is recorded to its own file.
const UNMIXED_STREAMS: usize = 8;

/// Where the calling service is and who the bot is. Without `--graph-url` the emulator runs
/// in-process with the built-in directory (John speaks `john-speech.wav`).
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// The calling API: `graph` (Microsoft Graph's, or the emulator's), or `acs` (Azure
    /// Communication Services Call Automation with audio streaming: the in-process emulator's
    /// ACS API; a real ACS resource is configured with the SDK's APPMEDIA_ACS_* variables,
    /// see docs/acs.md).
    #[arg(long, value_enum, default_value_t = Backend::Graph)]
    pub backend: Backend,
    /// Graph root of a running calling service, e.g. http://127.0.0.1:8642/v1.0 for `appmedia
    /// emulator` (default: start the emulator in-process).
    #[arg(long, env = "APPMEDIA_GRAPH_URL", value_name = "URL")]
    pub graph_url: Option<String>,
    /// OAuth2 authority: tokens come from {authority}/{tenant}/oauth2/v2.0/token (default: the
    /// origin of --graph-url, which is where the emulator serves them).
    #[arg(long, env = "APPMEDIA_AUTHORITY_URL", value_name = "URL")]
    pub authority_url: Option<String>,
    /// The bot's tenant (the in-process emulator: the application's tenant in its directory).
    #[arg(long, env = "APPMEDIA_TENANT", default_value = SEED_TENANT)]
    pub tenant: String,
    /// The bot's application (client) id.
    #[arg(long, env = "APPMEDIA_CLIENT_ID", default_value = SEED_BOT_APP)]
    pub client_id: String,
    /// The bot's client secret.
    #[arg(
        long,
        env = "APPMEDIA_CLIENT_SECRET",
        default_value = SEED_BOT_SECRET,
        hide_default_value = true,
        hide_env_values = true
    )]
    pub client_secret: String,
    /// Authenticate with this certificate instead of the client secret: a PEM file with the
    /// certificate and, unless --certificate-key is given, its private key.
    #[arg(long, env = "APPMEDIA_CERTIFICATE", value_name = "FILE")]
    pub certificate: Option<PathBuf>,
    /// The certificate's private key (PEM), when it is not in --certificate's file.
    #[arg(
        long,
        env = "APPMEDIA_CERTIFICATE_KEY",
        value_name = "FILE",
        requires = "certificate"
    )]
    pub certificate_key: Option<PathBuf>,
    /// Address the bot's notification (callback) server binds and advertises: HOST or
    /// HOST:PORT (port 0 or none: a free port).
    #[arg(long, env = "APPMEDIA_CALLBACK_HOST", default_value = "127.0.0.1")]
    pub callback_host: String,
    /// Accepted `iss` of notification tokens (default: the Bot Framework and Graph issuers,
    /// which include the emulator's).
    #[arg(long, env = "APPMEDIA_NOTIFICATION_ISSUER", value_name = "ISS")]
    pub notification_issuer: Option<String>,
    /// OpenID configuration document listing the notification signing keys (default: the
    /// calling service's own, {origin of --graph-url}/.well-known/openid-configuration).
    #[arg(long, env = "APPMEDIA_NOTIFICATION_OPENID_URL", value_name = "URL")]
    pub notification_openid_url: Option<String>,
    /// Where the in-process emulator finds what its parties speak (default: ./media-samples
    /// when it has the default files, else the ones built into this binary).
    #[arg(long, value_name = "DIR")]
    pub media_samples: Option<PathBuf>,
    /// In-process emulator only: record each call as the emulator hears it into DIR
    /// ({call id}-speaker-1.wav is the bot, {call id}-mixed.wav everyone).
    #[arg(long, value_name = "DIR")]
    pub emulator_recordings: Option<PathBuf>,
    /// In-process emulator only: its directory (tenants, users, phones, meetings and what
    /// each party speaks) from this TOML file instead of the built-in seed.
    #[arg(long, value_name = "FILE", conflicts_with = "graph_url")]
    pub directory: Option<PathBuf>,
}

/// The calling API a CLI bot uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Microsoft Graph's calling API (app-hosted media over WebRTC).
    Graph,
    /// ACS Call Automation (audio streaming over a WebSocket).
    Acs,
}

/// Whom the call is with. With none of these, the bot calls the seed's user John.
#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    /// Peer-to-peer call to this user id.
    #[arg(long, value_name = "USER_ID", conflicts_with_all = ["phone", "join_meeting_id", "join_url"])]
    pub to: Option<String>,
    /// PSTN call to this E.164 number, from --app-instance.
    #[arg(long, value_name = "+E164", conflicts_with_all = ["join_meeting_id", "join_url"])]
    pub phone: Option<String>,
    /// Join the meeting of this Teams join link (thread, organizer and tenant come from it;
    /// `appmedia emulator --print-directory` lists the emulator's).
    #[arg(long, value_name = "URL", conflicts_with = "join_meeting_id")]
    pub join_url: Option<String>,
    /// The application instance that owns the bot's phone number (PSTN calls).
    #[arg(long, value_name = "ID", default_value = SEED_APP_INSTANCE)]
    pub app_instance: String,
    /// Join the meeting with this joinMeetingId.
    #[arg(long, value_name = "ID")]
    pub join_meeting_id: Option<String>,
    /// The meeting's passcode.
    #[arg(long, requires = "join_meeting_id")]
    pub passcode: Option<String>,
    /// Receive unmixed audio: one stream per speaker (recorded one file each), keyed by the
    /// roster's `mediaStreams[].sourceId`. Always on for meeting joins.
    #[arg(long)]
    pub unmixed: bool,
}

impl CallArgs {
    /// A call to the seed's user John (what `demo` makes).
    pub fn john() -> Self {
        CallArgs {
            to: Some(JOHN.to_owned()),
            phone: None,
            app_instance: SEED_APP_INSTANCE.to_owned(),
            join_meeting_id: None,
            join_url: None,
            passcode: None,
            unmixed: false,
        }
    }

    /// Whether the bot asks for unmixed per-speaker audio: with `--unmixed`, and always in a
    /// meeting, where the mix alone cannot say who spoke.
    pub fn wants_unmixed(&self) -> bool {
        self.unmixed || self.join_meeting_id.is_some() || self.join_url.is_some()
    }

    /// The call's media options: unmixed audio when wanted, every stream handed on (and
    /// recorded), not only the loudest four.
    pub fn media_options(&self) -> MediaOptions {
        MediaOptions {
            unmixed: self.wants_unmixed(),
            unmixed_streams: UNMIXED_STREAMS,
            ..MediaOptions::default()
        }
    }
}

pub(crate) fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl ServiceArgs {
    /// The certificate when one is given, else the client secret.
    pub fn credential(&self) -> Result<ClientAuth, String> {
        match &self.certificate {
            Some(path) => ClientCertificate::from_files(path, self.certificate_key.as_deref())
                .map(ClientAuth::Certificate)
                .map_err(|e| format!("--certificate {}: {e}", path.display())),
            None => Ok(ClientAuth::Secret(self.client_secret.clone())),
        }
    }
}

/// The bot's configuration from the flags: the in-process `emulator`'s service, tenant and
/// issuer, or `--graph-url` with the `--authority-url` / `--notification-*` overrides; the
/// notification server on `listen`. One call at a time: one media worker.
pub fn bot_config(
    service: &ServiceArgs,
    emulator: Option<&Emulator>,
    listen: SocketAddr,
) -> Result<BotConfig, String> {
    if service.backend == Backend::Acs {
        let emulator = emulator.ok_or(
            "--backend acs runs on the in-process emulator (no --graph-url); a real ACS \
             resource is configured with the SDK's APPMEDIA_ACS_* variables (docs/acs.md)",
        )?;
        let mut config = BotConfig::for_emulator_acs(emulator).map_err(err)?;
        config.listen = listen;
        config.media.workers = 1;
        return Ok(config);
    }
    let mut config = match (emulator, &service.graph_url) {
        (Some(emulator), _) => {
            BotConfig::for_emulator(emulator, &service.client_id, service.credential()?)
                .map_err(err)?
        }
        (None, Some(graph)) => {
            let mut custom = Service::at(graph).map_err(|e| format!("--graph-url: {e}"))?;
            if custom.is_microsoft()
                && (service.authority_url.is_some() || service.notification_openid_url.is_some())
            {
                return Err(format!(
                    "--graph-url {graph} is Microsoft Graph: its tokens and notification keys \
                     come from Microsoft's own endpoints; --authority-url and \
                     --notification-openid-url are for another service"
                ));
            }
            if let Service::Custom {
                authority_url,
                notification_openid_url,
                ..
            } = &mut custom
            {
                let url = |flag: &str, value: &str| {
                    url::Url::parse(value).map_err(|e| format!("{flag} {value:?}: {e}"))
                };
                if let Some(value) = &service.authority_url {
                    *authority_url = url("--authority-url", value)?;
                }
                if let Some(value) = &service.notification_openid_url {
                    *notification_openid_url = url("--notification-openid-url", value)?;
                }
            }
            BotConfig::new(&service.client_id, &service.tenant, service.credential()?)
                .with_service(custom)
        }
        (None, None) => return Err("no calling service: give --graph-url".into()),
    };
    if let (
        Some(iss),
        Service::Custom {
            notification_issuers,
            ..
        },
    ) = (&service.notification_issuer, &mut config.service)
    {
        *notification_issuers = vec![iss.clone()];
    }
    config.listen = listen;
    config.media.workers = 1;
    Ok(config)
}

/// `--callback-host` as an address to bind: HOST:PORT as given, a bare host or IP on a free port.
pub(crate) fn callback_bind(host: &str) -> String {
    if host.parse::<SocketAddr>().is_ok() {
        return host.to_owned();
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return SocketAddr::new(ip, 0).to_string();
    }
    match host.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => host.to_owned(),
        _ => format!("{host}:0"),
    }
}

/// The create-call request for `target`: app-hosted media (the SDK puts its blob in), the
/// bot's callback URL, `tenant` for meetings and PSTN.
pub(crate) fn request(
    target: &CallArgs,
    callback_uri: &str,
    tenant: &str,
) -> Result<appmedia_model::Call, String> {
    let media = appmedia_bot::app_hosted();
    let built = if let Some(link) = &target.join_url {
        let link = TeamsJoinLink::parse(link).map_err(|e| format!("--join-url: {e}"))?;
        link.join_builder(callback_uri, media).build()
    } else if let Some(id) = &target.join_meeting_id {
        JoinMeetingIdBuilder::new(callback_uri, id, target.passcode.clone(), tenant, media).build()
    } else if let Some(phone) = &target.phone {
        let source = ParticipantInfo::new(IdentitySet::application_instance(Identity::new(
            &target.app_instance,
        )));
        PstnCallBuilder::new(callback_uri, source, phone, tenant, media).build()
    } else {
        let user = target.to.as_deref().unwrap_or(JOHN);
        let mut identity = Identity::new(user);
        if user == JOHN {
            identity = identity.with_display_name("John");
        }
        PeerToPeerCallBuilder::new(callback_uri, identity, media).build()
    };
    built.map_err(|e| format!("invalid call request: {e}"))
}

impl ServiceArgs {
    /// Where the media samples are (see [`crate::samples`]).
    pub fn media_samples(&self) -> Result<PathBuf, String> {
        crate::samples::dir(self.media_samples.as_deref())
    }
}

pub(crate) async fn start_emulator(service: &ServiceArgs) -> Result<Emulator, String> {
    let directory = match &service.directory {
        Some(file) => Directory::from_toml_file(file)
            .map_err(|e| format!("--directory {}: {e}", file.display()))?,
        None => {
            let mut directory = Directory::seed();
            for user in &mut directory.users {
                if user.id == JOHN {
                    user.behaviour.media = Sound::Speak(JOHN_SPEAKS.into());
                }
            }
            for phone in &mut directory.phones {
                phone.behaviour.media = Sound::Speak(PHONE_SPEAKS.into());
            }
            directory
        }
    };
    if let Some(dir) = &service.emulator_recordings {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    Emulator::start(EmulatorConfig {
        directory,
        media_samples_dir: service.media_samples()?,
        recordings_dir: service.emulator_recordings.clone(),
        ..EmulatorConfig::default()
    })
    .await
    .map_err(err)
}

/// Where the in-process emulator recorded what the bot sent, when it records.
pub fn emulator_recording(service: &ServiceArgs, call_id: &str) -> Option<PathBuf> {
    if service.graph_url.is_some() {
        return None;
    }
    service
        .emulator_recordings
        .as_deref()
        .map(|dir| appmedia_emulator::bot_recording_path(dir, call_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        service: ServiceArgs,
    }

    fn config(args: &[&str]) -> Result<BotConfig, String> {
        let flags = Flags::try_parse_from([&["appmedia"], args].concat()).map_err(err)?;
        bot_config(&flags.service, None, "127.0.0.1:0".parse().unwrap())
    }

    #[test]
    fn a_graph_url_and_its_overrides_make_the_service() {
        let c = config(&[
            "--graph-url",
            "http://127.0.0.1:8642/v1.0",
            "--tenant",
            "t1",
        ])
        .unwrap();
        let Service::Custom {
            graph_url,
            authority_url,
            notification_openid_url,
            notification_issuers,
        } = &c.service
        else {
            panic!("{:?}", c.service)
        };
        assert_eq!(graph_url.as_str(), "http://127.0.0.1:8642/v1.0");
        // Tokens and keys from the service's origin, the default issuers.
        assert_eq!(authority_url.as_str(), "http://127.0.0.1:8642/");
        assert_eq!(
            notification_openid_url.as_str(),
            "http://127.0.0.1:8642/.well-known/openid-configuration"
        );
        assert!(notification_issuers.is_empty());
        assert_eq!((c.tenant.as_str(), c.app_id.as_str()), ("t1", SEED_BOT_APP));
        assert_eq!(c.callback_url, None, "the bound address is advertised");

        let c = config(&[
            "--graph-url",
            "http://127.0.0.1:8642/v1.0",
            "--authority-url",
            "https://login.example/",
            "--notification-openid-url",
            "https://keys.example/openid",
            "--notification-issuer",
            "https://issuer.example",
        ])
        .unwrap();
        let Service::Custom {
            authority_url,
            notification_openid_url,
            notification_issuers,
            ..
        } = &c.service
        else {
            panic!("{:?}", c.service)
        };
        assert_eq!(authority_url.as_str(), "https://login.example/");
        assert_eq!(
            notification_openid_url.as_str(),
            "https://keys.example/openid"
        );
        assert_eq!(notification_issuers, &["https://issuer.example"]);
    }

    #[test]
    fn a_bad_graph_url_or_override_names_its_flag() {
        let e = config(&["--graph-url", "not a url"]).unwrap_err();
        assert!(e.starts_with("--graph-url"), "{e}");
        let e = config(&[
            "--graph-url",
            "http://127.0.0.1:8642/v1.0",
            "--authority-url",
            "::",
        ])
        .unwrap_err();
        assert!(e.starts_with("--authority-url"), "{e}");
        // Microsoft Graph: Microsoft's endpoints, whatever else is said.
        let c = config(&["--graph-url", "https://graph.microsoft.com/v1.0"]).unwrap();
        assert_eq!(
            c.service,
            Service::Graph(appmedia_signalling::client::NationalCloud::Global)
        );
        let e = config(&[
            "--graph-url",
            "https://graph.microsoft.com/v1.0",
            "--authority-url",
            "https://graph.microsoft.com/",
        ])
        .unwrap_err();
        assert!(e.contains("Microsoft Graph"), "{e}");
        // The secret never goes over plain http to another machine.
        let e = config(&["--graph-url", "http://graph.example.com/v1.0"]).unwrap_err();
        assert!(e.contains("loopback"), "{e}");
    }

    #[test]
    fn callback_host_forms() {
        assert_eq!(callback_bind("127.0.0.1"), "127.0.0.1:0");
        assert_eq!(callback_bind("127.0.0.1:9000"), "127.0.0.1:9000");
        assert_eq!(callback_bind("::1"), "[::1]:0");
        assert_eq!(callback_bind("[::1]"), "[::1]:0");
        assert_eq!(callback_bind("[::1]:9000"), "[::1]:9000");
        assert_eq!(callback_bind("localhost"), "localhost:0");
        assert_eq!(callback_bind("localhost:9000"), "localhost:9000");
    }

    #[test]
    fn requests_for_each_kind_of_call() {
        let uri = "http://127.0.0.1:1/callback";
        let john = request(&CallArgs::john(), uri, SEED_TENANT).unwrap();
        let json = serde_json::to_value(&john).unwrap();
        assert_eq!(json["callbackUri"], uri);
        assert_eq!(
            json["targets"][0]["identity"]["user"]["displayName"],
            "John"
        );
        let meeting = CallArgs {
            to: None,
            join_meeting_id: Some("1234567".into()),
            passcode: Some("psw123".into()),
            ..CallArgs::john()
        };
        assert!(meeting.wants_unmixed());
        let json = serde_json::to_value(request(&meeting, uri, SEED_TENANT).unwrap()).unwrap();
        assert_eq!(json["meetingInfo"]["joinMeetingId"], "1234567");
        assert_eq!(json["tenantId"], SEED_TENANT);

        // By the directory meeting's join link: the organizer join, in the link's tenant.
        let seed = Directory::seed();
        let by_link = CallArgs {
            to: None,
            join_url: Some(seed.meetings[0].join_url()),
            ..CallArgs::john()
        };
        assert!(by_link.wants_unmixed());
        let json = serde_json::to_value(request(&by_link, uri, "ignored").unwrap()).unwrap();
        assert_eq!(
            json["chatInfo"]["threadId"],
            seed.meetings[0].thread_id.as_str()
        );
        assert_eq!(json["tenantId"], seed.meetings[0].tenant.as_str());
        let bad = CallArgs {
            join_url: Some("https://example.com/l/meetup-join/x/0".into()),
            ..by_link
        };
        let err = request(&bad, uri, SEED_TENANT).unwrap_err();
        assert!(
            err.starts_with("--join-url: not a Teams meeting link"),
            "{err}"
        );
    }
}
