//! Tables as data: a stream describes its table once ([`Table`]: columns, key, version
//! column) and hands the store rows of cells ([`Batch`]); the store writes a batch with one
//! generated statement, each column bound as one array and expanded with UNNEST.
//!
//! Every write keeps the rules of the schema: the first key column is the site (or, for
//! organization tables, the organization), an older version never overwrites a newer one (when
//! the table has a version column such as `updated`), an unchanged row is not rewritten (`raw IS
//! DISTINCT FROM`), so the count of affected rows is exactly the count of rows that changed, and
//! writing a row of a table with soft deletes clears its `deleted_at`. A batch holds each key
//! once (PostgreSQL refuses a statement that updates one row twice): a repeated key keeps the
//! newer version, or without a version column the row read last.
//!
//! The SQL is generated from the `'static` description, never from data: every value is bound.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use std::collections::HashMap;
use std::fmt::Write as _;

/// How a column's values are bound and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int8,
    Float8,
    Text,
    Bool,
    Timestamptz,
    Date,
    Jsonb,
    /// A JSON array of strings, stored as `text[]` (bound as `jsonb` and expanded in SQL,
    /// because UNNEST would flatten a two-dimensional array).
    TextArray,
}

impl Kind {
    fn array_type(self) -> &'static str {
        match self {
            Kind::Int8 => "int8[]",
            Kind::Float8 => "float8[]",
            Kind::Text => "text[]",
            Kind::Bool => "bool[]",
            Kind::Timestamptz => "timestamptz[]",
            Kind::Date => "date[]",
            Kind::Jsonb | Kind::TextArray => "jsonb[]",
        }
    }
}

/// One column: its name and kind.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

/// Shorthand for a [`Column`] in a `'static` table description.
pub const fn col(name: &'static str, kind: Kind) -> Column {
    Column { name, kind }
}

/// What the first key column of a table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// `site`: the site the row came from (every table but one).
    Site,
    /// `org_id`: the Atlassian organization (organization audit events).
    Org,
}

impl Owner {
    pub fn column(self) -> &'static str {
        match self {
            Owner::Site => "site",
            Owner::Org => "org_id",
        }
    }
}

/// A table a stream writes.
#[derive(Debug)]
pub struct Table {
    /// Schema-qualified, e.g. `jira.issues`.
    pub name: &'static str,
    pub owner: Owner,
    /// The key columns after the owner, e.g. `["id"]`.
    pub key: &'static [&'static str],
    /// Every column a row gives, key columns included, in the order of a row's cells. One of
    /// them is `raw` (the record as Jira sent it), which tells whether a row changed.
    pub columns: &'static [Column],
    /// A column (a timestamp) that orders versions: a row older than the stored one is not
    /// written. `None`: the last write wins.
    pub version: Option<&'static str>,
    /// The table has `deleted_at`: writing a row clears it.
    pub soft_delete: bool,
}

