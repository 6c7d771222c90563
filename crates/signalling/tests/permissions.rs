//! Which permissions a request needs, and the check of a token's claims.

use appmedia_model::{Identity, IdentitySet, ParticipantInfo};
use appmedia_signalling::builders::{
    GroupCallBuilder, JoinMeetingIdBuilder, Media, PeerToPeerCallBuilder,
};
use appmedia_signalling::permissions::{
    AnyOf, Permission, PermissionError, check_token_claims, required_permissions,
};
use serde_json::json;

const CALLBACK: &str = "https://bot.contoso.com/callback";

fn meeting_app_hosted() -> appmedia_model::Call {
    JoinMeetingIdBuilder::new(CALLBACK, "1234567", None, "t", Media::app_hosted("{}"))
        .build()
        .unwrap()
}

#[test]
fn names_round_trip_and_unknown_names_are_refused() {
    for p in Permission::ALL {
        assert_eq!(p.as_str().parse::<Permission>().unwrap(), p);
    }
    assert_eq!(
        "Calls.InitiateGroupCalls.All"
            .parse::<Permission>()
            .unwrap_err()
            .0,
        "Calls.InitiateGroupCalls.All"
    );
    assert!(Permission::CallsJoinGroupCallsChat.is_resource_specific());
}

#[test]
fn meeting_join_is_satisfied_by_any_join_permission_plus_media() {
    let required = required_permissions(&meeting_app_hosted());
    assert_eq!(
        required.to_string(),
        "one of Calls.JoinGroupCall.All, Calls.JoinGroupCallAsGuest.All, Calls.JoinGroupCalls.Chat and Calls.AccessMedia.All"
    );
    for join in [
        "Calls.JoinGroupCall.All",
        "Calls.JoinGroupCallAsGuest.All",
        "Calls.JoinGroupCalls.Chat",
    ] {
        assert!(
            required.is_satisfied_by(&[join, "Calls.AccessMedia.All"]),
            "{join}"
        );
        assert_eq!(
            required.missing(&[join]),
            vec![AnyOf(vec![Permission::CallsAccessMediaAll])],
            "{join} alone lacks media access"
        );
    }
    // A permission for another kind of call does not stand in.
    assert_eq!(
        required
            .missing(&["Calls.Initiate.All", "Calls.AccessMedia.All"])
            .len(),
        1
    );
}

#[test]
fn group_call_needs_the_group_permission() {
    let bot = ParticipantInfo::new(IdentitySet::application(Identity::new("b")));
    let call = GroupCallBuilder::new(
        CALLBACK,
        bot,
        [Identity::new("u1"), Identity::new("u2")],
        Media::service_hosted(),
    )
    .build()
    .unwrap();
    let required = required_permissions(&call);
    assert_eq!(required.to_string(), "Calls.InitiateGroupCall.All");
    assert!(!required.is_satisfied_by(&["Calls.Initiate.All"]));
    assert!(required.is_satisfied_by(&["Calls.InitiateGroupCall.All"]));
}

#[test]
fn claims_with_the_roles_pass() {
    let call = PeerToPeerCallBuilder::new(CALLBACK, Identity::new("u"), Media::app_hosted("{}"))
        .build()
        .unwrap();
    let required = required_permissions(&call);
    let claims = json!({"aud": "https://graph.microsoft.com", "roles": ["Calls.AccessMedia.All", "Calls.Initiate.All", "User.Read.All"]});
    assert_eq!(check_token_claims(&claims, &required), Ok(()));
}

#[test]
fn missing_permission_is_named() {
    let required = required_permissions(&meeting_app_hosted());
    let claims = json!({"roles": ["Calls.JoinGroupCall.All"]});
    let error = check_token_claims(&claims, &required).unwrap_err();
    assert_eq!(
        error,
        PermissionError::Missing {
            missing: vec![AnyOf(vec![Permission::CallsAccessMediaAll])],
            granted: vec!["Calls.JoinGroupCall.All".into()],
        }
    );
    assert_eq!(
        error.to_string(),
        "missing application permission: Calls.AccessMedia.All; the token grants [Calls.JoinGroupCall.All]"
    );
}

#[test]
fn delegated_tokens_are_not_supported() {
    let required = required_permissions(&meeting_app_hosted());
    // Even with roles (app roles assigned to a user), an scp claim means a user token.
    let claims = json!({"scp": "Calls.Initiate.All User.Read", "roles": ["Calls.JoinGroupCall.All", "Calls.AccessMedia.All"]});
    assert_eq!(
        check_token_claims(&claims, &required),
        Err(PermissionError::DelegatedToken {
            scp: "Calls.Initiate.All User.Read".into()
        })
    );
}

#[test]
fn malformed_claims_are_refused() {
    let required = required_permissions(&meeting_app_hosted());
    assert!(matches!(
        check_token_claims(&json!({}), &required),
        Err(PermissionError::NoRoles { .. })
    ));
    assert!(matches!(
        check_token_claims(&json!({"roles": null}), &required),
        Err(PermissionError::NoRoles { .. })
    ));
    assert_eq!(
        check_token_claims(&json!({"roles": "Calls.Initiate.All"}), &required),
        Err(PermissionError::MalformedRoles)
    );
    assert_eq!(
        check_token_claims(&json!({"roles": [1, 2]}), &required),
        Err(PermissionError::MalformedRoles)
    );
    assert_eq!(
        check_token_claims(&json!(["roles"]), &required),
        Err(PermissionError::ClaimsNotAnObject)
    );
}
