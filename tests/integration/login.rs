//! Key login against a real daemon and Synapse: keygen, challenges, sessions,
//! revocation, rate limits. Every test runs on each store and cache.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chatsender::keys::{PublicKey, encode_base64};
use ed25519_dalek::Signer as _;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::for_each_backend;
use crate::harness::{
    Backends, CacheKind, Daemon, Provisioned, Slot, daemon_settings, env, http, keygen, unique,
    urlencode, wait_until,
};

for_each_backend!(
    generated_and_openssl_keys_log_in,
    a_challenge_answers_once_even_under_concurrency,
    forged_and_malformed_logins_all_get_the_same_401,
    challenges_look_alike_for_unknown_revoked_and_valid_keys,
    revocation_ends_sessions_at_once,
    sessions_end_by_logout_idle_and_absolute_lifetime,
    rate_limits_answer_429_and_are_shared_in_redis_mode,
);

/// A daemon on a leased slot with fresh backends.
pub struct Setup {
    pub slot: Slot,
    pub provisioned: Provisioned,
    pub daemon: Daemon,
    pub dir: tempfile::TempDir,
}

pub async fn setup(
    backends: Backends,
    tune: impl FnOnce(&mut chatsender::config::Settings),
) -> Setup {
    let slot = Slot::lease().await;
    let provisioned = Provisioned::new(backends).await;
    let mut settings = daemon_settings(&slot, &provisioned);
    tune(&mut settings);
    let daemon = Daemon::start_ready(settings).await;
    Setup {
        slot,
        provisioned,
        daemon,
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

impl Setup {
    pub async fn finish(self) {
        self.daemon.stop().await;
        self.provisioned.cleanup().await;
    }

    pub fn keygen(&self, args: &[&str]) -> std::process::Output {
        keygen(&self.slot, &self.provisioned, args)
    }

    /// `keygen generate 1 --json` (with extra args); returns the key and its PEM file.
    pub fn generate(&self, extra: &[&str]) -> (Value, SigningKey) {
        let out = self.dir.path().to_str().expect("utf-8 path");
        let mut args = vec!["generate", "1", "--json", "--out", out];
        args.extend_from_slice(extra);
        let output = self.keygen(&args);
        assert!(
            output.status.success(),
            "keygen generate: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let keys: Vec<Value> = serde_json::from_slice(&output.stdout).expect("generate --json");
        let key = keys.into_iter().next().expect("one key");
        let pem =
            std::fs::read_to_string(key["private_key_file"].as_str().expect("file")).expect("pem");
        (key, SigningKey::from_pkcs8_pem(&pem).expect("PKCS#8 PEM"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.daemon.base_url)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let r = http()
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("post");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn challenge(&self, public_key: &str) -> (StatusCode, Value) {
        self.post("/api/v1/auth/challenge", &json!({"public_key": public_key}))
            .await
    }

    pub async fn login_raw(&self, challenge_id: &str, signature: &str) -> (StatusCode, Value) {
        self.post(
            "/api/v1/auth/login",
            &json!({"challenge_id": challenge_id, "signature": signature}),
        )
        .await
    }

    /// Answers `challenge` with `key`'s signature.
    pub async fn answer(&self, key: &SigningKey, challenge: &Value) -> (StatusCode, Value) {
        let id = challenge["challenge_id"].as_str().expect("a challenge id");
        self.login_raw(id, &sign_challenge(key, challenge)).await
    }

    /// A full login with `key`; returns the access token.
    pub async fn login(&self, key: &SigningKey) -> String {
        let (status, challenge) = self.challenge(&public_b64(key)).await;
        assert_eq!(status, 200, "{challenge}");
        let (status, session) = self.answer(key, &challenge).await;
        assert_eq!(status, 200, "{session}");
        session["access_token"].as_str().expect("token").to_owned()
    }

    pub async fn me(&self, token: &str) -> (StatusCode, Value) {
        let r = http()
            .get(self.url("/api/v1/me"))
            .bearer_auth(token)
            .send()
            .await
            .expect("me");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// The base64 signature of a challenge's message.
pub fn sign_challenge(key: &SigningKey, challenge: &Value) -> String {
    let message = challenge["message"].as_str().expect("a challenge message");
    encode_base64(&key.sign(message.as_bytes()).to_bytes())
}

/// The one answer to every failed login.
fn refused() -> Value {
    json!({"errcode": "M_FORBIDDEN", "error": "login failed"})
}

pub fn public_b64(key: &SigningKey) -> String {
    encode_base64(key.verifying_key().as_bytes())
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn openssl(args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Signs `message` with OpenSSL and the PEM private key at `pem`.
fn openssl_sign(dir: &Path, pem: &str, message: &str) -> String {
    let msg = dir.join(unique("msg"));
    std::fs::write(&msg, message).expect("write message");
    let sig = openssl(&[
        "pkeyutl",
        "-sign",
        "-inkey",
        pem,
        "-rawin",
        "-in",
        msg.to_str().expect("path"),
    ]);
    assert_eq!(sig.stdout.len(), 64);
    encode_base64(&sig.stdout)
}

/// 1. A generated key logs in (its PEM loads and signs in OpenSSL too); a key made by
///    OpenSSL and registered with `keygen add` logs in.
async fn generated_and_openssl_keys_log_in(backends: Backends) {
    let s = setup(backends, |_| {}).await;
    let (key, signing) = s.generate(&[]);
    let file = key["private_key_file"].as_str().expect("file");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).expect("pem").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let public =
        PublicKey::from_base64(key["public_key"].as_str().expect("public_key")).expect("valid");
    assert_eq!(key["key_id"], public.key_id());
    assert_eq!(key["fingerprint"], public.fingerprint());
    assert_eq!(key["user_id"], s.slot.puppet_id(&public.key_id()).as_str());
    openssl(&["pkey", "-in", file, "-noout"]);

    // OpenSSL signs the challenge with the generated PEM.
    let (_, challenge) = s.challenge(key["public_key"].as_str().expect("pk")).await;
    let message = challenge["message"].as_str().expect("message");
    let lines: Vec<&str> = message.split('\n').collect();
    assert_eq!(lines[0], "chatsender-login-v1");
    assert_eq!(lines[1], format!("origin: {}", s.daemon_origin()));
    assert_eq!(lines[2], format!("public-key: {}", public.to_base64()));
    assert!(lines[3].starts_with("nonce: ") && lines[3].len() == "nonce: ".len() + 43);
    assert_eq!(
        lines[5],
        format!(
            "expires-at: {}",
            challenge["expires_at"].as_str().expect("exp")
        )
    );
    let signature = openssl_sign(s.dir.path(), file, message);
    let (status, session) = s
        .login_raw(challenge["challenge_id"].as_str().expect("id"), &signature)
        .await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["user_id"], key["user_id"]);
    assert_eq!(session["key_id"], key["key_id"]);
    let (status, me) = s.me(session["access_token"].as_str().expect("token")).await;
    assert_eq!(status, 200);
    assert_eq!(
        me,
        json!({"user_id": key["user_id"], "display_name": key["key_id"], "key_id": key["key_id"]})
    );
    let token = s.login(&signing).await;
    assert_eq!(s.me(&token).await.1["user_id"], key["user_id"]);

    // A key made by OpenSSL, registered from its PEM public key file under a name.
    let pem = s.dir.path().join("bob.pem");
    let pubfile = s.dir.path().join("bob.pub.pem");
    let (pem, pubfile) = (pem.to_str().expect("path"), pubfile.to_str().expect("path"));
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", pem]);
    openssl(&["pkey", "-in", pem, "-pubout", "-out", pubfile]);
    let name = unique("bob");
    let added = s.keygen(&["add", pubfile, "--name", &name, "--json"]);
    assert!(added.status.success(), "{}", stderr(&added));
    let added: Value = serde_json::from_slice(&added.stdout).expect("add --json");
    assert_eq!(added["user_id"], s.slot.puppet_id(&name).as_str());
    let (_, challenge) = s.challenge(added["public_key"].as_str().expect("pk")).await;
    let signature = openssl_sign(
        s.dir.path(),
        pem,
        challenge["message"].as_str().expect("message"),
    );
    let (status, session) = s
        .login_raw(challenge["challenge_id"].as_str().expect("id"), &signature)
        .await;
    assert_eq!(status, 200, "{session}");
    let (_, me) = s.me(session["access_token"].as_str().expect("token")).await;
    assert_eq!(me["user_id"], added["user_id"]);
    assert_eq!(me["display_name"], name.as_str());

    // Logging in registered the puppet on Synapse, with the key's name.
    let profile: Value = http()
        .get(format!(
            "{}/_matrix/client/v3/profile/{}",
            env().synapse_url,
            urlencode(&name_id(&added))
        ))
        .send()
        .await
        .expect("profile")
        .json()
        .await
        .expect("json");
    assert_eq!(profile["displayname"], name.as_str());

    // The same key twice, and weak keys, are refused by `add`.
    let again = s.keygen(&["add", added["public_key"].as_str().expect("pk")]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already registered"),
        "{}",
        stderr(&again)
    );
    let identity = encode_base64(&{
        let mut b = [0u8; 32];
        b[0] = 1;
        b
    });
    let weak = s.keygen(&["add", &identity]);
    assert_eq!(weak.status.code(), Some(1));
    assert!(stderr(&weak).contains("weak"), "{}", stderr(&weak));

    // The audit log has the keys and the logins, and no token.
    let log = s.daemon.store.audit_log(50).await.expect("audit");
    let token = session["access_token"].as_str().expect("token");
    assert!(log.iter().any(|e| e.event == "key_created"
        && e.key_id.as_ref() == added["key_id"].as_str().map(str::to_owned).as_ref()));
    assert!(log.iter().filter(|e| e.event == "login_success").count() >= 3);
    assert!(!format!("{log:?}").contains(token));
    s.finish().await;
}

fn name_id(v: &Value) -> String {
    v["user_id"].as_str().expect("user_id").to_owned()
}

impl Setup {
    pub fn daemon_origin(&self) -> String {
        self.slot.settings.auth.origin.clone()
    }
}

/// `keygen generate` of many keys reports its progress (as lines, without a terminal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_reports_progress_on_long_runs() {
    let s = setup(Backends::SQLITE_EMBEDDED, |_| {}).await;
    let out = s.dir.path().join("many");
    let output = s.keygen(&["generate", "1000", "--out", out.to_str().expect("path")]);
    assert!(output.status.success(), "{}", stderr(&output));
    let said = stderr(&output);
    let steps: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("generated ") && l.ends_with(" keys"))
        .collect();
    assert_eq!(steps.len(), 10, "a line every tenth: {said}");
    assert_eq!(steps.last(), Some(&"generated 1000/1000 keys"));
    assert_eq!(
        stdout(&output).lines().count(),
        1000,
        "one line per key on stdout"
    );
    assert_eq!(std::fs::read_dir(&out).expect("out dir").count(), 1000);
    s.finish().await;
}

/// 2. One challenge, one session: replayed in sequence and 50 times concurrently.
async fn a_challenge_answers_once_even_under_concurrency(backends: Backends) {
    let s = setup(backends, |_| {}).await;
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
    s.finish().await;
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
    let s = setup(backends, |settings| settings.auth.challenge_ttl_secs = 1).await;
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
    let log = s.daemon.store.audit_log(1).await.expect("audit");
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
    s.daemon
        .store
        .insert_keys(std::slice::from_ref(&forged))
        .await
        .expect("insert");
    let mut small_order_sig = [0u8; 64];
    small_order_sig[0] = 1; // R = identity, S = 0
    assert!(
        !PublicKey::from_slice(&identity).is_ok_and(|k| k.verify(b"any message", &small_order_sig))
    );
    s.finish().await;
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
    let s = setup(backends, |_| {}).await;
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
    s.finish().await;
}

async fn revoke(s: &Setup, fingerprint: &str) -> String {
    let out = s.keygen(&["revoke", &fingerprint[..12], "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// 5. Revocation before a challenge, between challenge and login, during a session,
///    with the daemon down, and racing a login: no session of the key survives.
async fn revocation_ends_sessions_at_once(backends: Backends) {
    let mut s = setup(backends, |_| {}).await;
    let refused = refused();

    // Before the challenge.
    let (k1, key1) = s.generate(&[]);
    revoke(&s, k1["fingerprint"].as_str().expect("fp")).await;
    let (status, c) = s.challenge(&public_b64(&key1)).await;
    assert_eq!(status, 200, "a revoked key gets a challenge like any other");
    assert_eq!(
        s.answer(&key1, &c).await,
        (StatusCode::UNAUTHORIZED, refused.clone())
    );

    // Between challenge and login.
    let (k2, key2) = s.generate(&[]);
    let (_, c) = s.challenge(&public_b64(&key2)).await;
    revoke(&s, k2["fingerprint"].as_str().expect("fp")).await;
    assert_eq!(
        s.answer(&key2, &c).await,
        (StatusCode::UNAUTHORIZED, refused.clone())
    );

    // During a session (two of them): the next request is refused; revoking twice is harmless.
    let (k3, key3) = s.generate(&[]);
    let (t1, t2) = (s.login(&key3).await, s.login(&key3).await);
    assert_eq!(s.me(&t1).await.0, 200);
    let said = revoke(&s, k3["fingerprint"].as_str().expect("fp")).await;
    assert!(said.contains("2 session(s) ended"), "{said}");
    for t in [&t1, &t2] {
        let (status, body) = s.me(t).await;
        assert_eq!(status, 401);
        assert_eq!(body["errcode"], "M_UNKNOWN_TOKEN");
    }
    let again = revoke(&s, k3["fingerprint"].as_str().expect("fp")).await;
    assert!(again.contains("0 session(s) ended"), "{again}");

    // With the daemon down: the revocation holds when it starts again.
    let (k4, key4) = s.generate(&[]);
    let t4 = s.login(&key4).await;
    let settings_restart = s.slot_settings();
    s.daemon.stop().await;
    let out = keygen(
        &s.slot,
        &s.provisioned,
        &["revoke", k4["fingerprint"].as_str().expect("fp"), "--yes"],
    );
    assert!(
        stdout(&out).contains("1 session(s) ended"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    s.daemon = Daemon::start_ready(settings_restart).await;
    assert_eq!(s.me(&t4).await.0, 401);

    // Racing a login: whichever wins, no session survives.
    for _ in 0..4 {
        let (k, key) = s.generate(&[]);
        let (_, c) = s.challenge(&public_b64(&key)).await;
        let login = s.answer(&key, &c);
        let fp = k["fingerprint"].as_str().expect("fp").to_owned();
        let revoking = tokio::task::spawn_blocking({
            let (slot_config, env) = (s.slot.config_path.clone(), s.provisioned.env_overrides());
            move || {
                Command::new(env!("CARGO_BIN_EXE_chatsender"))
                    .arg("-c")
                    .arg(slot_config)
                    .args(["keygen", "revoke", &fp, "--yes"])
                    .envs(env)
                    .output()
                    .expect("revoke")
            }
        });
        let ((status, session), revoked) = tokio::join!(login, revoking);
        assert!(revoked.expect("join").status.success());
        if status == 200 {
            let (status, _) = s.me(session["access_token"].as_str().expect("token")).await;
            assert_eq!(status, 401, "a session made while revoking did not survive");
        }
        let list: Vec<Value> =
            serde_json::from_slice(&s.keygen(&["list", "--all", "--json"]).stdout).expect("list");
        let entry = list
            .iter()
            .find(|e| e["fingerprint"] == k["fingerprint"])
            .expect("listed");
        assert_eq!(entry["status"], "revoked");
        assert_eq!(entry["active_sessions"], 0);
    }

    // Prefixes: too short, no match, ambiguous (two keys sharing 8 characters).
    let short = s.keygen(&["revoke", "abc123", "--yes"]);
    assert_eq!(short.status.code(), Some(1));
    assert!(
        stderr(&short).contains("at least 8 hex"),
        "{}",
        stderr(&short)
    );
    let none = s.keygen(&["revoke", "0000000000000000000000000000", "--yes"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(stderr(&none).contains("no key"), "{}", stderr(&none));
    let shared = format!("{:08x}", rand::random::<u32>());
    let twins: Vec<chatsender::store::NewKey> = (0..2)
        .map(|i| {
            let pk = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
            chatsender::store::NewKey {
                key_id: format!("{shared}{i:08x}"),
                fingerprint: format!("{shared}{i:056x}"),
                public_key: *pk.verifying_key().as_bytes(),
                user_id: s.slot.puppet_id(&unique("twin")),
                name: None,
                display_name: None,
            }
        })
        .collect();
    s.daemon
        .store
        .insert_keys(&twins)
        .await
        .expect("insert twins");
    let ambiguous = s.keygen(&["revoke", &shared, "--yes"]);
    assert_eq!(ambiguous.status.code(), Some(1));
    for twin in &twins {
        assert!(
            stderr(&ambiguous).contains(&twin.fingerprint),
            "candidates listed: {}",
            stderr(&ambiguous)
        );
    }
    let listed: Vec<Value> =
        serde_json::from_slice(&s.keygen(&["list", "--json"]).stdout).expect("list");
    assert_eq!(
        listed
            .iter()
            .filter(|e| e["fingerprint"]
                .as_str()
                .is_some_and(|f| f.starts_with(&shared)))
            .count(),
        2,
        "neither was revoked"
    );
    let revoked_log = s.daemon.store.audit_log(100).await.expect("audit");
    assert!(
        revoked_log
            .iter()
            .any(|e| e.event == "key_revoked" && e.key_id.as_deref() == k3["key_id"].as_str())
    );
    s.finish().await;
}

impl Setup {
    pub fn slot_settings(&self) -> chatsender::config::Settings {
        daemon_settings(&self.slot, &self.provisioned)
    }
}

/// 6. Logout, idle and absolute lifetimes end sessions; the cookie is HttpOnly and
///    SameSite=Strict; a cookie-authenticated change from another origin is refused;
///    bodies over 64 KiB get 413.
async fn sessions_end_by_logout_idle_and_absolute_lifetime(backends: Backends) {
    let s = setup(backends, |settings| {
        settings.auth.session_idle_secs = 2;
        settings.auth.session_max_secs = 3600;
    })
    .await;
    let (_, key) = s.generate(&[]);

    // The cookie, and what it may do.
    let (_, c) = s.challenge(&public_b64(&key)).await;
    let sig = sign_challenge(&key, &c);
    let r = http()
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"challenge_id": c["challenge_id"], "signature": sig}))
        .send()
        .await
        .expect("login");
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "http origin: no Secure");
    let pair = cookie.split(';').next().expect("pair").to_owned();
    let me = http()
        .get(s.url("/api/v1/me"))
        .header("cookie", &pair)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 200, "the cookie authenticates");
    let foreign = http()
        .post(s.url("/api/v1/auth/logout"))
        .header("cookie", &pair)
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("logout");
    assert_eq!(foreign.status(), 403);
    assert_eq!(
        foreign.json::<Value>().await.expect("json")["errcode"],
        "M_FORBIDDEN"
    );
    let no_origin = http()
        .post(s.url("/api/v1/auth/logout"))
        .header("cookie", &pair)
        .send()
        .await
        .expect("logout");
    assert_eq!(
        no_origin.status(),
        403,
        "a cookie POST without Origin is refused too"
    );
    let logout = http()
        .post(s.url("/api/v1/auth/logout"))
        .header("cookie", &pair)
        .header("origin", s.daemon_origin())
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), 200);
    assert!(
        logout.headers()["set-cookie"]
            .to_str()
            .expect("cookie")
            .contains("Max-Age=0")
    );
    let after = http()
        .get(s.url("/api/v1/me"))
        .header("cookie", &pair)
        .send()
        .await
        .expect("me");
    assert_eq!(after.status(), 401, "logout ended the session");

    // Bearer logout.
    let token = s.login(&key).await;
    let r = http()
        .post(s.url("/api/v1/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 200);
    assert_eq!(s.me(&token).await.0, 401);
    let (status, body) = s.me("not-a-token").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_UNKNOWN_TOKEN"))
    );
    let missing = http().get(s.url("/api/v1/me")).send().await.expect("me");
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing.json::<Value>().await.expect("json")["errcode"],
        "M_MISSING_TOKEN"
    );

    // Idle lifetime (2 s): a session in use lives on past it…
    let token = s.login(&key).await;
    let used_from = std::time::Instant::now();
    while used_from.elapsed() < Duration::from_millis(4500) {
        assert_eq!(
            s.me(&token).await.0,
            200,
            "a session used every 500 ms stays alive"
        );
        let next = used_from.elapsed() + Duration::from_millis(500);
        wait_until("500 ms pass", Duration::from_secs(2), || async {
            (used_from.elapsed() >= next).then_some(())
        })
        .await;
    }

    // …and a session left alone ends.
    let token = s.login(&key).await;
    assert_eq!(s.me(&token).await.0, 200);
    let idle_from = std::time::Instant::now();
    wait_until(
        "the idle lifetime has passed",
        Duration::from_secs(5),
        || async { (idle_from.elapsed() > Duration::from_millis(2100)).then_some(()) },
    )
    .await;
    assert_eq!(s.me(&token).await.0, 401, "idle too long");

    // The OpenAPI document describes these endpoints.
    let doc: Value = http()
        .get(s.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    for path in [
        "/api/v1/auth/challenge",
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/me",
        "/api/v1/me/display_name",
        "/api/v1/users",
        "/api/v1/rooms",
        "/api/v1/rooms/{room_id}/join",
        "/api/v1/rooms/{room_id}/leave",
        "/api/v1/rooms/{room_id}/invite",
        "/api/v1/rooms/{room_id}/messages",
        "/api/v1/rooms/{room_id}/send/{txn_id}",
        "/api/v1/events",
        "/api/v1/openapi.json",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }

    // Oversized and malformed bodies.
    let big = "x".repeat(70 * 1024);
    let (status, body) = s
        .post("/api/v1/auth/challenge", &json!({"public_key": big}))
        .await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("M_TOO_LARGE"))
    );
    let (status, body) = s.post("/api/v1/auth/challenge", &json!({"key": "x"})).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_BAD_JSON"))
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("public_key"),
        "{body}"
    );
    s.finish().await;

    // Absolute lifetime (2 s): a session in use ends anyway.
    let s = setup(backends, |settings| {
        settings.auth.session_idle_secs = 60;
        settings.auth.session_max_secs = 2;
    })
    .await;
    let (_, key) = s.generate(&[]);
    let token = s.login(&key).await;
    let started = std::time::Instant::now();
    wait_until(
        "the session reaches its absolute end",
        Duration::from_secs(10),
        || async {
            let (status, _) = s.me(&token).await;
            (status == 401).then_some(())
        },
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "ended by age, not earlier"
    );
    s.finish().await;
}

/// 7. Rate limits answer 429 with Retry-After; in Redis mode two daemons share them.
async fn rate_limits_answer_429_and_are_shared_in_redis_mode(backends: Backends) {
    let limit = chatsender::config::RateLimit {
        max: 3,
        window_secs: 60,
    };
    let s = setup(backends, |settings| {
        settings.auth.rate_limits.challenge_per_key = limit
    })
    .await;
    let (_, key) = s.generate(&[]);
    let other = if backends.cache == CacheKind::Redis {
        // A second daemon on the same database and Redis.
        let slot = Slot::lease().await;
        let mut settings = daemon_settings(&slot, &s.provisioned);
        settings.auth.rate_limits.challenge_per_key = limit;
        Some((Daemon::start_ready(settings).await, slot))
    } else {
        None
    };
    let bases: Vec<String> = match &other {
        Some((d, _)) => vec![s.daemon.base_url.clone(), d.base_url.clone()],
        None => vec![s.daemon.base_url.clone()],
    };
    for i in 0..3 {
        let base = &bases[i % bases.len()];
        let r = http()
            .post(format!("{base}/api/v1/auth/challenge"))
            .json(&json!({"public_key": public_b64(&key)}))
            .send()
            .await
            .expect("challenge");
        assert_eq!(r.status(), 200, "request {i} is within the limit");
    }
    for base in &bases {
        let r = http()
            .post(format!("{base}/api/v1/auth/challenge"))
            .json(&json!({"public_key": public_b64(&key)}))
            .send()
            .await
            .expect("challenge");
        assert_eq!(r.status(), 429, "{base} knows the limit is reached");
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .expect("header")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED");
        assert!(
            body["retry_after_ms"]
                .as_u64()
                .is_some_and(|ms| ms <= 60_000)
        );
    }
    // Another key is not limited.
    let (_, fresh) = s.generate(&[]);
    assert_eq!(s.challenge(&public_b64(&fresh)).await.0, 200);
    if let Some((daemon, _slot)) = other {
        daemon.stop().await;
    }
    s.finish().await;
}
