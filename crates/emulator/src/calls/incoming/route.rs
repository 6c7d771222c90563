//! Who an incoming call is from and to, resolved against the directory. Pure: the control
//! API (`POST /control/incoming-calls`) and the directory's `[[incoming_calls]]` scripts
//! share it, so a script that cannot ring is refused when the directory is read.

use appmedia_model::{Identity, IdentitySet};

use crate::admission::Party;
use crate::directory::{Application, ApplicationInstance, Behaviour, Directory, Meeting};

/// Why an incoming call cannot be placed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// `from` is neither a directory user nor a directory phone number.
    #[error("from: {0:?} is neither a user id nor a phone number of the directory")]
    UnknownCaller(String),
    /// `to` is no application, application instance or instance phone number.
    #[error(
        "to: {0:?} is neither an application id, an application-instance id nor an instance's phone number"
    )]
    UnknownCallee(String),
    /// `meeting` names no meeting.
    #[error("meeting: {0:?} is neither a joinMeetingId nor a chat thread id of the directory")]
    UnknownMeeting(String),
    /// A meeting calls the bot's application instance, not the application itself.
    #[error(
        "to: a meeting calls the bot's application instance (its id or phone number), not application {0}"
    )]
    MeetingNeedsInstance(String),
    /// A phone dials a phone number.
    #[error(
        "to: the phone {from} can only dial a phone number (an application instance's), not {to:?}"
    )]
    PhoneNeedsNumber {
        /// The calling phone.
        from: String,
        /// What it was asked to call.
        to: String,
    },
}

impl RouteError {
    /// True for names the directory does not have (404), false for impossible calls (400).
    pub fn is_unknown(&self) -> bool {
        matches!(
            self,
            RouteError::UnknownCaller(_)
                | RouteError::UnknownCallee(_)
                | RouteError::UnknownMeeting(_)
        )
    }
}

/// Who the bot was called as.
#[derive(Clone, Debug, PartialEq)]
pub enum Callee {
    /// The application id.
    Application,
    /// The application instance's id.
    Instance(ApplicationInstance),
    /// The application instance's phone number.
    InstancePhone(ApplicationInstance),
}

/// A call to a bot, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct IncomingRoute {
    /// The caller.
    pub caller: Party,
    /// What the caller does once the bot answers (what it speaks, when it hangs up).
    pub caller_behaviour: Behaviour,
    /// The caller's tenant (users only).
    pub caller_tenant: Option<String>,
    /// The bot's app registration.
    pub application: Application,
    /// How the bot was reached.
    pub callee: Callee,
    /// The meeting the call comes from.
    pub meeting: Option<Meeting>,
    /// The softphone page (its connection number) the caller calls from: a person with their
    /// own microphone instead of the directory's script. `None` for the control API and
    /// directory scripts.
    pub from_page: Option<u64>,
}

impl IncomingRoute {
    /// The caller as Graph writes it in `source.identity`.
    pub fn caller_identity(&self) -> IdentitySet {
        match (&self.caller, &self.caller_tenant) {
            (Party::User { id, display_name }, Some(tenant)) => IdentitySet::user(
                Identity::new(id)
                    .with_display_name(display_name)
                    .with_tenant_id(tenant),
            ),
            (party, _) => party.identity(),
        }
    }

    /// The bot as the caller reached it: `targets[0].identity` of the notification and the
    /// bot's roster identity once answered. A call to the instance's phone number names the
    /// instance and the number dialled.
    pub fn bot_identity(&self) -> IdentitySet {
        let instance = |i: &ApplicationInstance| {
            Identity::new(&i.id)
                .with_display_name(&i.display_name)
                .with_tenant_id(&self.application.tenant)
        };
        match &self.callee {
            Callee::Application => IdentitySet::application(
                Identity::new(&self.application.id)
                    .with_display_name(&self.application.display_name),
            ),
            Callee::Instance(i) => IdentitySet::application_instance(instance(i)),
            Callee::InstancePhone(i) => {
                let mut set = IdentitySet::application_instance(instance(i));
                set.phone = Identity::new(&i.phone).into();
                set
            }
        }
    }

    /// The id the control API shows for the bot: the instance's when called through it.
    pub fn bot_id(&self) -> &str {
        match &self.callee {
            Callee::Application => &self.application.id,
            Callee::Instance(i) | Callee::InstancePhone(i) => &i.id,
        }
    }
}

