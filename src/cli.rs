//! The `chatsender` command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use crate::appservice::registration;
use crate::config::{self, Settings};
use crate::keys::PublicKey;
use crate::keys::admin::KeyAdmin;
use crate::startup::{Application, shutdown_signal};
use crate::store::KeyRecord;
use crate::telemetry;

/// Private, self-hosted messaging on Matrix with Ed25519 key login.
#[derive(Debug, Parser)]
#[command(name = "chatsender", version)]
pub struct Cli {
    /// Config file [default: $CHATSENDER_CONFIG, else ./config.yaml]
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve,
    /// Fill empty appservice tokens into the config and write Synapse's registration file.
    Registration {
        /// Where to write the registration file.
        #[arg(short, long, value_name = "FILE", default_value = "registration.yaml")]
        output: PathBuf,
    },
    /// Validate the config file and exit.
    CheckConfig,
    /// Manage login keys.
    #[command(subcommand)]
    Keygen(Keygen),
}

/// `chatsender keygen …`: machine output on stdout, everything else on stderr.
#[derive(Debug, Subcommand)]
pub enum Keygen {
    /// Make N key pairs, register the public keys, write the private keys as PEM files.
    Generate {
        /// How many key pairs.
        #[arg(default_value_t = 1)]
        n: u64,
        /// Give all N keys to the one user @{user_prefix}NAME (one person, several
        /// devices); without it each key gets its own user.
        #[arg(long)]
        name: Option<String>,
        /// Where to write `<key_id>.pem` files (mode 0600).
        #[arg(long, value_name = "DIR", default_value = "keys")]
        out: PathBuf,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Register a public key made elsewhere (base64 of the 32 bytes, or a PEM file).
    Add {
        /// Standard base64 (padded or not), or the path of a PEM `PUBLIC KEY` file.
        public_key: String,
        /// Give the key to the user @{user_prefix}NAME instead of one of its own.
        #[arg(long)]
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List keys with their users, last login, active sessions and status.
    List {
        /// Include revoked keys.
        #[arg(long)]
        all: bool,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key and end its sessions at once.
    Revoke {
        /// At least 8 hex characters of the key's fingerprint.
        prefix: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

impl Cli {
    /// Runs the chosen command.
    pub async fn run(self) -> anyhow::Result<()> {
        let path = config::config_path(self.config);
        match self.command {
            Command::Serve => {
                let settings = Settings::load(&path)?;
                telemetry::init_logs(&settings.log);
                let app = Application::build(settings).await?;
                app.run_until_stopped(shutdown_signal()).await
            }
            Command::Registration { output } => {
                let settings = registration::write(&path, &output)?;
                eprintln!(
                    "{}: registration for appservice `{}` written; list it in Synapse's app_service_config_files",
                    output.display(),
                    settings.appservice.id
                );
                Ok(())
            }
            Command::Keygen(keygen) => {
                let settings = Settings::load(&path)?;
                keygen.run(&settings).await
            }
            Command::CheckConfig => {
                let settings = Settings::load(&path)?;
                settings
                    .require_tokens()
                    .with_context(|| path.display().to_string())?;
                eprintln!("{}: OK", path.display());
                Ok(())
            }
        }
    }
}

impl Keygen {
    async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let admin = KeyAdmin::connect(settings).await?;
        match self {
            Keygen::Generate { n, name, out, json } => {
                let bar = if n >= 100 {
                    ProgressBar::new(n)
                } else {
                    ProgressBar::hidden()
                };
                bar.set_style(
                    ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} keys ({per_sec}, {eta} left)",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                // Without a terminal (logs, CI) the bar is hidden: say how far it got
                // every tenth instead.
                let lines = n >= 100 && !std::io::stderr().is_terminal();
                let progress = |done: u64| {
                    bar.set_position(done);
                    if lines && (done * 10 / n != (done - 1) * 10 / n) {
                        eprintln!("generated {done}/{n} keys");
                    }
                };
                let reports = admin.generate(n, name.as_deref(), &out, progress).await;
                bar.finish_and_clear();
                let reports = reports?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&reports)?);
                } else {
                    for r in &reports {
                        let file = r
                            .private_key_file
                            .as_deref()
                            .unwrap_or(Path::new(""))
                            .display();
                        println!("{}  {}  {file}", r.key_id, r.user_id);
                    }
                }
                eprintln!(
                    "generated {} key(s); private keys in {} (give each to its holder, then delete it)",
                    reports.len(),
                    out.display()
                );
                Ok(())
            }
            Keygen::Add {
                public_key,
                name,
                json,
            } => {
                let key = parse_public_key(&public_key)?;
                let report = admin.add(&key, name.as_deref()).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    println!("{}  {}", report.key_id, report.user_id);
                }
                eprintln!("registered key {} for {}", report.key_id, report.user_id);
                Ok(())
            }
            Keygen::List { all, json } => {
                let keys = admin.list(all).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&keys)?);
                    return Ok(());
                }
                println!(
                    "{:<16}  {:<40}  {:<16}  {:<20}  {:<20}  {:>8}  STATUS",
                    "KEY_ID", "USER", "NAME", "CREATED", "LAST_LOGIN", "SESSIONS"
                );
                for k in &keys {
                    println!(
                        "{:<16}  {:<40}  {:<16}  {:<20}  {:<20}  {:>8}  {}",
                        k.key_id,
                        k.user_id,
                        k.name.as_deref().unwrap_or("-"),
                        k.created,
                        k.last_login.as_deref().unwrap_or("never"),
                        k.active_sessions,
                        k.status
                    );
                }
                Ok(())
            }
            Keygen::Revoke { prefix, yes } => {
                let key = admin.find(&prefix).await?;
                if key.revoked_at.is_none() && !yes && !confirm(&key)? {
                    anyhow::bail!("not revoked");
                }
                let ended = admin.revoke(&key).await?;
                println!(
                    "revoked {} ({}): {ended} session(s) ended",
                    key.key_id, key.user_id
                );
                Ok(())
            }
        }
    }
}

/// Base64 of the raw key, or the path of a PEM public key file.
fn parse_public_key(arg: &str) -> anyhow::Result<PublicKey> {
    let path = Path::new(arg);
    if path.is_file() {
        let pem = std::fs::read_to_string(path).with_context(|| format!("cannot read {arg}"))?;
        return PublicKey::from_pem(&pem).with_context(|| format!("{arg}: refused"));
    }
    PublicKey::from_base64(arg).with_context(|| format!("public key `{arg}` refused"))
}

fn confirm(key: &KeyRecord) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "not revoking {} without confirmation: pass --yes",
        key.key_id
    );
    eprint!(
        "Revoke key {} of {}? Its sessions end at once. [y/N] ",
        key.key_id, key.user_id
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
