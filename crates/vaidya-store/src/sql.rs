//! One SQL text, two engines: what the store's queries are written against so that they run on
//! SQLite (one machine) and on PostgreSQL (issue 8: several machines, failover by Patroni).
//!
//! A query is written once, in the SQL both engines accept: `?1`, `?2`... placeholders (turned
//! into `$1`, `$2`... for PostgreSQL), `INSERT ... ON CONFLICT DO NOTHING` rather than SQLite's
//! `INSERT OR IGNORE`, integers for flags. Parameters are [`Value`]s; result cells are read
//! through [`Cells::get`] into the few Rust types the store uses. [`Db`] is implemented for a
//! `rusqlite::Connection` (so every existing caller keeps passing its connection) and for
//! [`PgConn`].
//!
//! Schemas differ where the engines' types do: every integer column is `BIGINT` on PostgreSQL
//! (SQLite's `INTEGER` is 64-bit), `BLOB` is `BYTEA`, and flags are integers 0/1 on both, so
//! that a comparison such as `must_change_password = 1` means the same everywhere.

use crate::StoreError;
use std::cell::RefCell;
use std::collections::HashMap;

/// A query parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<f64> for Value<'_> {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl From<&i64> for Value<'_> {
    fn from(v: &i64) -> Self {
        Value::Int(*v)
    }
}

impl From<&f64> for Value<'_> {
    fn from(v: &f64) -> Self {
        Value::Real(*v)
    }
}

impl From<u32> for Value<'_> {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}

/// Flags are stored as 0 or 1 on both engines.
impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Value::Blob(v)
    }
}

impl<'a> From<&'a Vec<u8>> for Value<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A query parameter that owns its text or bytes (queries built up piece by piece).
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl OwnedValue {
    pub fn value(&self) -> Value<'_> {
        match self {
            OwnedValue::Null => Value::Null,
            OwnedValue::Int(i) => Value::Int(*i),
            OwnedValue::Real(f) => Value::Real(*f),
            OwnedValue::Text(s) => Value::Text(s),
            OwnedValue::Blob(b) => Value::Blob(b),
        }
    }
}

impl OwnedValue {
    /// A result cell as a parameter (copying rows between engines).
    pub fn from_cell(cell: &Cell) -> OwnedValue {
        match cell {
            Cell::Null => OwnedValue::Null,
            Cell::Int(i) => OwnedValue::Int(*i),
            Cell::Real(f) => OwnedValue::Real(*f),
            Cell::Text(s) => OwnedValue::Text(s.clone()),
            Cell::Blob(b) => OwnedValue::Blob(b.clone()),
        }
    }
}

impl From<i64> for OwnedValue {
    fn from(v: i64) -> Self {
        OwnedValue::Int(v)
    }
}

impl From<f64> for OwnedValue {
    fn from(v: f64) -> Self {
        OwnedValue::Real(v)
    }
}

impl From<String> for OwnedValue {
    fn from(v: String) -> Self {
        OwnedValue::Text(v)
    }
}

/// `[a.into(), b.into(), ...]`: the parameters of a query.
#[macro_export]
macro_rules! sql_params {
    ($($v:expr),* $(,)?) => { [$($crate::sql::Value::from($v)),*] };
}

/// Which engine a connection speaks to, for the rare statement that must differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// One result cell, as the engine gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A result row.
pub struct Cells {
    cells: Vec<Cell>,
}

impl Cells {
    /// Every cell, in column order.
    pub fn cells(&self) -> &[Cell] {
        &self.cells
    }

    /// Cell `i` as a `T` (an error names the column when the type does not fit).
    pub fn get<T: FromCell>(&self, i: usize) -> Result<T, StoreError> {
        let cell = self.cells.get(i).ok_or_else(|| StoreError::Corrupt(format!("the query has no column {i}")))?;
        T::from_cell(cell).ok_or_else(|| StoreError::Corrupt(format!("column {i} holds {cell:?}, not a {}", std::any::type_name::<T>())))
    }
}

/// The Rust types a cell is read into.
pub trait FromCell: Sized {
    fn from_cell(cell: &Cell) -> Option<Self>;
}

impl FromCell for i64 {
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// A REAL column; SQLite may hand back an integral value as an integer.
impl FromCell for f64 {
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Real(f) => Some(*f),
            Cell::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl FromCell for u64 {
    fn from_cell(cell: &Cell) -> Option<Self> {
        i64::from_cell(cell).and_then(|i| u64::try_from(i).ok())
    }
}

impl FromCell for u32 {
    fn from_cell(cell: &Cell) -> Option<Self> {
        i64::from_cell(cell).and_then(|i| u32::try_from(i).ok())
    }
}

impl FromCell for bool {
    fn from_cell(cell: &Cell) -> Option<Self> {
        i64::from_cell(cell).map(|i| i != 0)
    }
}

impl FromCell for String {
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FromCell for Vec<u8> {
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Blob(b) => Some(b.clone()),
            _ => None,
        }
    }
}

impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Null => Some(None),
            other => T::from_cell(other).map(Some),
        }
    }
}

