//! The `chatsender` command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::appservice::registration;
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
