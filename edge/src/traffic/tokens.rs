//! CodeB access tokens, kept by SHA-256 in the tenant's `RateLimiter`
//! Durable Object (SQLite): one row per live token with its user and
//! expiry, and per user the credential stamp a new token must be minted
//! against (see [`SqlTokens::issue`]). The same statements run natively on
//! real SQLite in the tests and the memory fake.

use crate::sql::{int_at, text_at, Sql, SqlValue};
use crate::store::StoreError;

/// Live tokens one user may hold; a new one past this evicts the oldest.
pub const MAX_TOKENS_PER_USER: u32 = 20;

/// A token to store (the clear token never leaves the Worker).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IssueToken {
    /// Hex SHA-256 of the clear token.
    pub token_hash: String,
    pub username: String,
    /// `password::credential_stamp` of the hash the password was checked
    /// against: refused unless it is the user's current one.
    pub credential: String,
    pub expires_ms: u64,
}

/// The token tables over a SQLite-backed Durable Object's storage.
pub struct SqlTokens<S: Sql>(pub S);

impl<S: Sql> SqlTokens<S> {
    /// Creates the tables if needed (cheap: one statement each, no-ops after the first).
    pub fn open(sql: S) -> Result<Self, StoreError> {
        for ddl in [
            "CREATE TABLE IF NOT EXISTS codeb_tokens (token_hash TEXT PRIMARY KEY, username TEXT NOT NULL, expires_ms INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS codeb_tokens_by_user ON codeb_tokens (username)",
            "CREATE INDEX IF NOT EXISTS codeb_tokens_by_expiry ON codeb_tokens (expires_ms)",
            // NULL credential: the user is disabled or deleted; no token may be minted.
            "CREATE TABLE IF NOT EXISTS codeb_credentials (username TEXT PRIMARY KEY, credential TEXT)",
        ] {
            sql.exec(ddl, vec![])?;
        }
        Ok(SqlTokens(sql))
    }

    /// Stores the token unless the user's current credential (set by the
    /// admin API through [`Self::set_credential`]) is another one, or none:
    /// then the password was checked against a stale KV copy of the user
    /// (changed, disabled or deleted since) and `false` is returned. Expired
    /// rows of every user are deleted first; past [`MAX_TOKENS_PER_USER`]
    /// the user's oldest tokens go.
    pub fn issue(&self, t: &IssueToken, now_ms: u64) -> Result<bool, StoreError> {
        self.0.exec(
            "DELETE FROM codeb_tokens WHERE expires_ms <= ?",
            vec![now_ms.into()],
        )?;
        let current = self.0.exec(
            "SELECT credential FROM codeb_credentials WHERE username = ?",
            vec![t.username.as_str().into()],
        )?;
        let matches = current
            .first()
            .and_then(|row| row.first())
            .and_then(SqlValue::as_text)
            .is_some_and(|c| crate::ids::constant_time_eq(c, &t.credential));
        if !matches {
            return Ok(false);
        }
        self.0.exec(
            "INSERT OR REPLACE INTO codeb_tokens (token_hash, username, expires_ms) VALUES (?, ?, ?)",
            vec![
                t.token_hash.as_str().into(),
                t.username.as_str().into(),
                t.expires_ms.into(),
            ],
        )?;
        self.0.exec(
            "DELETE FROM codeb_tokens WHERE username = ? AND rowid NOT IN \
             (SELECT rowid FROM codeb_tokens WHERE username = ? ORDER BY rowid DESC LIMIT ?)",
            vec![
                t.username.as_str().into(),
                t.username.as_str().into(),
                i64::from(MAX_TOKENS_PER_USER).into(),
            ],
        )?;
        Ok(true)
    }