/// A connection the store's portable queries run on.
pub trait Db {
    fn dialect(&self) -> Dialect;

    /// Run a statement; the number of rows it changed.
    fn execute(&self, sql: &str, params: &[Value<'_>]) -> Result<u64, StoreError>;

    /// Run a query and hand each row to `each`, in order.
    fn for_each_row(&self, sql: &str, params: &[Value<'_>], each: &mut dyn FnMut(Cells) -> Result<(), StoreError>) -> Result<(), StoreError>;

    /// Run several statements separated by `;` (schemas), without parameters.
    fn execute_batch(&self, sql: &str) -> Result<(), StoreError>;

    /// Run a statement whose outcome the caller does not read (an insert, an update): a
    /// PostgreSQL connection holds it back and sends it with the others in one round trip,
    /// before its next query or statement (see `held.rs`); an error then surfaces there.
    fn execute_later(&self, sql: &str, params: &[Value<'_>]) -> Result<(), StoreError> {
        self.execute(sql, params).map(|_| ())
    }

    /// Begin a write transaction. SQLite takes its write lock at once (`IMMEDIATE`), so that
    /// a transaction never fails halfway for want of it; PostgreSQL locks rows as it goes.
    fn begin_write(&self) -> Result<(), StoreError> {
        self.execute_batch(match self.dialect() {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        })
    }

    /// The single value of a query's first row (`None` when there is no row).
    fn query_value<T: FromCell>(&self, sql: &str, params: &[Value<'_>]) -> Result<Option<T>, StoreError>
    where
        Self: Sized,
    {
        self.query_opt(sql, params, |r| r.get::<T>(0))
    }

    /// Every row, each turned into a `T` by `f`.
    fn query_map<T>(&self, sql: &str, params: &[Value<'_>], mut f: impl FnMut(&Cells) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError>
    where
        Self: Sized,
    {
        let mut out = Vec::new();
        self.for_each_row(sql, params, &mut |row| {
            out.push(f(&row)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row, if any, turned into a `T` by `f`.
    fn query_opt<T>(&self, sql: &str, params: &[Value<'_>], f: impl FnOnce(&Cells) -> Result<T, StoreError>) -> Result<Option<T>, StoreError>
    where
        Self: Sized,
    {
        let mut first = None;
        self.for_each_row(sql, params, &mut |row| {
            if first.is_none() {
                first = Some(row);
            }
            Ok(())
        })?;
        first.map(|row| f(&row)).transpose()
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(i),
            Value::Real(f) => ValueRef::Real(f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl Db for rusqlite::Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&self, sql: &str, params: &[Value<'_>]) -> Result<u64, StoreError> {
        Ok(self.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params))? as u64)
    }

    fn for_each_row(&self, sql: &str, params: &[Value<'_>], each: &mut dyn FnMut(Cells) -> Result<(), StoreError>) -> Result<(), StoreError> {
        use rusqlite::types::ValueRef;
        let mut stmt = self.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(columns);
            for i in 0..columns {
                cells.push(match row.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Real(v) => Cell::Real(v),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                });
            }
            each(Cells { cells })?;
        }
        Ok(())
    }

    fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(rusqlite::Connection::execute_batch(self, sql)?)
    }
}

/// The advisory lock key of the store's single writer ("VAIDYA" in ASCII): one `vaidya
/// serve` at a time appends to the ledger, the others serve reads and wait to take over.
pub const WRITER_LOCK: i64 = 0x5641_4944_5941;

/// Prepared statements kept per PostgreSQL connection (as `rusqlite`'s cache is set in `db.rs`).
const STATEMENT_CACHE: usize = 256;

/// A PostgreSQL connection (blocking), with its statements prepared once each.
pub struct PgConn {
    client: RefCell<postgres::Client>,
    statements: RefCell<HashMap<String, postgres::Statement>>,
    /// Statements held back by `execute_later`.
    held: RefCell<crate::held::Pending>,
}

/// A PostgreSQL database to connect to: a URL or key-value string, and the password kept
/// apart from it (read from a file; never shown in a message).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PgTarget {
    url: String,
    password: Option<String>,
}

impl PgTarget {
    /// `postgres://user@host1:5432,host2:5432/db?target_session_attrs=read-write` or
    /// `host=/run/postgresql dbname=vaidya`; several hosts are tried in order, and with
    /// `target_session_attrs=read-write` only the primary is taken (a Patroni cluster).
    pub fn new(url: &str) -> PgTarget {
        PgTarget { url: url.to_string(), password: None }
    }

    pub fn with_password(self, password: Option<String>) -> PgTarget {
        PgTarget { password, ..self }
    }

    /// The URL for messages: any password in it replaced.
    pub fn describe(&self) -> String {
        redact_password(&self.url)
    }

    pub fn connect(&self) -> Result<PgConn, StoreError> {
        let mut config: postgres::Config = self.url.parse()?;
        if let Some(p) = &self.password {
            config.password(p);
        }
        // A dead primary must not hang a connection attempt: the next host is tried.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        let mut client = config.connect(postgres::NoTls)?;
        // Held statements carry their values as literals (held.rs): backslashes are plain.
        client.batch_execute("SET standard_conforming_strings = on")?;
        Ok(PgConn { client: RefCell::new(client), statements: RefCell::new(HashMap::new()), held: RefCell::default() })
    }
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgTarget({})", self.describe())
    }
}

impl PgConn {
    /// Connect with a PostgreSQL URL or key-value string (see [`PgTarget::new`]). No TLS
    /// here: the deployment's network is local or its TLS is set up in front of PostgreSQL
    /// (see docs/OPERATIONS.md).
    pub fn connect(url: &str) -> Result<PgConn, StoreError> {
        PgTarget::new(url).connect()
    }

    /// Whether the connection is gone (the server stopped, a failover): it must be replaced.
    pub fn is_closed(&self) -> bool {
        self.client.borrow().is_closed()
    }

    /// Take the store's writer lock (a session-level advisory lock) if no other session holds
    /// it; held until this connection ends.
    pub fn try_writer_lock(&self) -> Result<bool, StoreError> {
        Ok(self.query_value::<bool>("SELECT pg_try_advisory_lock(?1)", &[Value::Int(WRITER_LOCK)])?.unwrap_or(false))
    }

    /// Send the held statements (one round trip), then `and_then` if given, in the same batch.
    fn send_held(&self, and_then: Option<&str>) -> Result<(), StoreError> {
        let mut batch = self.held.borrow_mut().take_batch();
        if let Some(sql) = and_then {
            batch.push_str(sql);
        }
        if batch.is_empty() {
            return Ok(());
        }
        Ok(self.client.borrow_mut().batch_execute(&batch)?)
    }

    fn statement(&self, sql: &str) -> Result<postgres::Statement, StoreError> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let prepared = self.client.borrow_mut().prepare(&numbered_placeholders(sql))?;
        let mut cache = self.statements.borrow_mut();
        // Searches make many shapes of statement: the cache is bounded as SQLite's is.
        if cache.len() >= STATEMENT_CACHE {
            cache.clear();
        }
        cache.insert(sql.to_string(), prepared.clone());
        Ok(prepared)
    }
}

impl Db for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&self, sql: &str, params: &[Value<'_>]) -> Result<u64, StoreError> {
        self.send_held(None)?;
        let stmt = self.statement(sql)?;
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        Ok(self.client.borrow_mut().execute(&stmt, &refs)?)
    }

    fn execute_later(&self, sql: &str, params: &[Value<'_>]) -> Result<(), StoreError> {
        self.held.borrow_mut().push(sql, params)
    }

    fn for_each_row(&self, sql: &str, params: &[Value<'_>], each: &mut dyn FnMut(Cells) -> Result<(), StoreError>) -> Result<(), StoreError> {
        use postgres::types::Type;
        self.send_held(None)?;
        let stmt = self.statement(sql)?;
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let rows = self.client.borrow_mut().query(&stmt, &refs)?;
        for row in rows {
            let mut cells = Vec::with_capacity(row.len());
            for (i, col) in row.columns().iter().enumerate() {
                let t = col.type_();
                let cell = if *t == Type::INT8 {
                    row.try_get::<_, Option<i64>>(i)?.map(Cell::Int)
                } else if *t == Type::INT4 {
                    row.try_get::<_, Option<i32>>(i)?.map(|v| Cell::Int(v.into()))
                } else if *t == Type::INT2 {
                    row.try_get::<_, Option<i16>>(i)?.map(|v| Cell::Int(v.into()))
                } else if *t == Type::BOOL {
                    row.try_get::<_, Option<bool>>(i)?.map(|v| Cell::Int(v.into()))
                } else if *t == Type::FLOAT8 {
                    row.try_get::<_, Option<f64>>(i)?.map(Cell::Real)
                } else if *t == Type::BYTEA {
                    row.try_get::<_, Option<Vec<u8>>>(i)?.map(Cell::Blob)
                } else {
                    row.try_get::<_, Option<String>>(i)?.map(Cell::Text)
                };
                cells.push(cell.unwrap_or(Cell::Null));
            }
            each(Cells { cells })?;
        }
        Ok(())
    }

    /// Held statements go first, in the same round trip (a `COMMIT` or `RELEASE` sends the
    /// transaction's last writes with it); a `ROLLBACK` forgets them instead.
    fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        if let Some(rest) = sql.trim_start().strip_prefix("ROLLBACK TO ") {
            // A savepoint still held was never made: forgetting it and what followed undoes
            // the job (its `RELEASE`, in the same statement, is moot too).
            let name = rest.split([';', ' ']).next().unwrap_or_default();
            if self.held.borrow_mut().discard_from(&format!("SAVEPOINT {name}")) {
                return Ok(());
            }
        }
        if sql.trim_start().starts_with("ROLLBACK") {
            self.held.borrow_mut().discard();
            return Ok(self.client.borrow_mut().batch_execute(sql)?);
        }
        self.send_held(Some(sql))
    }
}

impl postgres::types::ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        match *self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) if *ty == Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::BOOL => (i != 0).to_sql(ty, out),
            Value::Int(i) => i.to_sql(ty, out),
            Value::Real(f) => f.to_sql(ty, out),
            Value::Text(s) => s.to_sql(ty, out),
            Value::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_ty: &postgres::types::Type) -> bool {
        // The variant decides: see `to_sql_checked`.
        true
    }

    fn to_sql_checked(
        &self,
        ty: &postgres::types::Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{ToSql, Type};
        let fits = match self {
            Value::Null => true,
            Value::Int(_) => [Type::INT2, Type::INT4, Type::INT8, Type::BOOL].contains(ty),
            Value::Real(_) => *ty == Type::FLOAT8,
            Value::Text(_) => <&str as ToSql>::accepts(ty),
            Value::Blob(_) => <&[u8] as ToSql>::accepts(ty),
        };
        if !fits {
            // The kind only: the value may be a secret's hash or a patient's name.
            let kind = match self {
                Value::Null => "NULL",
                Value::Int(_) => "an integer",
                Value::Real(_) => "a number",
                Value::Text(_) => "text",
                Value::Blob(_) => "bytes",
            };
            return Err(format!("{kind} cannot go into a column of type {ty}").into());
        }
        self.to_sql(ty, out)
    }
}

/// A connection to either engine: what the store's writer and readers hold, so that one
/// store serves a SQLite file or a PostgreSQL database with the same code.
pub enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(Box<PgConn>),
}

impl Conn {
    /// The SQLite connection, for the few things only SQLite has (online backup of the file,
    /// pragmas); `None` on PostgreSQL.
    pub fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match self {
            Conn::Sqlite(c) => Some(c),
            Conn::Postgres(_) => None,
        }
    }
}

impl Conn {
    /// The SQLite connection of a store that is always SQLite (a department node's, whose
    /// downtime tables live only there); an error naming `what` otherwise.
    pub fn require_sqlite(&self, what: &str) -> Result<&rusqlite::Connection, StoreError> {
        self.sqlite().ok_or_else(|| StoreError::Corrupt(format!("{what} is kept only in SQLite (a department node's store), not in PostgreSQL")))
    }
}

impl Db for Conn {
    fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    fn execute(&self, sql: &str, params: &[Value<'_>]) -> Result<u64, StoreError> {
        match self {
            Conn::Sqlite(c) => Db::execute(c, sql, params),
            Conn::Postgres(c) => c.execute(sql, params),
        }
    }

    fn for_each_row(&self, sql: &str, params: &[Value<'_>], each: &mut dyn FnMut(Cells) -> Result<(), StoreError>) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => c.for_each_row(sql, params, each),
            Conn::Postgres(c) => c.for_each_row(sql, params, each),
        }
    }

    fn execute_batch(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => Db::execute_batch(c, sql),
            Conn::Postgres(c) => c.execute_batch(sql),
        }
    }

    fn execute_later(&self, sql: &str, params: &[Value<'_>]) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => Db::execute(c, sql, params).map(|_| ()),
            Conn::Postgres(c) => c.execute_later(sql, params),
        }
    }
}

impl Conn {
    /// A transaction-control statement without parameters (`SAVEPOINT`, `RELEASE`): SQLite's
    /// from the statement cache (parsing them for every job showed in profiles); PostgreSQL's
    /// sent with the held writes.
    pub(crate) fn control(&self, sql: &str) -> Result<(), StoreError> {
        match self {
            Conn::Sqlite(c) => Db::execute(c, sql, &[]).map(|_| ()),
            // A savepoint is held with the writes (one round trip fewer per job).
            Conn::Postgres(c) if sql.starts_with("SAVEPOINT ") => c.execute_later(sql, &[]),
            Conn::Postgres(c) => c.execute_batch(sql),
        }
    }
}

/// A PostgreSQL connection string fit for a log line: a URL's password (`user:secret@`) or a
/// key-value string's `password=...` replaced by `***`.
pub fn redact_password(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://")) {
        let scheme = &url[..url.len() - rest.len()];
        let (authority, tail) = rest.split_once('/').map_or((rest, None), |(a, t)| (a, Some(t)));
        let authority = match authority.rsplit_once('@') {
            Some((user_info, host)) => match user_info.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => authority.to_string(),
            },
            None => authority.to_string(),
        };
        return match tail {
            Some(t) => format!("{scheme}{authority}/{}", redact_key_values(t)),
            None => format!("{scheme}{authority}"),
        };
    }
    redact_key_values(url)
}

fn redact_key_values(s: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for part in s.split(['&', ' ', '?']) {
        match part.split_once('=') {
            Some((k, _)) if k.trim() == "password" => out.push(format!("{k}=***")),
            _ => out.push(part.to_string()),
        }
    }
    // Rejoin with the separators the string had.
    let mut rebuilt = String::with_capacity(s.len());
    let mut parts = out.into_iter();
    rebuilt.push_str(&parts.next().unwrap_or_default());
    for sep in s.chars().filter(|c| matches!(c, '&' | ' ' | '?')) {
        rebuilt.push(sep);
        rebuilt.push_str(&parts.next().unwrap_or_default());
    }
    rebuilt
}

/// `?1` → `$1` outside quoted strings and identifiers (SQLite's numbered placeholders are
/// PostgreSQL's with another sign).
pub fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '?') if chars.peek().is_some_and(|n| n.is_ascii_digit()) => {
                out.push('$');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_outside_quotes() {
        assert_eq!(numbered_placeholders("SELECT a FROM t WHERE b = ?1 AND c = ?12"), "SELECT a FROM t WHERE b = $1 AND c = $12");
        assert_eq!(numbered_placeholders("SELECT '?1', \"x?2\" WHERE a = ?3"), "SELECT '?1', \"x?2\" WHERE a = $3");
        // An escaped quote ('') closes and reopens the string: still inside it.
        assert_eq!(numbered_placeholders("SELECT 'it''s ?1' WHERE a = ?2"), "SELECT 'it''s ?1' WHERE a = $2");
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(redact_password("postgres://vaidya:s3cret@db1:5432/vaidya"), "postgres://vaidya:***@db1:5432/vaidya");
        assert_eq!(redact_password("postgresql://vaidya@db1/vaidya?sslmode=disable&password=s3cret"), "postgresql://vaidya@db1/vaidya?sslmode=disable&password=***");
        assert_eq!(redact_password("host=/run/postgresql dbname=vaidya password=s3cret"), "host=/run/postgresql dbname=vaidya password=***");
        assert_eq!(redact_password("host=db1 dbname=vaidya"), "host=db1 dbname=vaidya");
    }

    #[test]
    fn sqlite_cells_read_into_the_store_types() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (i INTEGER, s TEXT, b BLOB, f INTEGER)").unwrap();
        let blob = vec![1u8, 2, 3];
        Db::execute(&conn, "INSERT INTO t VALUES (?1, ?2, ?3, ?4)", &sql_params![7i64, "x", &blob, true]).unwrap();
        Db::execute(&conn, "INSERT INTO t VALUES (?1, ?2, ?3, ?4)", &sql_params![None::<i64>, None::<&str>, None::<&[u8]>, false]).unwrap();
        let rows = conn
            .query_map("SELECT i, s, b, f FROM t ORDER BY rowid", &[], |r| {
                Ok((r.get::<Option<i64>>(0)?, r.get::<Option<String>>(1)?, r.get::<Option<Vec<u8>>>(2)?, r.get::<bool>(3)?))
            })
            .unwrap();
        assert_eq!(rows, [(Some(7), Some("x".into()), Some(blob), true), (None, None, None, false)]);
        // A type that does not fit is an error that names the column, not a panic.
        let err = conn.query_opt("SELECT s FROM t", &[], |r| r.get::<i64>(0)).unwrap_err();
        assert!(err.to_string().contains("column 0"), "{err}");
    }
}
