//! The repository's nginx.conf for real: Debian's nginx runs it (placeholders filled
//! in, a certificate made for the run) in front of two daemons in Redis mode on
//! MariaDB and the shared Synapse, which pushes through nginx's appservice listener.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::json;

use crate::clients::{User, public_b64, room_of_two, sign_challenge};
use crate::harness::{Daemon, EventStream, TestApp, env, free_port, http, unique, wait_until};
use crate::provision::{Backends, CacheKind, StoreKind, tool_available};

/// What the placeholders of nginx.conf become.
struct Placeholders<'a> {
    https: u16,
    http: u16,
    web_root: &'a Path,
    daemons: &'a [u16],
    synapse: &'a str,
    appservice: &'a str,
}

/// nginx running the repository's nginx.conf, in the foreground; stopped by its PID
/// when dropped.
struct Nginx {
    child: Child,
    origin: String,
    http_port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start(p: Placeholders<'_>) -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(
            made.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let origin = format!("https://localhost:{}", p.https);
        let daemons: String = p
            .daemons
            .iter()
            .map(|port| format!("server 127.0.0.1:{port}; "))
            .collect();
        let template = std::fs::read_to_string(repo().join("nginx.conf")).expect("nginx.conf");
        let mut conf = template;
        for (name, value) in [
            ("SERVER_NAME", "localhost".to_owned()),
            ("PUBLIC_ORIGIN", origin.clone()),
            ("HTTP_PORT", format!("127.0.0.1:{}", p.http)),
            ("HTTPS_PORT", format!("127.0.0.1:{}", p.https)),
            ("TLS_CERTIFICATE", cert.display().to_string()),
            ("TLS_CERTIFICATE_KEY", key.display().to_string()),
            ("WEB_ROOT", p.web_root.display().to_string()),
            ("CHATSENDER_DAEMONS", daemons),
            ("SYNAPSE_ADDRESS", p.synapse.to_owned()),
            ("APPSERVICE_LISTEN", p.appservice.to_owned()),
        ] {
            conf = conf.replace(&format!("${{{name}}}"), &value);
        }
        let left: Vec<&str> = conf
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && l.contains("${"))
            .collect();
        assert!(
            left.is_empty(),
            "placeholders nginx.conf's header does not list: {left:?}"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).expect("write nginx.conf");
        let d = dir.path().display();
        let child = Command::new(nginx_binary())
            .arg("-c")
            .arg(&path)
            .arg("-g")
            .arg(format!(
                "daemon off; pid {d}/nginx.pid; error_log {d}/error.log;"
            ))
            .stdin(Stdio::null())
            .spawn()
            .expect("start nginx");
        let nginx = Nginx {
            child,
            origin,
            http_port: p.http,
            dir,
        };
        let https = p.https;
        crate::harness::block_on(wait_until(
            "nginx listens",
            Duration::from_secs(10),
            || async {
                std::net::TcpStream::connect(("127.0.0.1", https))
                    .ok()
                    .map(|_| ())
            },
        ));
        nginx
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn nginx_binary() -> String {
    std::env::var("CHATSENDER_TEST_NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".into())
}

/// A login through `base` (nginx) with `key`.
async fn login_through(base: &str, key: &ed25519_dalek::SigningKey) -> String {
    let challenge: serde_json::Value = http()
        .post(format!("{base}/api/v1/auth/challenge"))
        .json(&json!({"public_key": public_b64(key)}))
        .send()
        .await
        .expect("challenge")
        .json()
        .await
        .expect("challenge JSON");
    let session: serde_json::Value = http()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({
            "challenge_id": challenge["challenge_id"],
            "signature": sign_challenge(key, &challenge),
        }))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login JSON");
    session["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("a session through nginx: {session}"))
        .to_owned()
}

const SECURITY_HEADERS: [&str; 6] = [
    "content-security-policy",
    "x-content-type-options",
    "referrer-policy",
    "x-frame-options",
    "cross-origin-opener-policy",
    "cache-control",
];

fn security_headers(headers: &HeaderMap) -> Vec<(&'static str, String)> {
    SECURITY_HEADERS
        .iter()
        .map(|name| {
            let value = headers
                .get(*name)
                .map(|v| v.to_str().unwrap_or("?").to_owned());
            (*name, value.unwrap_or_else(|| format!("(no {name})")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "integration test: needs Synapse, MariaDB, Redis and nginx; run ./scripts/test"]
async fn nginx_conf_serves_the_client_and_fails_over_between_two_daemons() {
    let backends = Backends {
        store: StoreKind::Mariadb,
        cache: CacheKind::Redis,
    };
    if !backends.available() || !tool_available("CHATSENDER_TEST_SKIP_NGINX", "nginx") {
        return;
    }
    let web_root = repo().join("web/dist");
    assert!(
        web_root.join("index.html").exists(),
        "{} is missing: build the web client (cd web && npm run build; ./scripts/test does)",
        web_root.display()
    );
    let (https, http_port, port_a, port_b) = (free_port(), free_port(), free_port(), free_port());
    let origin = format!("https://localhost:{https}");
    let static_dir = web_root.clone();
    let public = origin.clone();
    let s = TestApp::prepare(backends, move |settings| {
        settings.auth.origin = public.clone();
        settings.auth.trust_forwarded_for = true;
        settings.web.static_dir = Some(static_dir.clone());
    })
    .await;
    // Synapse pushes to the slot's address: there nginx's appservice listener takes it.
    let appservice = s.slot.settings.listen.to_string();
    let synapse = env().synapse_url.trim_start_matches("http://").to_owned();
    let nginx = Nginx::start(Placeholders {
        https,
        http: http_port,
        web_root: &web_root,
        daemons: &[port_a, port_b],
        synapse: &synapse,
        appservice: &appservice,
    });
    let daemon_on = |port: u16| {
        let mut settings = s.settings();
        settings.listen = ([127, 0, 0, 1], port).into();
        settings
    };
    let a = Daemon::start_ready(daemon_on(port_a)).await;
    let b = Daemon::start_ready(daemon_on(port_b)).await;

    // The web client, with the headers the daemon sends when it serves it itself.
    let page = http().get(nginx.url("/")).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    let own = http()
        .get(format!("{}/", a.base_url))
        .send()
        .await
        .expect("daemon /");
    assert_eq!(
        security_headers(page.headers()),
        security_headers(own.headers())
    );
    assert!(page.headers().contains_key("strict-transport-security"));
    let html = page.text().await.expect("index.html");
    let script = html
        .split('"')
        .find(|part| part.starts_with("/_astro/") && part.ends_with(".js"))
        .unwrap_or_else(|| panic!("a script in index.html: {html}"))
        .to_owned();
    let asset = http().get(nginx.url(&script)).send().await.expect("asset");
    assert_eq!(asset.status(), 200, "{script}");
    assert_eq!(
        asset.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(
        asset.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .contains("javascript"),
        "{:?}",
        asset.headers()["content-type"]
    );
    let route = http()
        .get(nginx.url("/conversations"))
        .send()
        .await
        .expect("a route");
    assert_eq!(route.status(), 200, "a route of the app gets the app");
    assert_eq!(route.text().await.expect("html"), html);
    let missing = http()
        .get(nginx.url("/missing.js"))
        .send()
        .await
        .expect("missing");
    assert_eq!(missing.status(), 404, "a missing file is not the app");
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!(
            "http://127.0.0.1:{}/conversations",
            nginx.http_port
        ))
        .send()
        .await
        .expect("plain http");
    assert_eq!(plain.status(), 301);
    assert_eq!(
        plain.headers()["location"],
        format!("{origin}/conversations").as_str()
    );
    let versions = http()
        .get(nginx.url("/_matrix/client/versions"))
        .send()
        .await
        .expect("Synapse");
    assert_eq!(versions.status(), 200, "/_matrix/ reaches Synapse");

    // Sign in, and talk, through nginx.
    let user = |name: &str| {
        let (key_json, key) = s.generate(&["--name", &unique(name)]);
        (key_json["user_id"].as_str().expect("user").to_owned(), key)
    };
    let ((alice_id, alice_key), (bob_id, bob_key)) = (user("alice"), user("bob"));
    let alice = User {
        base: origin.clone(),
        token: login_through(&origin, &alice_key).await,
        user_id: alice_id,
    };
    let bob = User {
        base: origin.clone(),
        token: login_through(&origin, &bob_key).await,
        user_id: bob_id,
    };
    let me = bob.ok(Method::GET, "/me", None).await;
    assert_eq!(me["user_id"], bob.user_id.as_str());

    // The live stream through nginx: unbuffered and uncompressed.
    let raw = http()
        .get(nginx.url("/api/v1/events"))
        .bearer_auth(&bob.token)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("events");
    assert_eq!(raw.headers()["content-type"], "text/event-stream");
    assert!(
        !raw.headers().contains_key("content-encoding"),
        "{:?}",
        raw.headers()
    );
    drop(raw);
    let mut stream = bob.events().await;
    let room = room_of_two(&alice, &bob, &mut stream).await;
    let first = alice.send(&room, "before").await;
    stream
        .wait_for("the first message, while the response stays open", |e| {
            e.data["event_id"] == first.as_str()
        })
        .await;

    // Stop the daemon that holds Bob's stream; he reconnects through nginx with
    // Last-Event-ID and gets what was sent meanwhile, once.
    let on_a = wait_until(
        "Bob's stream is on one daemon",
        Duration::from_secs(10),
        || async {
            match (a.live.listening(), b.live.listening()) {
                (1, 0) => Some(true),
                (0, 1) => Some(false),
                _ => None,
            }
        },
    )
    .await;
    let (doomed, survivor) = if on_a { (a, b) } else { (b, a) };
    doomed.stop().await;
    let missed = [alice.send(&room, "m1").await, alice.send(&room, "m2").await];
    while let Some(event) = stream.next(Duration::from_secs(30)).await {
        assert_ne!(
            event.event, "message",
            "the stopped daemon delivered {event:?}"
        );
    }
    let cursor = stream.last_id.clone().expect("an event id");
    let mut resumed = EventStream::connect(&origin, &bob.token, Some(&cursor)).await;
    let mut got = Vec::new();
    while got.len() < missed.len() {
        let event = resumed
            .next(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| {
                panic!(
                    "the missed messages after reconnecting; got {got:?}\n{}",
                    nginx.error_log()
                )
            });
        if event.event == "message" {
            got.push(event.data["event_id"].as_str().expect("id").to_owned());
        }
    }
    assert_eq!(got, missed, "every missed message once, in order");
    let after = alice.send(&room, "after").await;
    let (_, between) = resumed
        .wait_for("a message sent after the reconnect", |e| {
            e.data["event_id"] == after.as_str()
        })
        .await;
    assert!(
        between.iter().all(|e| e.event != "message"),
        "nothing repeated: {between:?}"
    );
    assert_eq!(survivor.live.listening(), 1);
    drop(resumed);
    survivor.stop().await;
    drop(nginx);
}
