//! ChatSender: private, self-hosted messaging on Matrix with Ed25519 key login.
//!
//! The `chatsender` daemon is a Matrix application service beside a Synapse
//! homeserver. It owns a namespace of puppet users and acts as them on the
//! homeserver's Client-Server API.
//!
//! # Layout
//!
//! Layers only import downward:
//!
//! - [`appservice`], [`api`]: HTTP. The endpoints Synapse calls, and the daemon's own.
//! - [`chat`]: the core: puppets (and, later, rooms and live events).
//! - [`store`], [`cache`], [`matrix`]: I/O behind traits (`Arc<dyn Store>`,
//!   `Arc<dyn Cache>`, `Arc<dyn Homeserver>`): SQLite or MariaDB, in-process or
//!   Redis, Synapse over HTTP.
//! - [`config`], [`startup`], [`telemetry`], [`cli`]: wiring.

pub mod api;
pub mod appservice;
pub mod auth;
pub mod cache;
pub mod chat;
pub mod cli;
pub mod config;
pub mod keys;
pub mod live;
pub mod matrix;
pub mod startup;
pub mod store;
pub mod telemetry;

/// Installs the process-wide TLS provider (ring) once; reqwest needs one.
pub fn install_tls_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}
