//! `chatsender keygen …`: machine output on stdout, everything else on stderr.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use super::Keygen;
use crate::config::Settings;
use crate::keys::PublicKey;
use crate::startup::key_admin;
use crate::store::KeyRecord;

impl Keygen {
    pub(super) async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let admin = key_admin(settings).await?;
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
