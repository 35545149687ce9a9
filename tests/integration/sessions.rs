//! Sessions: revocation ends them at once, logout and both lifetimes end them, the
//! cookie's rules, and rate limits (shared by daemons in Redis mode).

use std::process::Command;
use std::time::Duration;

use chatsender::store::AuditEvent;
use ed25519_dalek::SigningKey;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::clients::EventStream;
use crate::for_each_backend;
use crate::harness::{
    Backends, CacheKind, TestApp, http, public_b64, sign_challenge, stderr, stdout, unique,
    wait_until,
};
use crate::login::refused;

for_each_backend!(
    revocation_ends_sessions_at_once,
    sessions_end_by_logout_idle_and_absolute_lifetime,
    rate_limits_answer_429_and_are_shared_in_redis_mode,
);

async fn revoke(s: &TestApp, fingerprint: &str) -> String {
    let out = s.keygen(&["revoke", &fingerprint[..12], "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// 5. Revocation before a challenge, between challenge and login, during a session,
///    with the daemon down, and racing a login: no session of the key survives.
async fn revocation_ends_sessions_at_once(backends: Backends) {
    let mut s = TestApp::spawn(backends).await;
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

    // During a session (two of them): the next request is refused, and their open
    // event streams end at the daemon's next check of them (every 5 s) while another
    // key's stream stays open; revoking twice is harmless.
    let (k3, key3) = s.generate(&[]);
    let (t1, t2) = (s.login(&key3).await, s.login(&key3).await);
    assert_eq!(s.me(&t1).await.0, 200);
    let (_, bystander) = s.generate(&[]);
    let bystander = s.login(&bystander).await;
    let base = s.daemon().base_url.clone();
    let mut streams = [
        EventStream::connect(&base, &t1, None).await,
        EventStream::connect(&base, &t2, None).await,
    ];
    let mut unrelated = EventStream::connect(&base, &bystander, None).await;
    let said = revoke(&s, k3["fingerprint"].as_str().expect("fp")).await;
    assert!(said.contains("2 session(s) ended"), "{said}");
    for t in [&t1, &t2] {
        let (status, body) = s.me(t).await;
        assert_eq!(status, 401);
        assert_eq!(body["errcode"], "M_UNKNOWN_TOKEN");
    }
    for stream in &mut streams {
        assert!(
            stream.ends_within(Duration::from_secs(12)).await,
            "a revoked key's open stream ends"
        );
    }
    assert!(
        !unrelated.ends_within(Duration::from_secs(1)).await,
        "another key's stream stays open"
    );
    let again = revoke(&s, k3["fingerprint"].as_str().expect("fp")).await;
    assert!(again.contains("0 session(s) ended"), "{again}");

    // With the daemon down: the revocation holds when it starts again.
    let (k4, key4) = s.generate(&[]);
    let t4 = s.login(&key4).await;
    s.stop().await;
    let out = s.keygen(&["revoke", k4["fingerprint"].as_str().expect("fp"), "--yes"]);
    assert!(
        stdout(&out).contains("1 session(s) ended"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    s.start().await;
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
    s.daemon()
        .stores
        .keys
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
    let revoked_log = s.daemon().stores.audit.audit_log(100).await.expect("audit");
    assert!(
        revoked_log
            .iter()
            .any(|e| e.event == AuditEvent::KeyRevoked
                && e.key_id.as_deref() == k3["key_id"].as_str())
    );
}

/// 6. Logout, idle and absolute lifetimes end sessions; the cookie is HttpOnly and
///    SameSite=Strict; a cookie-authenticated change from another origin is refused;
///    bodies over 64 KiB get 413.
async fn sessions_end_by_logout_idle_and_absolute_lifetime(backends: Backends) {
    let s = TestApp::spawn_with(backends, |settings| {
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
        .header("origin", s.origin())
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

    // Bearer logout: the session's open stream ends with it, without waiting for the
    // daemon's check of open sessions.
    let token = s.login(&key).await;
    let mut stream = EventStream::connect(&s.daemon().base_url, &token, None).await;
    let r = http()
        .post(s.url("/api/v1/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 200);
    assert_eq!(s.me(&token).await.0, 401);
    assert!(
        stream.ends_within(Duration::from_secs(2)).await,
        "logging out ends the session's open stream at once"
    );
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
        "/api/v1/rooms/{room_id}/read",
        "/api/v1/rooms/{room_id}/typing",
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

    // Absolute lifetime (2 s): a session in use ends anyway.
    let s = TestApp::spawn_with(backends, |settings| {
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
}

/// 7. Rate limits answer 429 with Retry-After; in Redis mode two daemons share them.
async fn rate_limits_answer_429_and_are_shared_in_redis_mode(backends: Backends) {
    let limit = chatsender::config::RateLimit {
        max: 3,
        window_secs: 60,
    };
    let s = TestApp::spawn_with(backends, move |settings| {
        settings.auth.rate_limits.challenge_per_key = limit
    })
    .await;
    let (_, key) = s.generate(&[]);
    // In Redis mode, a second daemon on the same database and Redis.
    let other = match backends.cache {
        CacheKind::Redis => Some(s.another_daemon().await),
        CacheKind::Embedded => None,
    };
    let bases: Vec<String> = match &other {
        Some(d) => vec![s.daemon().base_url.clone(), d.base_url.clone()],
        None => vec![s.daemon().base_url.clone()],
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
    if let Some(daemon) = other {
        daemon.stop().await;
    }
}
