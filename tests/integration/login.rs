//! Logging in: challenges answer once, forgeries all get the same 401, and challenges
//! tell nothing about the key.

use std::time::Duration;

use chatsender::keys::{PublicKey, encode_base64};
use ed25519_dalek::Signer as _;
use ed25519_dalek::SigningKey;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{
    Backends, TestApp, http, public_b64, sign_challenge, stderr, unique, wait_until,
};
use crate::{for_each_backend, on_sqlite};

for_each_backend!(a_challenge_answers_once_even_under_concurrency);
on_sqlite!(
    forged_and_malformed_logins_all_get_the_same_401,
    challenges_look_alike_for_unknown_revoked_and_valid_keys,
);

/// The one answer to every failed login.
pub fn refused() -> Value {
    json!({"errcode": "M_FORBIDDEN", "error": "login failed"})
}

/// 2. One challenge, one session: replayed in sequence and 50 times concurrently.
async fn a_challenge_answers_once_even_under_concurrency(backends: Backends) {
    let s = TestApp::spawn(backends).await;
    let (_, key) = s.generate(&[]);
    for concurrent in [1usize, 50] {
        let (_, challenge) = s.challenge(&public_b64(&key)).await;
        let id = challenge["challenge_id"].as_str().expect("id").to_owned();
        let sig = sign_challenge(&key, &challenge);
        let attempts: Vec<_> = (0..concurrent.max(2))
            .map(|_| {
                let (url, id, sig) = (s.url("/api/v1/auth/login"), id.clone(), sig.clone());
                tokio::spawn(async move {
                    let body = json!({"challenge_id": id, "signature": sig});
                    http()
                        .post(url)
                        .json(&body)
                        .send()
                        .await
                        .expect("login")
                        .status()
                })
            })
            .collect();
        let mut ok = 0;
        for attempt in attempts {
            match attempt.await.expect("join") {
                StatusCode::OK => ok += 1,
                other => assert_eq!(other, StatusCode::UNAUTHORIZED),
            }
        }
        assert_eq!(
            ok,
            1,
            "exactly one of {} logins with one challenge succeeds",
            concurrent.max(2)
        );
    }
    let key_id = PublicKey::from_slice(key.verifying_key().as_bytes())
        .expect("key")
        .key_id();
    let live = s.keygen(&["list", "--json"]);
    let listed: Vec<Value> = serde_json::from_slice(&live.stdout).expect("list --json");
    let mine = listed
        .iter()
        .find(|k| k["key_id"] == key_id.as_str())
        .expect("listed");
    assert_eq!(mine["active_sessions"], 2, "two challenges, two sessions");
    assert_eq!(mine["status"], "active");
    assert!(mine["last_login"].is_string());
}

/// ℓ, the order of the Ed25519 base point, little-endian.
const ELL: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn s_plus_ell(sig: &[u8; 64]) -> [u8; 64] {
    let mut out = *sig;
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(sig[32 + i]) + u16::from(ELL[i]) + carry;
        out[32 + i] = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
    out
}

/// What a login answers to a challenge message with.
type Answer<'a> = Box<dyn Fn(&str) -> String + Send + Sync + 'a>;

/// `sig` with byte `at` XORed with `mask`.
fn flip(mut sig: [u8; 64], at: usize, mask: u8) -> [u8; 64] {
    sig[at] ^= mask;
    sig
}

