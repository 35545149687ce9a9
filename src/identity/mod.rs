//! Who is ChatSender's: the puppet namespace (`@{user_prefix}{name}:{server_name}`),
//! the one place its user ids are made and recognised, and the puppets themselves.

pub mod display_name;
mod puppets;

use ruma::{OwnedServerName, OwnedUserId, ServerName, UserId};

pub use puppets::{PuppetError, Puppets};

use crate::config::Settings;

/// Why a name cannot be a ChatSender user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("`{0}`: use only a-z, 0-9 and ._=-/ (it becomes the Matrix user id)")]
    Characters(String),
    #[error("`{0}`: 16 hex characters look like a key id; choose another name")]
    LooksLikeKeyId(String),
    #[error("`{name}`: that is the appservice's own user ({bot})")]
    Bot { name: String, bot: OwnedUserId },
    #[error("`{name}`: not usable in a Matrix user id: {reason}")]
    Invalid { name: String, reason: String },
}

/// The users the application service owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    user_prefix: String,
    server_name: OwnedServerName,
    bot: OwnedUserId,
}

/// Whether every byte of `name` may stand in a Matrix localpart.
pub fn is_localpart(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/'))
}

impl Namespace {
    /// The namespace of `user_prefix` on `server_name`, with its bot.
    pub fn new(
        user_prefix: &str,
        server_name: &ServerName,
        bot_localpart: &str,
    ) -> Result<Self, NameError> {
        let bot = UserId::parse(format!("@{bot_localpart}:{server_name}")).map_err(|e| {
            NameError::Invalid {
                name: bot_localpart.to_owned(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            user_prefix: user_prefix.to_owned(),
            server_name: server_name.to_owned(),
            bot,
        })
    }

    /// The namespace the settings describe (checked when they were loaded).
    pub fn of(settings: &Settings) -> Result<Self, NameError> {
        Self::new(
            &settings.appservice.user_prefix,
            &settings.homeserver.server_name,
            &settings.appservice.bot_localpart,
        )
    }

    /// The appservice's own user.
    pub fn bot(&self) -> &UserId {
        &self.bot
    }

    /// The puppet for `name`: `@{user_prefix}{name}:{server_name}`.
    pub fn puppet(&self, name: &str) -> Result<OwnedUserId, NameError> {
        if !is_localpart(name) {
            return Err(NameError::Characters(name.to_owned()));
        }
        UserId::parse(format!("@{}{name}:{}", self.user_prefix, self.server_name)).map_err(|e| {
            NameError::Invalid {
                name: name.to_owned(),
                reason: e.to_string(),
            }
        })
    }

    /// The user a person chose to be called `name` (`keygen --name`): a puppet that is
    /// neither a key's own user nor the bot.
    pub fn named(&self, name: &str) -> Result<OwnedUserId, NameError> {
        if name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NameError::LooksLikeKeyId(name.to_owned()));
        }
        let user_id = self.puppet(name)?;
        if user_id == self.bot {
            return Err(NameError::Bot {
                name: name.to_owned(),
                bot: user_id,
            });
        }
        Ok(user_id)
    }

    /// Whether `user_id` is one of ChatSender's users (the bot included).
    pub fn contains(&self, user_id: &UserId) -> bool {
        user_id.server_name() == self.server_name
            && user_id.localpart().starts_with(&self.user_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(server: &str) -> Namespace {
        let server = ServerName::parse(server).expect("server name");
        Namespace::new("cs_", &server, "cs_bot").expect("namespace")
    }

    fn user(id: &str) -> OwnedUserId {
        UserId::parse(id).expect("user id")
    }

    #[test]
    fn the_namespace_is_prefix_and_server() {
        let ns = ns("example.org");
        assert!(ns.contains(&user("@cs_alice:example.org")));
        assert!(ns.contains(ns.bot()));
        assert!(!ns.contains(&user("@cs_alice:other.org")));
        assert!(!ns.contains(&user("@carol:example.org")));
        let with_port = self::ns("example.org:8448");
        assert!(with_port.contains(&user("@cs_alice:example.org:8448")));
        assert!(!with_port.contains(&user("@cs_alice:example.org")));
    }

    #[test]
    fn puppets_are_made_from_names() {
        let ns = ns("example.org");
        assert_eq!(ns.puppet("alice"), Ok(user("@cs_alice:example.org")));
        assert!(matches!(ns.puppet("Alice"), Err(NameError::Characters(_))));
        assert!(matches!(ns.puppet(""), Err(NameError::Characters(_))));
        assert!(matches!(
            ns.named("0123456789abcdef"),
            Err(NameError::LooksLikeKeyId(_))
        ));
        assert!(matches!(ns.named("bot"), Err(NameError::Bot { .. })));
        assert_eq!(ns.named("bob"), Ok(user("@cs_bob:example.org")));
    }
}
