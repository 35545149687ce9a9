//! ChatSender: private, self-hosted messaging on Matrix with Ed25519 key login.
//!
//! The `chatsender` daemon is a Matrix application service beside a Synapse
//! homeserver. It owns a namespace of puppet users, creates one for each person whose
//! key the operator registered, and acts as that user once its holder signs a login
//! challenge.
//!
//! # Layout
//!
//! Layers only import downward, and no module imports another in a loop
//! (`python3 ../shared/tools/layers.py` checks it):
//!
//! - wiring: [`cli`] (the commands), [`startup`] (builds the daemon; the one place the
//!   embedded or Redis mode is chosen).
//! - edges, the HTTP faces: [`appservice`] (the endpoints Synapse calls) and [`api`]
//!   (`/api/v1`, its live stream as SSE, OpenAPI, `/health`, `/ready`, `/metrics`).
//!   They talk to the core and render its errors as one [`error::MatrixError`].
//! - core, no HTTP and no SQL: [`auth`] (challenges, login, sessions, revocation,
//!   rate limits, key administration), [`chat`] (typed Matrix events, the feed of the
//!   room index and live streams, conversations), [`identity`] (the puppet namespace
//!   and the puppets), [`keys`] (Ed25519 keys and their encodings).
//! - adapters, I/O behind traits held as `Arc<dyn …>`: [`store`] (one trait per
//!   concern; SQLite and MariaDB), [`cache`] (in-process or Redis), [`matrix`]
//!   (Synapse's Client-Server API), [`live`] (per-user streams with replay, kept in the
//!   database or Redis, fanned out per user).
//! - leaves: [`config`], [`time`], [`error`], [`telemetry`].

pub mod api;
pub mod appservice;
pub mod auth;
pub mod cache;
pub mod chat;
pub mod cli;
pub mod config;
pub mod error;
pub mod identity;
pub mod keys;
pub mod live;
pub mod matrix;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod time;

/// Installs the process-wide TLS provider (ring) once; reqwest needs one.
pub fn install_tls_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}
