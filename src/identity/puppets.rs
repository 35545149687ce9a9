//! Puppets: the Matrix user of each ChatSender user, registered on the homeserver by
//! the application service the first time it is needed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use ruma::{OwnedUserId, UserId};

use super::Namespace;
use crate::matrix::{Homeserver, HomeserverError};
use crate::store::{StoreError, UserStore};
use crate::time::now_ms;

/// Why a puppet could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum PuppetError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Homeserver(#[from] HomeserverError),
}

/// Registers puppets and keeps their display names, here and on the homeserver.
#[derive(Clone)]
pub struct Puppets {
    namespace: Namespace,
    homeserver: Arc<dyn Homeserver>,
    users: Arc<dyn UserStore>,
    /// Puppets this daemon saw registered (which lasts): a login need not read the
    /// store to know.
    registered: Arc<Mutex<HashSet<OwnedUserId>>>,
}

impl Puppets {
    /// Puppets of `namespace`.
    pub fn new(
        namespace: Namespace,
        homeserver: Arc<dyn Homeserver>,
        users: Arc<dyn UserStore>,
    ) -> Self {
        Self {
            namespace,
            homeserver,
            users,
            registered: Arc::default(),
        }
    }

    /// The namespace the puppets live in.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Registers the user's puppet on the homeserver unless that was done, giving it
    /// the user's display name. Safe to call again (an existing user is kept).
    pub async fn register(&self, user_id: &UserId) -> Result<(), PuppetError> {
        if self.known_registered(user_id) {
            return Ok(());
        }
        let user = self.users.user(user_id).await?;
        if user.as_ref().is_some_and(|u| u.registered_at.is_some()) {
            self.remember_registered(user_id);
            return Ok(());
        }
        self.homeserver.register_puppet(user_id).await?;
        if let Some(name) = user.as_ref().and_then(|u| u.display_name.as_deref()) {
            self.homeserver.set_display_name(user_id, name).await?;
        }
        if user.is_none() {
            self.users.create_user(user_id, None).await?;
        }
        self.users.mark_registered(user_id, now_ms()).await?;
        self.remember_registered(user_id);
        Ok(())
    }

    fn known_registered(&self, user_id: &UserId) -> bool {
        let registered = self
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        registered.contains(user_id)
    }

    fn remember_registered(&self, user_id: &UserId) {
        let mut registered = self
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        registered.insert(user_id.to_owned());
    }

    /// Makes `user_id` a registered puppet with `display_name` (creating the user).
    pub async fn ensure(&self, user_id: &UserId, display_name: &str) -> Result<(), PuppetError> {
        self.users.create_user(user_id, Some(display_name)).await?;
        self.register(user_id).await?;
        let current = self.users.user(user_id).await?.and_then(|u| u.display_name);
        if current.as_deref() != Some(display_name) {
            self.set_display_name(user_id, display_name).await?;
        }
        Ok(())
    }

    /// Sets the display name on the homeserver and here (setting it again mends a
    /// name changed on the homeserver behind ChatSender's back).
    pub async fn set_display_name(&self, user_id: &UserId, name: &str) -> Result<(), PuppetError> {
        self.homeserver.set_display_name(user_id, name).await?;
        self.users.set_display_name(user_id, name).await?;
        Ok(())
    }

    /// Whether the homeserver may treat `user_id` as existing: the bot, and every
    /// puppet registered here (others are not created on demand).
    pub async fn exists(&self, user_id: &UserId) -> Result<bool, StoreError> {
        if user_id == self.namespace.bot() {
            return Ok(true);
        }
        if !self.namespace.contains(user_id) {
            return Ok(false);
        }
        Ok(self
            .users
            .user(user_id)
            .await?
            .is_some_and(|u| u.registered_at.is_some()))
    }
}
