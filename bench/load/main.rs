//! The bench's own programs (`cargo bench --bench load -- COMMAND …`), driven by
//! `bench/run`:
//!
//! - `baseline`: the bare axum server the daemon is compared with: it parses each
//!   pushed transaction and counts its events, nothing else.
//! - `homeserver`: a stand-in for Synapse's few answers the daemon needs for the
//!   ingest, fan-out and login figures (ping, register, display name), so that those
//!   figures are the daemon's alone. The latency figure uses a real Synapse.
//! - `ingest`: Synapse's load (transactions of `m.room.message` events, a number in
//!   flight) against any appservice; events per second and the server's CPU per event.
//! - `fanout`: K users with a live stream each in one room; one message pushed; how
//!   long until every stream has it, and the server's memory.
//! - `login`: challenge + signed login by C clients; logins per second.
//! - `latency`: through a real Synapse: a message sent to a room with a ChatSender
//!   user, timed to the bare listener beside the daemon and to the user's stream.
//! - `floor`: durable recording alone (no HTTP, no parsing, no feed): the bound under
//!   the ingest figures.
//!
//! Each prints one JSON line of figures on stdout; progress goes to stderr.

mod clients;
mod floor;
mod servers;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "ChatSender's bench load and baseline")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The bare axum baseline: parse and count.
    Baseline {
        #[arg(long)]
        listen: String,
        #[arg(long)]
        hs_token: String,
    },
    /// A stand-in homeserver answering what the daemon asks at start and login.
    Homeserver {
        #[arg(long)]
        listen: String,
    },
    /// Pushes transactions for `seconds` and counts the events answered.
    Ingest {
        #[arg(long)]
        url: String,
        #[arg(long)]
        hs_token: String,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        #[arg(long, default_value_t = 100)]
        events_per_txn: usize,
        #[arg(long, default_value_t = 10)]
        rooms: usize,
        /// ChatSender users joined to each room first (0: rooms without one).
        #[arg(long, default_value_t = 0)]
        members: usize,
        #[arg(long, default_value = "chatsender_")]
        user_prefix: String,
        #[arg(long, default_value = "localhost")]
        server_name: String,
        /// The server's PID, for its CPU time.
        #[arg(long)]
        pid: Option<u32>,
        /// Stop the clock only once the daemon has fed every event (ChatSender).
        #[arg(long)]
        drain: bool,
        /// Other processes whose CPU time counts (MariaDB, Redis), in the same window.
        #[arg(long, num_args = 1..)]
        others: Vec<u32>,
    },
    /// Opens K live streams of K users in one room and times one message to all.
    Fanout {
        #[arg(long)]
        url: String,
        #[arg(long)]
        hs_token: String,
        /// `keygen generate --json` output: the users' keys.
        #[arg(long)]
        keys: PathBuf,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value = "localhost")]
        server_name: String,
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Logs in with C clients for `seconds`.
    Login {
        #[arg(long)]
        url: String,
        #[arg(long)]
        keys: PathBuf,
        #[arg(long, default_value_t = 1)]
        clients: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Records the ingest load's transactions straight into a store for `seconds`.
    Floor {
        #[arg(long, value_enum)]
        floor: floor::Floor,
        /// `sqlite://…` or `mysql://…`, as in the daemon's `database.url`.
        #[arg(long)]
        database: String,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 100)]
        events_per_txn: usize,
        /// The database server's PID (MariaDB), for its CPU time.
        #[arg(long)]
        db_pid: Option<u32>,
    },
    /// Times messages from a Matrix user through Synapse to the bare listener and to
    /// a ChatSender user's stream.
    Latency {
        /// The daemon's API.
        #[arg(long)]
        url: String,
        /// Where to listen for Synapse's pushes to the daemon, noted and forwarded to
        /// `--daemon`.
        #[arg(long)]
        tap: String,
        #[arg(long)]
        daemon: String,
        /// Synapse's Client-Server API.
        #[arg(long)]
        homeserver: String,
        /// The bare listener's appservice: where Synapse pushes, and its as_token.
        #[arg(long)]
        listen: String,
        #[arg(long)]
        bare_as_token: String,
        #[arg(long)]
        bare_hs_token: String,
        /// The bare appservice's sender, in its namespace.
        #[arg(long)]
        sender: String,
        /// One key for the ChatSender user.
        #[arg(long)]
        keys: PathBuf,
        #[arg(long, default_value_t = 200)]
        messages: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let figures = runtime.block_on(async move {
        match cli.command {
            Command::Baseline { listen, hs_token } => servers::baseline(&listen, hs_token).await,
            Command::Homeserver { listen } => servers::homeserver(&listen).await,
            Command::Ingest {
                url,
                hs_token,
                seconds,
                concurrency,
                events_per_txn,
                rooms,
                members,
                user_prefix,
                server_name,
                pid,
                drain,
                others,
            } => {
                let load = clients::IngestLoad {
                    url,
                    hs_token,
                    seconds,
                    concurrency,
                    events_per_txn,
                    rooms,
                    members,
                    user_prefix,
                    server_name,
                    pid,
                    drain,
                    others,
                };
                load.run().await
            }
            Command::Fanout {
                url,
                hs_token,
                keys,
                rounds,
                server_name,
                pid,
            } => clients::fanout(&url, &hs_token, &keys, rounds, &server_name, pid).await,
            Command::Floor {
                floor,
                database,
                seconds,
                events_per_txn,
                db_pid,
            } => floor::run(floor, &database, seconds, events_per_txn, db_pid).await,
            Command::Login {
                url,
                keys,
                clients,
                seconds,
                pid,
            } => clients::login(&url, &keys, clients, seconds, pid).await,
            Command::Latency {
                url,
                tap,
                daemon,
                homeserver,
                listen,
                bare_as_token,
                bare_hs_token,
                sender,
                keys,
                messages,
            } => {
                let setup = clients::LatencySetup {
                    url,
                    tap,
                    daemon,
                    homeserver,
                    listen,
                    bare_as_token,
                    bare_hs_token,
                    sender,
                    keys,
                    messages,
                };
                setup.run().await
            }
        }
    })?;
    println!("{figures}");
    Ok(())
}
