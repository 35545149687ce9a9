//! The deployment files: synapse/init-synapse.sh's production config on this
//! machine's PostgreSQL, and the README's configuration reference against
//! config.example.yaml.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::harness::{OwnSynapse, TestApp, env, free_port, run_id, stderr, stdout, unique};
use crate::provision::{Backends, tool_available};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn postgres_url() -> url::Url {
    let url = std::env::var("CHATSENDER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into());
    url::Url::parse(&url).expect("CHATSENDER_TEST_POSTGRES_URL")
}

/// Runs one statement with psql on `database`; returns its unaligned output.
fn psql(database: &str, sql: &str) -> String {
    let mut url = postgres_url();
    url.set_path(database);
    let out = Command::new("psql")
        .arg(url.as_str())
        .args(["-v", "ON_ERROR_STOP=1", "-tAc", sql])
        .output()
        .expect("run psql");
    assert!(out.status.success(), "psql {sql}: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

/// A PostgreSQL database made for Synapse, dropped when this goes.
struct SynapseDatabase(String);

impl SynapseDatabase {
    fn create() -> Self {
        let name = unique(&format!("cs_test_{}_", run_id()));
        psql(
            "postgres",
            &format!(
                "CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' \
                 TEMPLATE template0"
            ),
        );
        Self(name)
    }
}

impl Drop for SynapseDatabase {
    fn drop(&mut self) {
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0),
        );
    }
}

/// `init-synapse.sh prod` writes a config for PostgreSQL that Synapse starts with, and
/// a daemon whose registration it wired in becomes ready and signs a user in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "integration test: needs Synapse and PostgreSQL; run ./scripts/test"]
async fn init_synapse_prod_runs_synapse_on_postgresql() {
    if !tool_available("CHATSENDER_TEST_SKIP_POSTGRES", "PostgreSQL") {
        return;
    }
    let database = SynapseDatabase::create();
    let port = free_port();
    let mut s = TestApp::prepare(Backends::SQLITE_EMBEDDED, move |settings| {
        settings.homeserver.url = format!("http://127.0.0.1:{port}").parse().expect("URL");
    })
    .await;
    let registration = s.slot.config_path.with_extension("registration.yaml");
    let dir = tempfile::tempdir().expect("tempdir");
    let pg = postgres_url();
    let written = Command::new(repo().join("synapse/init-synapse.sh"))
        .arg("prod")
        .arg("--dir")
        .arg(dir.path())
        .args(["--server-name", "localhost", "--port", &port.to_string()])
        .arg("--registration")
        .arg(&registration)
        .arg("--python")
        .arg(&env().synapse_python)
        .env("POSTGRES_HOST", pg.host_str().expect("host"))
        .env("POSTGRES_PORT", pg.port().unwrap_or(5432).to_string())
        .env("POSTGRES_DB", &database.0)
        .env("POSTGRES_USER", pg.username())
        .env(
            "POSTGRES_PASSWORD",
            pg.password().unwrap_or("unused-with-trust"),
        )
        .output()
        .expect("run init-synapse.sh");
    assert!(
        written.status.success(),
        "init-synapse.sh prod: {}",
        stderr(&written)
    );
    let config = std::fs::read_to_string(dir.path().join("homeserver.yaml")).expect("config");
    assert!(config.contains("name: psycopg2"), "{config}");
    assert!(
        config.contains(&registration.display().to_string()),
        "{config}"
    );

    let _synapse =
        OwnSynapse::start_with_config(dir.path(), port, &dir.path().join("homeserver.yaml"));
    s.start().await;
    let user = s.user("pg").await;
    assert_eq!(
        psql(
            &database.0,
            &format!("SELECT count(*) FROM users WHERE name = '{}'", user.user_id)
        ),
        "1",
        "Synapse keeps its users in PostgreSQL"
    );
    s.stop().await;
}

// --- The README's configuration reference ------------------------------------------

/// The dotted keys of a parsed YAML mapping; a rate limit (`{max, window_secs}`) is
/// one key.
fn keys_of(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let Some(map) = value.as_object() else {
        out.insert(prefix.to_owned());
        return;
    };
    let leaf: BTreeSet<&str> = map.keys().map(String::as_str).collect();
    if !prefix.is_empty() && leaf == BTreeSet::from(["max", "window_secs"]) {
        out.insert(prefix.to_owned());
        return;
    }
    for (key, child) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        keys_of(child, &path, out);
    }
}

/// The keys in the first column of the tables under "## Configuration reference".
fn documented_keys(readme: &str) -> BTreeSet<String> {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Configuration reference"))
        .expect("README.md has a \"## Configuration reference\" section");
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(key, _)| key.to_owned()))
        .collect()
}

#[test]
fn every_config_key_is_documented_in_the_readme_and_every_documented_key_exists() {
    let example = std::fs::read_to_string(repo().join("config.example.yaml")).expect("example");
    let parsed: Value = yaml_serde::from_str(&example).expect("config.example.yaml parses");
    let mut in_example = BTreeSet::new();
    keys_of(&parsed, "", &mut in_example);
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let documented = documented_keys(&readme);
    let undocumented: Vec<_> = in_example.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&in_example).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "in config.example.yaml but not in the README's reference: {undocumented:?}; \
         in the reference but not in config.example.yaml: {unknown:?}"
    );
    assert!(
        in_example.len() > 20,
        "the example has its keys: {in_example:?}"
    );
}

#[test]
fn the_key_reader_sees_nested_keys_and_rate_limits() {
    let value: Value = yaml_serde::from_str(
        "a: 1\nb: {c: x, d: {e: 2}}\nlimits: {login: {max: 1, window_secs: 2}}\n",
    )
    .expect("yaml");
    let mut keys = BTreeSet::new();
    keys_of(&value, "", &mut keys);
    let expected = ["a", "b.c", "b.d.e", "limits.login"].map(String::from);
    assert_eq!(keys, BTreeSet::from(expected));
    let readme = "x\n## Configuration reference\n| key | what |\n|---|---|\n| `a.b` | x |\n\
                  | `c` | y |\n## Next\n| `d` | z |\n";
    assert_eq!(
        documented_keys(readme),
        BTreeSet::from(["a.b", "c"].map(String::from))
    );
}
