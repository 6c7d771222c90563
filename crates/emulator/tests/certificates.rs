//! Certificate credentials at the emulator's token endpoint: the client-credentials grant with a
//! client assertion signed by a certificate registered for the application, checked as the
//! Microsoft identity platform does (registered thumbprint, signature, audience = the token
//! endpoint, iss = sub = client id, lifetime).

mod common;

use std::time::Duration;

use appmedia_emulator::{Emulator, EmulatorConfig};
use appmedia_signalling::auth::{
    CLIENT_ASSERTION_TYPE, Certificate, ClientCertificate, ClientCredentials, TokenError,
    TokenSource, unix_now, unverified_payload,
};
use appmedia_testkit::certificates::{APP_BUNDLE, APP_CERT, OTHER_KEY};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const BOT: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";
const SCOPE: &str = "https://graph.microsoft.com/.default";

/// An emulator whose calling bot has the test certificate registered and no client secret.
async fn emulator() -> Emulator {
    appmedia_signalling::install_crypto_provider();
    let mut config = EmulatorConfig::default();
    let app = config
        .directory
        .applications
        .iter_mut()
        .find(|a| a.id == BOT)
        .expect("the built-in directory has the calling bot");
    app.client_secret.clear();
    app.certificates = vec![APP_CERT.to_owned()];
    Emulator::start(config).await.expect("emulator starts")
}

fn tenant(emulator: &Emulator) -> String {
    emulator
        .directory()
        .application(BOT)
        .expect("registered")
        .tenant
        .clone()
}

