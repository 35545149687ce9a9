//! Integration tests: the daemon against a real Synapse, on every store and cache.
//!
//! They are `#[ignore]`d for a plain `cargo test` (which runs the unit tests): run
//! them with `./scripts/test`, which starts that Synapse and runs them all.

mod appservice;
mod chat;
mod cli;
mod clients;
mod deploy;
mod harness;
mod keys;
mod live;
mod live_placed;
mod login;
mod nginx;
mod outage;
mod presence;
mod provision;
mod retention;
mod server;
mod sessions;
mod state;
