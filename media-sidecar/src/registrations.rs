//! The phones registered with this sidecar (issue 16): per directory user
//! (tenant, `pk`), each Contact with the address and transport its REGISTER
//! came over and when it lapses. A registered phone is reached only
//! through the sidecar it registered with (its NAT binding, its TCP/TLS
//! connection), so ringing a user reads [`Registrations::contacts_for`]
//! here. Written by the registrar ([`crate::sip::registrar`]) after the
//! edge accepted a REGISTER; bounded per user and in total.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::sip::transport::Transport;

/// One registered Contact of a user's phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneContact {
    /// The Contact URI as the phone sent it.
    pub uri: String,
    /// Where its REGISTER came from (requests to the phone go there: it may
    /// be behind NAT, RFC 3581 / RFC 5626's flow).
    pub source: SocketAddr,
    pub transport: Transport,
    /// When it lapses (sidecar clock, ms since the registrar's epoch).
    pub expires_at_ms: u64,
}

/// A user of a tenant's directory: (tenant id, user `pk`).
pub type UserKey = (String, u64);

/// The bindings of every phone registered here.
#[derive(Debug, Clone, Default)]
pub struct Registrations {
    users: HashMap<UserKey, Vec<PhoneContact>>,
}

impl Registrations {
    /// The live contacts of `user_pk` of `tenant` at `now_ms`.
    pub fn contacts_for(&self, tenant: &str, user_pk: u64, now_ms: u64) -> Vec<PhoneContact> {
        self.users
            .get(&(tenant.to_string(), user_pk))
            .map(|cs| {
                cs.iter()
                    .filter(|c| c.expires_at_ms > now_ms)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Live contacts of `user`, counted.
    pub fn count_for(&self, user: &UserKey, now_ms: u64) -> usize {
        self.users.get(user).map_or(0, |cs| {
            cs.iter().filter(|c| c.expires_at_ms > now_ms).count()
        })
    }

    /// Every binding held (live or not yet purged).
    pub fn len(&self) -> usize {
        self.users.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `user` holds a binding for `uri` (live at `now_ms`).
    pub fn holds(&self, user: &UserKey, uri: &str, now_ms: u64) -> bool {
        self.users
            .get(user)
            .is_some_and(|cs| cs.iter().any(|c| c.uri == uri && c.expires_at_ms > now_ms))
    }

    /// Adds or refreshes `contact` of `user`.
    pub fn upsert(&mut self, user: UserKey, contact: PhoneContact) {
        let cs = self.users.entry(user).or_default();
        match cs.iter_mut().find(|c| c.uri == contact.uri) {
            Some(c) => *c = contact,
            None => cs.push(contact),
        }
    }

    /// Removes `uri` of `user`.
    pub fn remove(&mut self, user: &UserKey, uri: &str) {
        if let Some(cs) = self.users.get_mut(user) {
            cs.retain(|c| c.uri != uri);
            if cs.is_empty() {
                self.users.remove(user);
            }
        }
    }

    /// Removes every contact of `user`.
    pub fn remove_user(&mut self, user: &UserKey) {
        self.users.remove(user);
    }

    /// Keeps only the contacts of `user` in `keep` (the edge's list: a
    /// binding it no longer has is gone here too).
    pub fn retain_only(&mut self, user: &UserKey, keep: &[&str]) {
        if let Some(cs) = self.users.get_mut(user) {
            cs.retain(|c| keep.contains(&c.uri.as_str()));
            if cs.is_empty() {
                self.users.remove(user);
            }
        }
    }

    /// Drops the contacts lapsed at `now_ms`.
    pub fn purge(&mut self, now_ms: u64) {
        self.users.retain(|_, cs| {
            cs.retain(|c| c.expires_at_ms > now_ms);
            !cs.is_empty()
        });
    }
}