impl Table {
    fn position(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The upsert of a batch: `$1` is the owner, `$2..` one array per column.
    pub fn upsert_sql(&self) -> String {
        let owner = self.owner.column();
        let names: Vec<&str> = self.columns.iter().map(|c| c.name).collect();
        let mut sql = format!(
            "INSERT INTO {} AS t ({owner}, {}, synced_at",
            self.name,
            names.join(", ")
        );
        if self.soft_delete {
            sql.push_str(", deleted_at");
        }
        sql.push_str(")\nSELECT $1");
        for c in self.columns {
            match c.kind {
                Kind::TextArray => {
                    let _ = write!(
                        sql,
                        ", ARRAY(SELECT jsonb_array_elements_text(u.{}))",
                        c.name
                    );
                }
                _ => {
                    let _ = write!(sql, ", u.{}", c.name);
                }
            }
        }
        sql.push_str(", now()");
        if self.soft_delete {
            sql.push_str(", NULL");
        }
        sql.push_str("\nFROM UNNEST(");
        let arrays: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::{}", i + 2, c.kind.array_type()))
            .collect();
        let _ = write!(sql, "{}) AS u({})", arrays.join(", "), names.join(", "));
        let _ = write!(
            sql,
            "\nON CONFLICT ({owner}, {}) DO UPDATE SET ",
            self.key.join(", ")
        );
        let sets: Vec<String> = self
            .columns
            .iter()
            .filter(|c| !self.key.contains(&c.name))
            .map(|c| format!("{0} = excluded.{0}", c.name))
            .chain(std::iter::once("synced_at = excluded.synced_at".to_owned()))
            .chain(self.soft_delete.then(|| "deleted_at = NULL".to_owned()))
            .collect();
        sql.push_str(&sets.join(", "));
        sql.push_str("\nWHERE ");
        if let Some(version) = self.version {
            let _ = write!(sql, "excluded.{version} >= t.{version} AND ");
        }
        sql.push_str("(t.raw IS DISTINCT FROM excluded.raw");
        if self.soft_delete {
            sql.push_str(" OR t.deleted_at IS NOT NULL");
        }
        sql.push(')');
        sql
    }
}

/// One value of a row, of the kind of its column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Int8(Option<i64>),
    Float8(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
    Timestamptz(Option<DateTime<Utc>>),
    Date(Option<NaiveDate>),
    Jsonb(Option<Value>),
    /// JSON text as it was received, stored as `jsonb` without being decoded ([`Kind::Jsonb`]):
    /// a page of full issues is megabytes, several times more once decoded.
    RawJson(RawJson),
    /// A JSON array of strings ([`Kind::TextArray`]).
    TextArray(Value),
}

/// JSON text kept as received ([`Cell::RawJson`]).
#[derive(Debug, Clone)]
pub struct RawJson(pub Box<serde_json::value::RawValue>);

impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.0.get() == other.0.get()
    }
}

impl From<RawJson> for Cell {
    fn from(v: RawJson) -> Cell {
        Cell::RawJson(v)
    }
}

/// A `jsonb` value bound from a decoded value or from text as received.
#[derive(Clone, Copy)]
enum JsonRef<'a> {
    Value(&'a Value),
    Raw(&'a serde_json::value::RawValue),
}

impl serde::Serialize for JsonRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            JsonRef::Value(v) => v.serialize(serializer),
            JsonRef::Raw(r) => r.serialize(serializer),
        }
    }
}

impl Cell {
    fn kind(&self) -> Kind {
        match self {
            Cell::Int8(_) => Kind::Int8,
            Cell::Float8(_) => Kind::Float8,
            Cell::Text(_) => Kind::Text,
            Cell::Bool(_) => Kind::Bool,
            Cell::Timestamptz(_) => Kind::Timestamptz,
            Cell::Date(_) => Kind::Date,
            Cell::Jsonb(_) | Cell::RawJson(_) => Kind::Jsonb,
            Cell::TextArray(_) => Kind::TextArray,
        }
    }
}

impl From<i64> for Cell {
    fn from(v: i64) -> Cell {
        Cell::Int8(Some(v))
    }
}
impl From<Option<i64>> for Cell {
    fn from(v: Option<i64>) -> Cell {
        Cell::Int8(v)
    }
}
impl From<Option<f64>> for Cell {
    fn from(v: Option<f64>) -> Cell {
        Cell::Float8(v)
    }
}
impl From<String> for Cell {
    fn from(v: String) -> Cell {
        Cell::Text(Some(v))
    }
}
impl From<Option<String>> for Cell {
    fn from(v: Option<String>) -> Cell {
        Cell::Text(v)
    }
}
impl From<bool> for Cell {
    fn from(v: bool) -> Cell {
        Cell::Bool(Some(v))
    }
}
impl From<Option<bool>> for Cell {
    fn from(v: Option<bool>) -> Cell {
        Cell::Bool(v)
    }
}
impl From<DateTime<Utc>> for Cell {
    fn from(v: DateTime<Utc>) -> Cell {
        Cell::Timestamptz(Some(v))
    }
}
impl From<Option<DateTime<Utc>>> for Cell {
    fn from(v: Option<DateTime<Utc>>) -> Cell {
        Cell::Timestamptz(v)
    }
}
impl From<Option<NaiveDate>> for Cell {
    fn from(v: Option<NaiveDate>) -> Cell {
        Cell::Date(v)
    }
}
impl From<Value> for Cell {
    fn from(v: Value) -> Cell {
        Cell::Jsonb(Some(v))
    }
}
impl From<Option<Value>> for Cell {
    fn from(v: Option<Value>) -> Cell {
        Cell::Jsonb(v)
    }
}

