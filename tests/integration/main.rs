//! Integration tests: the daemon against a real Synapse, on every store and cache.
//! Run them with `./scripts/test`, which starts that Synapse.

mod appservice;
mod chat;
mod cli;
mod harness;
mod login;
mod state;
