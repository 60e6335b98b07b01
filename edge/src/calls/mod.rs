//! A tenant's calls: the call store (the one writer of a tenant's calls, a
//! `CallStore` Durable Object in the Worker), the call state machine and the
//! admission of recording uploads; and its text messages ([`messages`]),
//! which the same store keeps, and its
//! contacts ([`contacts`]).

pub mod contacts;
pub mod messages;
pub mod recordings;
pub mod state;
pub mod store;