/// Rows per upsert statement ([`Batch::write`]): a page of issues is one statement; the
/// histories of a thousand issues are several, in the same transaction.
const STATEMENT_ROWS: usize = 1000;

/// A row that knows its table: what a stream turns a record into.
pub trait Row {
    /// The table the row goes to.
    fn table() -> &'static Table;
    /// The row's cells, in the order of the table's columns.
    fn into_cells(self) -> Vec<Cell>;
}

/// A key value, for finding a row repeated within a batch, and for writing rows in key order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum KeyPart {
    Int(Option<i64>),
    Text(Option<String>),
    Other(String),
}

/// Rows of one table for one owner, written together.
#[derive(Debug)]
pub struct Batch {
    table: &'static Table,
    owner: String,
    rows: Vec<Vec<Cell>>,
    positions: HashMap<Vec<KeyPart>, usize>,
}

impl Batch {
    /// An empty batch of `table` rows belonging to `owner` (the site, or the organization).
    pub fn new(table: &'static Table, owner: &str) -> Batch {
        Batch {
            table,
            owner: owner.to_owned(),
            rows: Vec::new(),
            positions: HashMap::new(),
        }
    }

    /// A batch of `rows`.
    pub fn of<R: Row>(owner: &str, rows: impl IntoIterator<Item = R>) -> Batch {
        let mut batch = Batch::new(R::table(), owner);
        for row in rows {
            batch.push_row(row);
        }
        batch
    }

    pub fn table(&self) -> &'static Table {
        self.table
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Adds a row of this batch's table.
    pub fn push_row<R: Row>(&mut self, row: R) {
        debug_assert!(
            std::ptr::eq(R::table(), self.table),
            "a row of another table"
        );
        self.push(row.into_cells());
    }

    /// Adds a row given as cells, in the order of the table's columns. A key already in the
    /// batch keeps the newer version (by the table's version column; the row read last when
    /// it has none).
    ///
    /// # Panics
    /// When the cells do not match the table's columns: a programming error in the stream.
    pub fn push(&mut self, cells: Vec<Cell>) {
        let table = self.table;
        assert_eq!(
            cells.len(),
            table.columns.len(),
            "{}: wrong number of cells",
            table.name
        );
        for (cell, column) in cells.iter().zip(table.columns) {
            assert_eq!(
                cell.kind(),
                column.kind,
                "{}.{}: wrong kind",
                table.name,
                column.name
            );
        }
        let key: Vec<KeyPart> = table
            .key
            .iter()
            .filter_map(|name| table.position(name))
            .map(|i| match &cells[i] {
                Cell::Int8(v) => KeyPart::Int(*v),
                Cell::Text(v) => KeyPart::Text(v.clone()),
                other => KeyPart::Other(format!("{other:?}")),
            })
            .collect();
        match self.positions.get(&key) {
            None => {
                self.positions.insert(key, self.rows.len());
                self.rows.push(cells);
            }
            Some(&at) => {
                let newer = match table.version.and_then(|v| table.position(v)) {
                    Some(v) => version_of(&cells[v]) > version_of(&self.rows[at][v]),
                    None => true,
                };
                if newer {
                    self.rows[at] = cells;
                }
            }
        }
    }

    /// Writes the batch on `conn`, its rows in key order; returns the rows that changed.
    ///
    /// Key order: transactions that write overlapping rows (two pages naming the same link
    /// from its two issues) take the rows' locks in the same order, so they wait for each
    /// other instead of deadlocking.
    pub async fn write(&self, conn: &mut PgConnection) -> sqlx::Result<u64> {
        let mut order: Vec<(&Vec<KeyPart>, usize)> =
            self.positions.iter().map(|(key, &at)| (key, at)).collect();
        order.sort_unstable();
        let rows: Vec<&Vec<Cell>> = order.iter().map(|&(_, at)| &self.rows[at]).collect();
        // In statements of a bounded size: a statement's values are copied into one message,
        // and a batch of 10,000 change histories would make it tens of megabytes.
        let mut changed = 0;
        for chunk in rows.chunks(STATEMENT_ROWS) {
            changed += self.write_refs(conn, chunk).await?;
        }
        Ok(changed)
    }