async fn ask(emulator: &Emulator, body: String) -> (u16, Value) {
    common::token_request(emulator, &tenant(emulator), body).await
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// An assertion made by hand, so each field can be wrong on purpose.
fn assertion(key_pem: &str, x5t: &str, claims: Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.x5t = Some(x5t.to_owned());
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_client_gets_a_token_with_its_certificate() {
    let emulator = emulator().await;
    let credential = ClientCertificate::from_pem_bundle(APP_BUNDLE.as_bytes()).unwrap();
    let credentials = ClientCredentials::for_authority(
        emulator.authority_url(),
        &tenant(&emulator),
        BOT,
        credential,
        SCOPE,
    )
    .unwrap();
    let tokens = TokenSource::client_credentials(credentials, Duration::from_secs(5)).unwrap();
    let token = tokens.token().await.expect("the assertion is accepted");
    let claims = unverified_payload(&token).unwrap();
    assert_eq!(claims["appid"], BOT);
    assert_eq!(claims["idtyp"], "app");
    // The calling API takes the token: a call that does not exist is 404, where a forged
    // token is 401.
    let status_with = |bearer: String| {
        let request = reqwest::Client::new()
            .get(format!(
                "{}/communications/calls/00000000-0000-0000-0000-000000000000",
                emulator.graph_url()
            ))
            .bearer_auth(bearer);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status_with(token).await, 404);
    assert_eq!(status_with("forged".to_owned()).await, 401);
}

#[tokio::test]
async fn a_secret_no_longer_works_once_only_a_certificate_is_registered() {
    let emulator = emulator().await;
    for secret in ["", "calling-bot-secret"] {
        let (status, body) = ask(
            &emulator,
            form(&[
                ("grant_type", "client_credentials"),
                ("client_id", BOT),
                ("client_secret", secret),
                ("scope", SCOPE),
            ]),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
    }
    // And a client configured with the wrong secret sees the refusal as a typed error.
    let credentials = ClientCredentials::for_authority(
        emulator.authority_url(),
        &tenant(&emulator),
        BOT,
        "calling-bot-secret",
        SCOPE,
    )
    .unwrap();
    let error = TokenSource::client_credentials(credentials, Duration::from_secs(5))
        .unwrap()
        .token()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TokenError::Refused { status: 401, error, .. } if error == "invalid_client"),
        "{error:?}"
    );
}

#[tokio::test]
async fn bad_assertions_are_refused_naming_what_is_wrong() {
    let emulator = emulator().await;
    let token_url = emulator.token_url(&tenant(&emulator));
    let cert = Certificate::from_pem(APP_CERT.as_bytes()).unwrap();
    let app_key = appmedia_testkit::certificates::APP_KEY;
    let now = unix_now();
    let good = json!({
        "aud": token_url, "iss": BOT, "sub": BOT, "jti": "1",
        "nbf": now, "iat": now, "exp": now + 600,
    });
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = good.clone();
        change(&mut claims);
        claims
    };
    let post = |assertion: String, kind: &str| {
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", BOT),
            ("client_assertion_type", kind),
            ("client_assertion", &assertion),
            ("scope", SCOPE),
        ])
    };
    // The good one passes (the baseline every case below changes one thing of).
    let (status, body) = ask(
        &emulator,
        post(
            assertion(app_key, &cert.x5t(), good.clone()),
            CLIENT_ASSERTION_TYPE,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let cases: Vec<(&str, String, &str, u16, &str)> = vec![
        (
            "signed by another key",
            assertion(OTHER_KEY, &cert.x5t(), good.clone()),
            CLIENT_ASSERTION_TYPE,
            401,
            "AADSTS700027",
        ),
        (
            "an unregistered certificate",
            assertion(app_key, "AAAAAAAAAAAAAAAAAAAAAAAAAAA", good.clone()),
            CLIENT_ASSERTION_TYPE,
            401,
            "AADSTS700027",
        ),
        (
            "for another audience",
            assertion(
                app_key,
                &cert.x5t(),
                with(&|c| {
                    c["aud"] = "https://login.microsoftonline.com/x/oauth2/v2.0/token".into()
                }),
            ),
            CLIENT_ASSERTION_TYPE,
            401,
            "AADSTS700016",
        ),
        (
            "expired",
            assertion(
                app_key,
                &cert.x5t(),
                with(&|c| {
                    c["nbf"] = (now - 1200).into();
                    c["exp"] = (now - 600).into();
                }),
            ),
            CLIENT_ASSERTION_TYPE,
            401,
            "AADSTS700024",
        ),
        (
            "issued by another client",
            assertion(
                app_key,
                &cert.x5t(),
                with(&|c| c["iss"] = "someone-else".into()),
            ),
            CLIENT_ASSERTION_TYPE,
            401,
            "AADSTS700021",
        ),
        (
            "about another subject",
            assertion(
                app_key,
                &cert.x5t(),
                with(&|c| c["sub"] = "someone-else".into()),
            ),
            CLIENT_ASSERTION_TYPE,
            401,
            "AADSTS700021",
        ),
        (
            "not a JWT",
            "garbage".to_owned(),
            CLIENT_ASSERTION_TYPE,
            401,
            "AADSTS50027",
        ),
        (
            "with a wrong assertion type",
            assertion(app_key, &cert.x5t(), good.clone()),
            "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            400,
            "AADSTS50027",
        ),
    ];
    for (what, assertion, kind, want_status, code) in cases {
        let (status, body) = ask(&emulator, post(assertion, kind)).await;
        let description = body["error_description"].as_str().unwrap_or_default();
        assert_eq!(status, want_status, "{what}: {body}");
        assert!(description.starts_with(code), "{what}: {description}");
    }

    // Both a secret and an assertion, or neither.
    let (status, body) = ask(
        &emulator,
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", BOT),
            ("client_secret", "x"),
            ("client_assertion_type", CLIENT_ASSERTION_TYPE),
            (
                "client_assertion",
                &assertion(app_key, &cert.x5t(), good.clone()),
            ),
            ("scope", SCOPE),
        ]),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = ask(
        &emulator,
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", BOT),
            ("scope", SCOPE),
        ]),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[test]
fn a_directory_application_needs_a_secret_or_a_valid_certificate() {
    let base = r#"
        [[tenants]]
        id = "t"
        [[applications]]
        id = "a"
        display_name = "A"
        tenant = "t"
    "#;
    let error = appmedia_emulator::Directory::from_toml_str(base).unwrap_err();
    assert!(
        error.to_string().contains("client_secret or a certificate"),
        "{error}"
    );
    let with_cert = format!("{base}certificates = [{APP_CERT:?}]\n");
    appmedia_emulator::Directory::from_toml_str(&with_cert).expect("a certificate is enough");
    let broken = format!(
        "{base}certificates = [\"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n\"]\n"
    );
    let error = appmedia_emulator::Directory::from_toml_str(&broken).unwrap_err();
    assert!(error.to_string().contains("certificates[0]"), "{error}");
}
