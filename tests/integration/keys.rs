//! Keys from the operator's side: `keygen generate|add|list`, OpenSSL's keys, and
//! logging in with them.

use std::path::Path;
use std::process::{Command, Output};

use chatsender::keys::{PublicKey, encode_base64};
use chatsender::store::{AuditEntry, AuditEvent, NewKey};
use ruma::OwnedUserId;
use serde_json::{Value, json};

use crate::harness::{
    Backends, Provisioned, TestApp, env, http, stderr, stdout, unique, urlencode,
};
use crate::{for_each_backend, on_sqlite};

for_each_backend!(
    generated_and_openssl_keys_log_in,
    a_batch_of_logins_leaves_each_key_its_latest
);
on_sqlite!(keygen_reports_progress_on_long_runs);

fn openssl(args: &[&str]) -> Output {
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
    let s = TestApp::spawn(backends).await;
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
    assert_eq!(lines[1], format!("origin: {}", s.origin()));
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
    let log = s.daemon().stores.audit.audit_log(50).await.expect("audit");
    let token = session["access_token"].as_str().expect("token");
    assert!(log.iter().any(|e| e.event == AuditEvent::KeyCreated
        && e.key_id.as_ref() == added["key_id"].as_str().map(str::to_owned).as_ref()));
    assert!(
        log.iter()
            .filter(|e| e.event == AuditEvent::LoginSuccess)
            .count()
            >= 3
    );
    assert!(!format!("{log:?}").contains(token));
}

fn name_id(v: &Value) -> String {
    v["user_id"].as_str().expect("user_id").to_owned()
}

/// `keygen generate` of many keys reports its progress (as lines, without a terminal).
async fn keygen_reports_progress_on_long_runs(backends: Backends) {
    let s = TestApp::spawn(backends).await;
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
}

/// The audit writer commits the logins of concurrent clients together: each key keeps
/// its latest login, whatever the order in the batch, and keys not in it keep theirs.
async fn a_batch_of_logins_leaves_each_key_its_latest(backends: Backends) {
    let provisioned = Provisioned::new(backends).await;
    let stores = provisioned.stores().await;
    let keys: Vec<NewKey> = (0u8..3)
        .map(|n| {
            let user = format!("@{}:localhost", unique("cs_k"));
            NewKey {
                key_id: unique(""),
                fingerprint: format!("{:0>64}", unique(&format!("{n:02x}"))),
                public_key: [n; 32],
                user_id: OwnedUserId::try_from(user).expect("user id"),
                name: None,
                display_name: None,
            }
        })
        .collect();
    stores.keys.insert_keys(&keys).await.expect("keys");
    let login = |key: &NewKey| AuditEntry {
        event: AuditEvent::LoginSuccess,
        key_id: Some(key.key_id.clone()),
        user_id: Some(key.user_id.to_string()),
        ip: Some("127.0.0.1".into()),
        detail: None,
    };
    let (a, b) = (&keys[0], &keys[1]);
    let entries = [login(a), login(b), login(a), login(a)];
    let logins = [
        (a.key_id.clone(), 20),
        (b.key_id.clone(), 7),
        (a.key_id.clone(), 30),
        (a.key_id.clone(), 10),
    ];
    stores
        .audit
        .append(&entries, &logins)
        .await
        .expect("append");
    let mut last = Vec::new();
    for key in &keys {
        let record = stores.keys.key_by_fingerprint(&key.fingerprint).await;
        last.push(record.expect("read").expect("the key").last_login_at);
    }
    assert_eq!(last, [Some(30), Some(7), None]);
    let log = stores.audit.audit_log(10).await.expect("audit");
    assert_eq!(log[..4].iter().rev().cloned().collect::<Vec<_>>(), entries);
}