    /// Writes the rows at `range` only.
    pub async fn write_rows(
        &self,
        conn: &mut PgConnection,
        range: std::ops::Range<usize>,
    ) -> sqlx::Result<u64> {
        let rows: Vec<&Vec<Cell>> = self.rows[range].iter().collect();
        self.write_refs(conn, &rows).await
    }

    async fn write_refs(&self, conn: &mut PgConnection, rows: &[&Vec<Cell>]) -> sqlx::Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let sql = self.table.upsert_sql();
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(self.owner.as_str());
        for column in transpose(self.table, rows) {
            query = match column {
                Array::Int8(v) => query.bind(v),
                Array::Float8(v) => query.bind(v),
                Array::Text(v) => query.bind(v),
                Array::Bool(v) => query.bind(v),
                Array::Timestamptz(v) => query.bind(v),
                Array::Date(v) => query.bind(v),
                Array::Jsonb(v) => query.bind(v),
            };
        }
        Ok(query.execute(conn).await?.rows_affected())
    }

    /// The id of row `index` as text: its first key column's value.
    pub fn record_id(&self, index: usize) -> Option<String> {
        let at = self.table.position(self.table.key.first()?)?;
        match &self.rows.get(index)?[at] {
            Cell::Int8(v) => v.map(|v| v.to_string()),
            Cell::Text(v) => v.clone(),
            _ => None,
        }
    }

    /// The ids of every row, as text.
    pub fn record_ids(&self) -> Vec<String> {
        (0..self.rows.len())
            .filter_map(|i| self.record_id(i))
            .collect()
    }

    /// Row `index`'s `raw` record as JSON text.
    pub fn raw_text(&self, index: usize) -> String {
        let raw = self
            .table
            .position("raw")
            .and_then(|at| self.rows.get(index).map(|row| &row[at]));
        match raw {
            Some(Cell::Jsonb(Some(value))) => value.to_string(),
            Some(Cell::RawJson(text)) => text.0.get().to_owned(),
            _ => String::new(),
        }
    }
}

fn version_of(cell: &Cell) -> Option<DateTime<Utc>> {
    match cell {
        Cell::Timestamptz(v) => *v,
        _ => None,
    }
}

/// One column's values, bound as one array (borrowed from the rows).
enum Array<'a> {
    Int8(Vec<Option<i64>>),
    Float8(Vec<Option<f64>>),
    Text(Vec<Option<&'a str>>),
    Bool(Vec<Option<bool>>),
    Timestamptz(Vec<Option<DateTime<Utc>>>),
    Date(Vec<Option<NaiveDate>>),
    Jsonb(Vec<Option<sqlx::types::Json<JsonRef<'a>>>>),
}

/// Rows of cells into one array per column, borrowing the values (raw JSON is most of a page).
fn transpose<'a>(table: &Table, rows: &[&'a Vec<Cell>]) -> Vec<Array<'a>> {
    let n = rows.len();
    let mut columns: Vec<Array<'a>> = table
        .columns
        .iter()
        .map(|c| match c.kind {
            Kind::Int8 => Array::Int8(Vec::with_capacity(n)),
            Kind::Float8 => Array::Float8(Vec::with_capacity(n)),
            Kind::Text => Array::Text(Vec::with_capacity(n)),
            Kind::Bool => Array::Bool(Vec::with_capacity(n)),
            Kind::Timestamptz => Array::Timestamptz(Vec::with_capacity(n)),
            Kind::Date => Array::Date(Vec::with_capacity(n)),
            Kind::Jsonb | Kind::TextArray => Array::Jsonb(Vec::with_capacity(n)),
        })
        .collect();
    for row in rows {
        for (cell, column) in row.iter().zip(columns.iter_mut()) {
            match (cell, column) {
                (Cell::Int8(v), Array::Int8(out)) => out.push(*v),
                (Cell::Float8(v), Array::Float8(out)) => out.push(*v),
                (Cell::Text(v), Array::Text(out)) => out.push(v.as_deref()),
                (Cell::Bool(v), Array::Bool(out)) => out.push(*v),
                (Cell::Timestamptz(v), Array::Timestamptz(out)) => out.push(*v),
                (Cell::Date(v), Array::Date(out)) => out.push(*v),
                (Cell::Jsonb(v), Array::Jsonb(out)) => {
                    out.push(v.as_ref().map(|v| sqlx::types::Json(JsonRef::Value(v))))
                }
                (Cell::RawJson(v), Array::Jsonb(out)) => {
                    out.push(Some(sqlx::types::Json(JsonRef::Raw(&v.0))))
                }
                (Cell::TextArray(v), Array::Jsonb(out)) => {
                    out.push(Some(sqlx::types::Json(JsonRef::Value(v))))
                }
                // `push` checked every cell's kind against its column.
                _ => unreachable!("a cell of the wrong kind passed Batch::push"),
            }
        }
    }
    columns
}

