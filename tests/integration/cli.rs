//! The command line: config validation and the registration file.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_chatsender");

const VALID: &str = "homeserver:\n  url: http://127.0.0.1:8008\n  server_name: localhost\n\
appservice:\n  address: http://127.0.0.1:8000\n  as_token: \"\"   # filled in by `chatsender registration`\n  hs_token: \"\"\n";

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("CHATSENDER_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run chatsender")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// 7. An unknown key or a bad URL stops start-up with a message naming it.
#[test]
fn bad_config_fails_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "unknown.yaml",
            format!("{VALID}  colour: blue\n"),
            "appservice",
            "colour",
        ),
        (
            "bad-url.yaml",
            VALID.replace("http://127.0.0.1:8008", "127.0.0.1 8008"),
            "homeserver.url",
            "not a URL",
        ),
        (
            "bad-db.yaml",
            format!("{VALID}database:\n  url: postgres://db/x\n"),
            "database.url",
            "postgres://db/x",
        ),
        (
            "typo-section.yaml",
            format!("{VALID}databse:\n  url: sqlite://x.db\n"),
            "databse",
            "unknown field",
        ),
    ];
    for (name, text, path, detail) in cases {
        std::fs::write(dir.path().join(name), text).expect("write");
        for command in ["check-config", "serve"] {
            let out = run(dir.path(), &["-c", name, command], &[]);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{command} {name}: {}",
                stderr(&out)
            );
            let err = stderr(&out);
            assert!(
                err.contains(path) && err.contains(detail),
                "{command} {name} should name {path}: {err}"
            );
        }
    }

    // An environment override is checked like the file.
    std::fs::write(dir.path().join("ok.yaml"), VALID).expect("write");
    let out = run(
        dir.path(),
        &["-c", "ok.yaml", "check-config"],
        &[("CHATSENDER__REDIS__URL", "http://x")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("redis.url"), "{}", stderr(&out));

    // Numbers come from the environment as text and are parsed where expected.
    let out = run(
        dir.path(),
        &["-c", "ok.yaml", "check-config"],
        &[("CHATSENDER__DATABASE__MAX_CONNECTIONS", "lots")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("database.max_connections"),
        "{}",
        stderr(&out)
    );
    let tokens = [
        ("CHATSENDER__DATABASE__MAX_CONNECTIONS", "3"),
        ("CHATSENDER__APPSERVICE__AS_TOKEN", "0123"),
        ("CHATSENDER__APPSERVICE__HS_TOKEN", "1e5"),
    ];
    let out = run(
        dir.path(),
        &["-c", "ok.yaml", "registration", "-o", "env-reg.yaml"],
        &tokens,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let reg: serde_json::Value = yaml_serde::from_str(
        &std::fs::read_to_string(dir.path().join("env-reg.yaml")).expect("reg"),
    )
    .expect("yaml");
    assert_eq!(
        (reg["as_token"].as_str(), reg["hs_token"].as_str()),
        (Some("0123"), Some("1e5")),
        "tokens kept as written"
    );

    // An override that empties a token the file sets cannot be registered.
    let out = run(
        dir.path(),
        &["-c", "ok.yaml", "registration", "-o", "x.yaml"],
        &[("CHATSENDER__APPSERVICE__AS_TOKEN", "")],
    );
    if out.status.success() {
        let reg: serde_json::Value =
            yaml_serde::from_str(&std::fs::read_to_string(dir.path().join("x.yaml")).expect("reg"))
                .expect("yaml");
        panic!(
            "registered as_token {} that the config does not hold",
            reg["as_token"]
        );
    }
    assert!(
        stderr(&out).contains("could not fill in the appservice tokens"),
        "{}",
        stderr(&out)
    );

    // A missing file says which, and how to make one.
    let out = run(dir.path(), &["check-config"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("config.yaml: no such config file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn registration_fills_empty_tokens_once_and_check_config_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.yaml"), VALID).expect("write");

    let before = run(dir.path(), &["check-config"], &[]);
    assert_eq!(
        before.status.code(),
        Some(1),
        "empty tokens cannot be served"
    );
    assert!(
        stderr(&before).contains("appservice.as_token"),
        "{}",
        stderr(&before)
    );

    let out = run(dir.path(), &["registration", "-o", "reg.yaml"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = std::fs::read_to_string(dir.path().join("config.yaml")).expect("config");
    assert!(
        config.contains("# filled in by `chatsender registration`"),
        "comments kept: {config}"
    );
    let registration: serde_json::Value =
        yaml_serde::from_str(&std::fs::read_to_string(dir.path().join("reg.yaml")).expect("reg"))
            .expect("yaml");
    let as_token = registration["as_token"]
        .as_str()
        .expect("as_token")
        .to_owned();
    let hs_token = registration["hs_token"]
        .as_str()
        .expect("hs_token")
        .to_owned();
    assert_eq!(as_token.len(), 64);
    assert_ne!(as_token, hs_token);
    assert!(config.contains(&as_token) && config.contains(&hs_token));
    assert_eq!(registration["url"], "http://127.0.0.1:8000");
    assert_eq!(registration["sender_localpart"], "chatsender_bot");
    assert_eq!(registration["rate_limited"], false);
    assert_eq!(registration["receive_ephemeral"], true);
    assert_eq!(registration["namespaces"]["users"][0]["exclusive"], true);
    assert_eq!(
        registration["namespaces"]["users"][0]["regex"],
        "@chatsender_.*:localhost$"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("reg.yaml"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the registration holds secrets");
    }

    // A second run keeps the tokens.
    let again = run(dir.path(), &["registration", "-o", "reg2.yaml"], &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    let second: serde_json::Value =
        yaml_serde::from_str(&std::fs::read_to_string(dir.path().join("reg2.yaml")).expect("reg"))
            .expect("yaml");
    assert_eq!(second["as_token"], as_token.as_str());
    assert_eq!(second["hs_token"], hs_token.as_str());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("config.yaml")).expect("config"),
        config
    );

    let ok = run(dir.path(), &["check-config"], &[]);
    assert!(ok.status.success(), "{}", stderr(&ok));

    // A layout a line edit cannot change safely is refused, and the file left alone.
    let flow = "homeserver: {url: 'http://h', server_name: localhost}\nappservice: {address: 'http://a'}\n";
    std::fs::write(dir.path().join("flow.yaml"), flow).expect("write");
    let out = run(
        dir.path(),
        &["-c", "flow.yaml", "registration", "-o", "reg3.yaml"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("appservice.as_token is empty"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("flow.yaml")).expect("flow"),
        flow
    );
    assert!(!dir.path().join("reg3.yaml").exists());
}
