//! The SQL port: what a SQLite-backed Durable Object's `ctx.storage.sql`
//! offers, reduced to one synchronous call. The Worker adapts workers-rs'
//! `SqlStorage` to it (`glue::env::DoSql`); native tests run the very same
//! statements against real SQLite ([`sqlite::LimitedSqlite`]) with the
//! platform's documented limits enforced, so a statement or a row that
//! Cloudflare would refuse fails here too.
//!
//! Synchronous on purpose: inside a Durable Object every statement between
//! two awaits belongs to one implicit transaction, which is what makes a
//! call's change and the webhook event it causes land together or not at all.

use crate::store::StoreError;

/// Cloudflare's limit on one string, BLOB or row in a SQLite-backed Durable Object (2 MB).
pub const MAX_VALUE_BYTES: usize = 2_000_000;

#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<&str> for SqlValue {
    fn from(s: &str) -> Self {
        SqlValue::Text(s.to_string())
    }
}

impl From<String> for SqlValue {
    fn from(s: String) -> Self {
        SqlValue::Text(s)
    }
}

impl From<i64> for SqlValue {
    fn from(n: i64) -> Self {
        SqlValue::Integer(n)
    }
}

impl From<u64> for SqlValue {
    /// Timestamps and counters: clamped, never wrapped, at i64::MAX.
    fn from(n: u64) -> Self {
        SqlValue::Integer(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

impl SqlValue {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            SqlValue::Text(s) => Some(s),
            _ => None,
        }
    }

    /// Integers, and reals that hold one (JavaScript numbers come back as either).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            SqlValue::Integer(n) => Some(*n),
            SqlValue::Real(f) if f.fract() == 0.0 => Some(*f as i64),
            _ => None,
        }
    }
}

pub type Row = Vec<SqlValue>;

/// One statement with `?` placeholders, returning every row it yields.
pub trait Sql {
    fn exec(&self, query: &str, args: Vec<SqlValue>) -> Result<Vec<Row>, StoreError>;
}

/// The text in column `i`, or a `Corrupt` error naming what was expected.
pub fn text_at(row: &Row, i: usize, what: &str) -> Result<String, StoreError> {
    row.get(i)
        .and_then(SqlValue::as_text)
        .map(str::to_string)
        .ok_or_else(|| StoreError::Corrupt(format!("{what}: not text")))
}

pub fn int_at(row: &Row, i: usize, what: &str) -> Result<i64, StoreError> {
    row.get(i)
        .and_then(SqlValue::as_i64)
        .ok_or_else(|| StoreError::Corrupt(format!("{what}: not an integer")))
}

/// Real SQLite (bundled, so every machine runs the same version) with the
/// Durable Object limits: values and rows above 2 MB are refused by SQLite
/// itself (`SQLITE_LIMIT_LENGTH`).
#[cfg(test)]
pub mod sqlite {
    use super::*;
    use rusqlite::types::{Value as Sv, ValueRef};

    pub struct LimitedSqlite(pub rusqlite::Connection);

    impl LimitedSqlite {
        pub fn new() -> LimitedSqlite {
            let conn = rusqlite::Connection::open_in_memory().expect("in-memory SQLite");
            conn.set_limit(
                rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH,
                MAX_VALUE_BYTES as i32,
            )
            .expect("set limit");
            LimitedSqlite(conn)
        }
    }

    impl Default for LimitedSqlite {
        fn default() -> Self {
            LimitedSqlite::new()
        }
    }

    impl Sql for LimitedSqlite {
        fn exec(&self, query: &str, args: Vec<SqlValue>) -> Result<Vec<Row>, StoreError> {
            let args: Vec<Sv> = args
                .into_iter()
                .map(|a| match a {
                    SqlValue::Null => Sv::Null,
                    SqlValue::Integer(n) => Sv::Integer(n),
                    SqlValue::Real(f) => Sv::Real(f),
                    SqlValue::Text(s) => Sv::Text(s),
                    SqlValue::Blob(b) => Sv::Blob(b),
                })
                .collect();
            let refused = |e: rusqlite::Error| StoreError::Unavailable(format!("sqlite: {e}"));
            let mut stmt = self.0.prepare(query).map_err(refused)?;
            let columns = stmt.column_count();
            let mut rows = stmt
                .query(rusqlite::params_from_iter(args))
                .map_err(refused)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(refused)? {
                let mut values = Vec::with_capacity(columns);
                for i in 0..columns {
                    values.push(match row.get_ref(i).map_err(refused)? {
                        ValueRef::Null => SqlValue::Null,
                        ValueRef::Integer(n) => SqlValue::Integer(n),
                        ValueRef::Real(f) => SqlValue::Real(f),
                        ValueRef::Text(t) => {
                            SqlValue::Text(String::from_utf8_lossy(t).into_owned())
                        }
                        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
                    });
                }
                out.push(values);
            }
            Ok(out)
        }
    }

    #[test]
    fn values_over_the_durable_object_limit_are_refused() {
        let db = LimitedSqlite::new();
        db.exec("CREATE TABLE t (v TEXT)", vec![]).unwrap();
        db.exec(
            "INSERT INTO t VALUES (?)",
            vec!["x".repeat(MAX_VALUE_BYTES - 100).into()],
        )
        .unwrap();
        assert!(db
            .exec(
                "INSERT INTO t VALUES (?)",
                vec!["x".repeat(MAX_VALUE_BYTES + 1).into()]
            )
            .is_err());
    }
}