#[cfg(test)]
mod tests {
    use super::*;

    static THINGS: Table = Table {
        name: "jira.things",
        owner: Owner::Site,
        key: &["id"],
        columns: &[
            col("id", Kind::Int8),
            col("labels", Kind::TextArray),
            col("updated", Kind::Timestamptz),
            col("raw", Kind::Jsonb),
        ],
        version: Some("updated"),
        soft_delete: true,
    };

    fn row(id: i64, minute: u32, raw: &str) -> Vec<Cell> {
        let at = DateTime::from_timestamp(1_700_000_000 + i64::from(minute) * 60, 0);
        vec![
            Cell::Int8(Some(id)),
            Cell::TextArray(serde_json::json!([])),
            Cell::Timestamptz(at),
            Cell::Jsonb(Some(serde_json::json!(raw))),
        ]
    }

    #[test]
    fn the_upsert_binds_every_column_and_keeps_the_schemas_rules() {
        let sql = THINGS.upsert_sql();
        assert!(sql.starts_with("INSERT INTO jira.things AS t (site, id, labels, updated, raw, synced_at, deleted_at)"), "{sql}");
        assert!(
            sql.contains("ARRAY(SELECT jsonb_array_elements_text(u.labels))"),
            "{sql}"
        );
        assert!(
            sql.contains("UNNEST($2::int8[], $3::jsonb[], $4::timestamptz[], $5::jsonb[])"),
            "{sql}"
        );
        assert!(
            sql.contains("ON CONFLICT (site, id) DO UPDATE SET labels = excluded.labels"),
            "{sql}"
        );
        assert!(
            !sql.contains("SET id ="),
            "key columns are not updated: {sql}"
        );
        assert!(sql.ends_with("WHERE excluded.updated >= t.updated AND (t.raw IS DISTINCT FROM excluded.raw OR t.deleted_at IS NOT NULL)"), "{sql}");
    }

    #[test]
    fn a_repeated_key_keeps_the_newer_version() {
        let mut batch = Batch::new(&THINGS, "site");
        batch.push(row(1, 5, "new"));
        batch.push(row(2, 1, "other"));
        batch.push(row(1, 3, "old"));
        assert_eq!(batch.len(), 2);
        assert_eq!(
            batch.rows[0][3],
            Cell::Jsonb(Some(serde_json::json!("new")))
        );
        batch.push(row(1, 9, "newest"));
        assert_eq!(
            batch.rows[0][3],
            Cell::Jsonb(Some(serde_json::json!("newest")))
        );
    }

    #[test]
    #[should_panic(expected = "wrong kind")]
    fn a_cell_of_the_wrong_kind_is_a_programming_error() {
        let mut cells = row(1, 0, "x");
        cells[0] = Cell::Text(Some("1".to_owned()));
        Batch::new(&THINGS, "site").push(cells);
    }
}
