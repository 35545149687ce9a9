//! Chat: puppets, the room index fed by the appservice, and conversations as the
//! API offers them.

pub mod index;
pub mod message;
mod puppets;
pub mod service;

pub use puppets::Puppets;
pub use service::Chat;