    /// The user a live token belongs to; an expired one is deleted.
    pub fn check(&self, token_hash: &str, now_ms: u64) -> Result<Option<String>, StoreError> {
        let rows = self.0.exec(
            "SELECT username, expires_ms FROM codeb_tokens WHERE token_hash = ?",
            vec![token_hash.into()],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let expires_ms = int_at(row, 1, "codeb token expiry")?;
        if u64::try_from(expires_ms).unwrap_or(0) <= now_ms {
            self.0.exec(
                "DELETE FROM codeb_tokens WHERE token_hash = ?",
                vec![token_hash.into()],
            )?;
            return Ok(None);
        }
        Ok(Some(text_at(row, 0, "codeb token user")?))
    }

    /// Sets the user's current credential (`None`: disabled or deleted) and,
    /// unless it is the current one already, revokes every token of theirs;
    /// returns how many were revoked.
    pub fn set_credential(
        &self,
        username: &str,
        credential: Option<&str>,
    ) -> Result<usize, StoreError> {
        let previous = self.0.exec(
            "SELECT credential FROM codeb_credentials WHERE username = ?",
            vec![username.into()],
        )?;
        let previous = previous
            .first()
            .and_then(|row| row.first())
            .and_then(SqlValue::as_text);
        if credential.is_some() && previous == credential {
            // Unchanged (e.g. an enabled user enabled again): tokens stay.
            return Ok(0);
        }
        self.0.exec(
            "INSERT OR REPLACE INTO codeb_credentials (username, credential) VALUES (?, ?)",
            vec![username.into(), credential.into()],
        )?;
        let revoked = self.0.exec(
            "DELETE FROM codeb_tokens WHERE username = ? RETURNING token_hash",
            vec![username.into()],
        )?;
        Ok(revoked.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::sqlite::LimitedSqlite;

    fn token(hash: &str, user: &str, credential: &str, expires_ms: u64) -> IssueToken {
        IssueToken {
            token_hash: hash.into(),
            username: user.into(),
            credential: credential.into(),
            expires_ms,
        }
    }

    #[test]
    fn a_token_lives_until_it_expires_then_is_deleted() {
        let t = SqlTokens::open(LimitedSqlite::new()).unwrap();
        t.set_credential("alice", Some("c1")).unwrap();
        assert!(t.issue(&token("h1", "alice", "c1", 1_000), 0).unwrap());
        assert_eq!(t.check("h1", 999).unwrap().as_deref(), Some("alice"));
        assert_eq!(t.check("h1", 1_000).unwrap(), None);
        let left =
            t.0.exec("SELECT count(*) FROM codeb_tokens", vec![])
                .unwrap();
        assert_eq!(left[0][0], SqlValue::Integer(0), "the expired row is gone");
        assert_eq!(t.check("nope", 0).unwrap(), None);
    }

    #[test]
    fn only_the_current_credential_mints_tokens() {
        let t = SqlTokens::open(LimitedSqlite::new()).unwrap();
        assert!(
            !t.issue(&token("h0", "bob", "c1", 1_000), 0).unwrap(),
            "no credential set"
        );
        t.set_credential("bob", Some("c1")).unwrap();
        assert!(t.issue(&token("h1", "bob", "c1", 1_000), 0).unwrap());
        t.set_credential("bob", Some("c2")).unwrap();
        assert_eq!(t.check("h1", 1).unwrap(), None, "revoked by the change");
        assert!(
            !t.issue(&token("h2", "bob", "c1", 1_000), 1).unwrap(),
            "stale password"
        );
        assert!(t.issue(&token("h3", "bob", "c2", 1_000), 1).unwrap());
        t.set_credential("bob", None).unwrap();
        assert_eq!(t.check("h3", 2).unwrap(), None);
        assert!(
            !t.issue(&token("h4", "bob", "c2", 1_000), 2).unwrap(),
            "disabled"
        );
    }

    #[test]
    fn a_user_keeps_at_most_the_newest_tokens_and_others_are_untouched() {
        let t = SqlTokens::open(LimitedSqlite::new()).unwrap();
        t.set_credential("a", Some("c")).unwrap();
        t.set_credential("b", Some("c")).unwrap();
        assert!(t.issue(&token("b1", "b", "c", 10_000), 0).unwrap());
        let n = MAX_TOKENS_PER_USER as usize + 3;
        for i in 0..n {
            assert!(t
                .issue(&token(&format!("a{i}"), "a", "c", 10_000), 0)
                .unwrap());
        }
        for i in 0..3 {
            assert_eq!(t.check(&format!("a{i}"), 1).unwrap(), None, "a{i} evicted");
        }
        for i in 3..n {
            assert!(t.check(&format!("a{i}"), 1).unwrap().is_some(), "a{i} kept");
        }
        assert_eq!(t.check("b1", 1).unwrap().as_deref(), Some("b"));
        assert_eq!(
            t.set_credential("a", Some("d")).unwrap(),
            MAX_TOKENS_PER_USER as usize
        );
        assert_eq!(t.check("b1", 1).unwrap().as_deref(), Some("b"));
    }
}