/// 3. Every forged or malformed login gets the very same 401.
async fn forged_and_malformed_logins_all_get_the_same_401(backends: Backends) {
    let s = TestApp::spawn_with(backends, |settings| settings.auth.challenge_ttl_secs = 1).await;
    let (_, a) = s.generate(&[]);
    let (_, b) = s.generate(&[]);
    let refused = refused();

    // Each case: a fresh challenge for A, answered with what `answer` makes of the
    // message (a forgery, or a mangled signature of A's).
    let sign_a = |m: &str| a.sign(m.as_bytes()).to_bytes();
    let cases: Vec<(&str, Answer)> = vec![
        (
            "signed by key B",
            Box::new(|m| encode_base64(&b.sign(m.as_bytes()).to_bytes())),
        ),
        (
            "over a changed message",
            Box::new(move |m| encode_base64(&sign_a(&m.replace("origin: ", "origin: x")))),
        ),
        (
            "S + ℓ",
            Box::new(move |m| encode_base64(&s_plus_ell(&sign_a(m)))),
        ),
        (
            "a flipped bit in R",
            Box::new(move |m| encode_base64(&flip(sign_a(m), 3, 0x10))),
        ),
        (
            "a flipped bit in S",
            Box::new(move |m| encode_base64(&flip(sign_a(m), 40, 0x01))),
        ),
        (
            "63 bytes",
            Box::new(move |m| encode_base64(&sign_a(m)[..63])),
        ),
        (
            "65 bytes",
            Box::new(move |m| encode_base64(&[&sign_a(m)[..], &[0]].concat())),
        ),
        (
            "non-canonical base64",
            Box::new(move |m| non_canonical(&encode_base64(&sign_a(m)))),
        ),
        ("not base64", Box::new(|_| "!!!".to_owned())),
    ];
    for (what, answer) in cases {
        let (_, c) = s.challenge(&public_b64(&a)).await;
        let signature = answer(c["message"].as_str().expect("message"));
        let (status, body) = s
            .login_raw(c["challenge_id"].as_str().expect("id"), &signature)
            .await;
        assert_eq!(
            (status, &body),
            (StatusCode::UNAUTHORIZED, &refused),
            "{what}"
        );
    }
    let (status, body) = s.login_raw("no-such-challenge", "AAAA").await;
    assert_eq!(
        (status, &body),
        (StatusCode::UNAUTHORIZED, &refused),
        "unknown challenge"
    );

    // An expired challenge, signed correctly.
    let (_, c) = s.challenge(&public_b64(&a)).await;
    let expires = time::OffsetDateTime::parse(
        c["expires_at"].as_str().expect("exp"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("rfc3339");
    wait_until(
        "the challenge has expired",
        Duration::from_secs(5),
        || async {
            (time::OffsetDateTime::now_utc().unix_timestamp() > expires.unix_timestamp())
                .then_some(())
        },
    )
    .await;
    let (status, body) = s.answer(&a, &c).await;
    assert_eq!(
        (status, &body),
        (StatusCode::UNAUTHORIZED, &refused),
        "expired challenge"
    );
    let log = s.daemon().stores.audit.audit_log(1).await.expect("audit");
    assert_eq!(
        log[0].detail.as_deref(),
        Some("challenge expired"),
        "refused for its age, not as unknown"
    );

    // Malformed keys, and the small-order forgery's key (the identity point, for
    // which R = identity, S = 0 verifies under plain `verify` for any message).
    let identity = {
        let mut k = [0u8; 32];
        k[0] = 1;
        k
    };
    for (what, key) in [
        ("31-byte key", encode_base64(&[7u8; 31])),
        ("33-byte key", encode_base64(&[7u8; 33])),
        ("identity-point key", encode_base64(&identity)),
        ("non-canonical base64 key", non_canonical(&public_b64(&a))),
    ] {
        let (status, body) = s.challenge(&key).await;
        assert_eq!(
            (status, &body),
            (StatusCode::UNAUTHORIZED, &refused),
            "{what}"
        );
    }
    // Even if the identity key were in the database, the forgery would not log in.
    let forged = chatsender::store::NewKey {
        key_id: unique("").chars().take(16).collect(),
        fingerprint: format!("{:0<64}", unique("")),
        public_key: identity,
        user_id: s.slot.puppet_id(&unique("forger")),
        name: None,
        display_name: None,
    };
    s.daemon()
        .stores
        .keys
        .insert_keys(std::slice::from_ref(&forged))
        .await
        .expect("insert");
    let mut small_order_sig = [0u8; 64];
    small_order_sig[0] = 1; // R = identity, S = 0
    assert!(
        !PublicKey::from_slice(&identity).is_ok_and(|k| k.verify(b"any message", &small_order_sig))
    );
}

/// Alters the last character so its unused low bits are not zero.
fn non_canonical(b64: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = b64.trim_end_matches('=').as_bytes().to_vec();
    let last = bytes.len() - 1;
    let i = ALPHABET
        .iter()
        .position(|c| *c == bytes[last])
        .expect("base64");
    bytes[last] = ALPHABET[i | 1];
    String::from_utf8(bytes).expect("ascii")
}

/// 4. Unknown, revoked and valid keys get challenges of the same shape and status.
async fn challenges_look_alike_for_unknown_revoked_and_valid_keys(backends: Backends) {
    let s = TestApp::spawn(backends).await;
    let (valid, valid_key) = s.generate(&[]);
    let (revoked, revoked_key) = s.generate(&[]);
    let out = s.keygen(&[
        "revoke",
        revoked["fingerprint"].as_str().expect("fp"),
        "--yes",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let unknown = SigningKey::from_bytes(&[9u8; 32]);
    let _ = valid;
    let mut shapes = Vec::new();
    for key in [&valid_key, &revoked_key, &unknown] {
        let (status, c) = s.challenge(&public_b64(key)).await;
        assert_eq!(status, 200);
        let keys: Vec<&String> = c.as_object().expect("object").keys().collect();
        let message = c["message"].as_str().expect("message");
        let labels: Vec<&str> = message
            .split('\n')
            .map(|l| l.split(':').next().unwrap_or_default())
            .collect();
        shapes.push((
            keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
            labels.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
            c["challenge_id"].as_str().expect("id").len(),
        ));
    }
    assert_eq!(shapes[0], shapes[1]);
    assert_eq!(shapes[0], shapes[2]);
}
