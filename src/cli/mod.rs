//! The `chatsender` command line: `serve`, `registration`, `check-config`, `keygen`.

mod keygen;
pub mod registration;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{self, Settings};
use crate::startup::{Application, shutdown_signal};
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