impl Directory {
    /// Resolves `from` (a user id, or a `+…` phone number of `[[phones]]`), `to` (an
    /// application id, an application-instance id, or an instance's phone number) and an
    /// optional `meeting` (joinMeetingId or thread id; the bot's instance is called then).
    pub fn incoming_route(
        &self,
        from: &str,
        to: &str,
        meeting: Option<&str>,
    ) -> Result<IncomingRoute, RouteError> {
        let (caller, caller_behaviour, caller_tenant) = if from.starts_with('+') {
            let phone = self
                .phone(from)
                .ok_or_else(|| RouteError::UnknownCaller(from.to_owned()))?;
            (
                Party::Phone {
                    number: phone.number.clone(),
                },
                phone.behaviour.clone(),
                None,
            )
        } else {
            let user = self
                .user(from)
                .ok_or_else(|| RouteError::UnknownCaller(from.to_owned()))?;
            (
                Party::User {
                    id: user.id.clone(),
                    display_name: user.display_name.clone(),
                },
                user.behaviour.clone(),
                Some(user.tenant.clone()),
            )
        };
        let (application, callee) = if let Some(app) = self.application(to) {
            (app, Callee::Application)
        } else if let Some(instance) = self.application_instance(to) {
            (
                self.instance_application(instance, to)?,
                Callee::Instance(instance.clone()),
            )
        } else if let Some(instance) = self.application_instance_by_phone(to) {
            (
                self.instance_application(instance, to)?,
                Callee::InstancePhone(instance.clone()),
            )
        } else {
            return Err(RouteError::UnknownCallee(to.to_owned()));
        };
        if let Party::Phone { number } = &caller
            && !matches!(callee, Callee::InstancePhone(_))
        {
            return Err(RouteError::PhoneNeedsNumber {
                from: number.clone(),
                to: to.to_owned(),
            });
        }
        let meeting = match meeting {
            None => None,
            Some(id) => {
                let found = self
                    .meeting_by_join_id(id)
                    .or_else(|| self.meeting_by_thread(id))
                    .ok_or_else(|| RouteError::UnknownMeeting(id.to_owned()))?;
                if callee == Callee::Application {
                    return Err(RouteError::MeetingNeedsInstance(application.id.clone()));
                }
                Some(found.clone())
            }
        };
        Ok(IncomingRoute {
            caller,
            caller_behaviour,
            caller_tenant,
            application: application.clone(),
            callee,
            meeting,
            from_page: None,
        })
    }

    fn instance_application(
        &self,
        instance: &ApplicationInstance,
        to: &str,
    ) -> Result<&Application, RouteError> {
        // The directory check guarantees the instance's application exists; a directory
        // built by hand without that check gets a clean refusal.
        self.application(&instance.application)
            .ok_or_else(|| RouteError::UnknownCallee(to.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";
    const INSTANCE: &str = "3d913abb-aec0-4964-8fa6-3c6850c4f278";
    const JOHN: &str = "112f7296-5fa4-42ca-bae8-6a692b15d4b8";

    #[test]
    fn callers_and_callees_resolve_each_way() {
        let d = Directory::seed();
        let to_app = d.incoming_route(JOHN, APP, None).unwrap();
        assert_eq!(to_app.callee, Callee::Application);
        assert_eq!(
            to_app.caller_tenant.as_deref(),
            Some("aa67bd4c-8475-432d-bd41-39f255720e0a")
        );
        let to_instance = d.incoming_route(JOHN, INSTANCE, None).unwrap();
        assert!(matches!(to_instance.callee, Callee::Instance(_)));
        assert_eq!(to_instance.application.id, APP);
        let pstn = d
            .incoming_route("+12345678901", "+14255550100", None)
            .unwrap();
        assert!(matches!(pstn.callee, Callee::InstancePhone(_)));
        let identity = pstn.bot_identity();
        assert!(identity.application_instance.is_value() && identity.phone.is_value());
        let meeting = d.incoming_route(JOHN, INSTANCE, Some("1234567")).unwrap();
        assert!(meeting.meeting.is_some());
    }

    #[test]
    fn impossible_calls_are_named() {
        let d = Directory::seed();
        let cases = [
            (d.incoming_route("nobody", APP, None), "from: \"nobody\""),
            (
                d.incoming_route("+19999999999", "+14255550100", None),
                "from:",
            ),
            (d.incoming_route(JOHN, "nobody", None), "to: \"nobody\""),
            (
                d.incoming_route(JOHN, INSTANCE, Some("0")),
                "meeting: \"0\"",
            ),
            (
                d.incoming_route(JOHN, APP, Some("1234567")),
                "application instance",
            ),
            (
                d.incoming_route("+12345678901", INSTANCE, None),
                "can only dial",
            ),
        ];
        for (result, expected) in cases {
            let e = result.unwrap_err().to_string();
            assert!(e.contains(expected), "{e}");
        }
    }
}
