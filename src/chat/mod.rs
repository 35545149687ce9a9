//! Chat: the puppets people act through.

mod puppets;

pub use puppets::Puppets;
