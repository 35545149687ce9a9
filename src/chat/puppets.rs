//! Puppet users: one Matrix user per ChatSender user, registered by the appservice.

use std::sync::Arc;

use anyhow::Context;
use ruma::{OwnedServerName, OwnedUserId, UserId};

use crate::matrix::Homeserver;
use crate::store::{Puppet, Store};

/// Creates puppets and keeps the store's record of them.
#[derive(Clone)]
pub struct Puppets {
    homeserver: Arc<dyn Homeserver>,
    store: Arc<dyn Store>,
    server_name: OwnedServerName,
    user_prefix: String,
}

impl Puppets {
    /// Puppets are `@{user_prefix}{name}:{server_name}`.
    pub fn new(
        homeserver: Arc<dyn Homeserver>,
        store: Arc<dyn Store>,
        server_name: OwnedServerName,
        user_prefix: String,
    ) -> Self {
        Self {
            homeserver,
            store,
            server_name,
            user_prefix,
        }
    }

    /// The puppet's user id for `name` (a localpart suffix).
    pub fn user_id(&self, name: &str) -> anyhow::Result<OwnedUserId> {
        UserId::parse(format!("@{}{name}:{}", self.user_prefix, self.server_name))
            .with_context(|| format!("`{name}` cannot be part of a Matrix user id"))
    }

    /// Registers the puppet for `name` if needed and sets its display name; safe to
    /// call again (an existing user is kept, its display name updated).
    pub async fn ensure(
        &self,
        name: &str,
        display_name: Option<&str>,
    ) -> anyhow::Result<OwnedUserId> {
        let user_id = self.user_id(name)?;
        self.ensure_user(&user_id, display_name).await?;
        Ok(user_id)
    }

    /// [`Puppets::ensure`] for a full user id in the namespace.
    pub async fn ensure_user(
        &self,
        user_id: &UserId,
        display_name: Option<&str>,
    ) -> anyhow::Result<()> {
        let known = self.store.puppet(user_id).await?;
        if known.is_none() {
            self.homeserver.register_puppet(user_id).await?;
        }
        let current = known.as_ref().and_then(|p| p.display_name.as_deref());
        if let Some(display_name) = display_name
            && current != Some(display_name)
        {
            self.homeserver
                .set_display_name(user_id, display_name)
                .await?;
        }
        if known.is_none() || (display_name.is_some() && current != display_name) {
            let display_name = display_name
                .map(str::to_owned)
                .or_else(|| known.and_then(|p| p.display_name));
            self.store
                .save_puppet(&Puppet {
                    user_id: user_id.to_owned(),
                    display_name,
                })
                .await?;
        }
        Ok(())
    }
}
