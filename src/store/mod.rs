//! The only code that speaks SQL, reads included: the pool, migrations, table writes, soft
//! deletes, checkpoints, the run history, the credentials row, the writer lease's lock and the
//! reads behind `jira-sync status`.
//!
//! Every write of a page happens in one transaction together with the stream's checkpoint
//! change ([`Store::write_page`]), so a crash at any instant leaves rows and cursor consistent.
//! The store knows nothing of Jira's JSON: streams describe their tables ([`table::Table`]) and
//! hand it rows of typed cells.

pub mod checkpoints;
pub mod children;
pub mod compat;
pub mod credentials;
pub mod lease;
pub mod quarantine;
pub mod runs;
pub mod status;
pub mod table;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{PgPool, Postgres, Transaction};
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use checkpoints::CheckpointWrite;
pub use quarantine::SetAside;
pub use table::{Batch, Cell, Row, Table};

use crate::failure::Failure;
use crate::settings::DatabaseSettings;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A handle on the database; cheap to clone (clones share the pool and the fence).
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    /// The writer lease's site and epoch this process writes under, once it holds the lease.
    fence: Arc<Mutex<Option<(String, i64)>>>,
    /// How long to wait for the database's answer ([`Store::bounded`]).
    answer_within: Duration,
}

/// A write refused because another process took over the site's writer lease since this one
/// took it: the fencing epoch moved on.
#[derive(Debug, thiserror::Error)]
#[error(
    "another jira-sync took over this site's writer lease (epoch {found}; this process holds \
     {ours}): nothing more is written by this process"
)]
pub struct LeaseLost {
    pub ours: i64,
    pub found: i64,
}

/// A page of rows, and the checkpoint change that covers them: written in one transaction.
/// The batches may belong to several tables (an issue page and its issues' child records).
pub struct PageWrite {
    /// The stream writing it: records set aside are filed under it.
    pub stream: &'static str,
    pub batches: Vec<Batch>,
    pub checkpoint: CheckpointWrite,
    /// Records of the page that cannot be stored, filed in quarantine with it.
    pub set_aside: Vec<SetAside>,
    /// The stream has records in quarantine: those the first batch now holds are taken out.
    pub resolves: bool,
    /// Records of issues that their issues' complete lists no longer name.
    pub prunes: Vec<children::Prune>,
    /// Which issues' records of a child the page read, and at which version.
    pub synced: Vec<children::Synced>,
    /// Records to mark deleted by id (a feed of deletions): the table and the ids.
    pub deletes: Vec<(&'static table::Table, Vec<i64>)>,
    /// A whole listing of a table (a full refresh): its live rows whose id is not named are
    /// marked deleted. An empty listing marks nothing.
    pub listing: Option<(&'static table::Table, Vec<String>)>,
}

impl PageWrite {
    /// A write of no rows yet, without a checkpoint change: batches are added to it.
    pub fn empty(stream: &'static str) -> PageWrite {
        let mut page = PageWrite::new(stream, Batch::new(&NO_TABLE, ""), CheckpointWrite::None);
        page.batches.clear();
        page
    }

    /// One batch of `stream` and the checkpoint change that covers it.
    pub fn new(stream: &'static str, batch: Batch, checkpoint: CheckpointWrite) -> PageWrite {
        PageWrite {
            stream,
            batches: vec![batch],
            checkpoint,
            set_aside: Vec::new(),
            resolves: false,
            prunes: Vec::new(),
            synced: Vec::new(),
            deletes: Vec::new(),
            listing: None,
        }
    }
}

/// The table of the placeholder batch of [`PageWrite::empty`] (never written).
static NO_TABLE: Table = Table {
    name: "none",
    owner: table::Owner::Site,
    key: &[],
    columns: &[],
    version: None,
    soft_delete: false,
};

/// What a page write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Rows that changed.
    pub rows: u64,
    /// The ids of the records filed in quarantine (those the page brought, and rows
    /// PostgreSQL refused).
    pub set_aside: Vec<String>,
    /// Per batch: its table, the rows it held and the rows that changed.
    pub tables: Vec<(&'static str, u64, u64)>,
}

impl Store {
    /// Connects as `[database]` says, with an actionable error when no URL is configured.
    pub async fn open(database: &DatabaseSettings) -> anyhow::Result<Store> {
        Store::open_with(database, database.max_connections).await
    }

    /// [`Store::open`] with at most `max_connections` connections.
    pub async fn open_with(
        database: &DatabaseSettings,
        max_connections: u32,
    ) -> anyhow::Result<Store> {
        let url = database.require_url()?;
        let options = connect_options(database, "jira-sync")?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(database.connect_timeout_secs))
            .connect_with(options)
            .await
            .map_err(|err| {
                anyhow::Error::new(err).context(format!(
                    "cannot connect to PostgreSQL at {}: check database.url (or DATABASE_URL), \
                     database.sslmode, that the server runs and that the role may log in",
                    describe_url(url)
                ))
            })?;
        let mut store = Store::from_pool(pool);
        store.answer_within = answer_within(database);
        Ok(store)
    }

    /// Wraps an existing pool (tests and the demo).
    pub fn from_pool(pool: PgPool) -> Store {
        Store {
            pool,
            fence: Arc::default(),
            answer_within: Duration::from_secs(125),
        }
    }

    /// Runs `work` (statements of this store), giving up once the database has not answered
    /// within the statement timeout and a little more: a database that stopped answering
    /// (a network that drops packets) must not hang a run.
    async fn bounded<T>(&self, work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
        match tokio::time::timeout(self.answer_within, work).await {
            Ok(result) => result,
            Err(_) => Err(
                anyhow::Error::new(sqlx::Error::PoolTimedOut).context(format!(
                    "PostgreSQL did not answer within {}s (database.statement_timeout_secs)",
                    self.answer_within.as_secs()
                )),
            ),
        }
    }

    /// From now on every data write checks, in its own transaction, that `site`'s writer
    /// lease is still at `epoch` (the one this process took); once another process has taken
    /// it, writes fail with [`LeaseLost`] and commit nothing.
    pub fn fence(&self, site: &str, epoch: i64) {
        let mut fence = self.fence.lock().unwrap_or_else(PoisonError::into_inner);
        *fence = Some((site.to_owned(), epoch));
    }

    /// Fails unless this process still holds the lease it fenced with (or never fenced). The
    /// share lock keeps a new holder from moving the epoch on until this transaction ends.
    async fn check_fence(&self, conn: &mut sqlx::PgConnection) -> anyhow::Result<()> {
        let fence = self
            .fence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some((site, ours)) = fence else {
            return Ok(());
        };
        let found: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM jira.writer_leases WHERE site = $1 FOR SHARE")
                .bind(&site)
                .fetch_optional(conn)
                .await?;
        match found {
            Some(found) if found == ours => Ok(()),
            found => Err(LeaseLost {
                ours,
                found: found.unwrap_or(0),
            }
            .into()),
        }
    }

    /// A transaction for a data write, its fence checked first.
    async fn begin_write(&self) -> anyhow::Result<Transaction<'static, Postgres>> {
        let mut tx = self.begin().await?;
        self.check_fence(&mut tx).await?;
        Ok(tx)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations. sqlx takes an advisory lock, so replicas may start together.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .context("cannot apply the database migrations")?;
        Ok(())
    }

    /// The migrations this binary carries that the database has not applied (each one, not
    /// just the latest: a migration added out of order must be applied too), as
    /// `version description`.
    pub async fn missing_migrations(&self) -> anyhow::Result<Vec<String>> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?;
        Ok(MIGRATOR
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| format!("{} {}", m.version, m.description))
            .collect())
    }

    async fn begin(&self) -> anyhow::Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// Writes a page: every batch, the records set aside, then the checkpoint change, in one
    /// transaction.
    ///
    /// Should PostgreSQL refuse a row's value (a data exception or a program limit, such as
    /// nesting too deep for jsonb), the page is written again row by row, each row behind a
    /// savepoint, and the rows refused are set aside with the rest of the page: one record
    /// cannot stop the others, nor the cursor.
    pub async fn write_page(&self, site: &str, page: PageWrite) -> anyhow::Result<Written> {
        self.bounded(self.write_page_now(site, page)).await
    }

    async fn write_page_now(&self, site: &str, page: PageWrite) -> anyhow::Result<Written> {
        let mut tx = self.begin_write().await?;
        match write_batches(&mut tx, &page.batches).await {
            Ok(tables) => {
                let rows = tables.iter().map(|t| t.2).sum();
                let set_aside = finish_page(&mut tx, site, page).await?;
                // A connection keeps buffers as big as the biggest message it sent (a page of
                // issues is megabytes); back in the pool, it should not hold on to them.
                sqlx::Connection::shrink_buffers(&mut *tx);
                tx.commit().await?;
                Ok(Written {
                    rows,
                    set_aside,
                    tables,
                })
            }
            Err(err) if refuses_a_value(&err) => {
                tx.rollback().await?;
                self.write_page_row_by_row(site, page).await
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn write_page_row_by_row(
        &self,
        site: &str,
        mut page: PageWrite,
    ) -> anyhow::Result<Written> {
        let mut tx = self.begin_write().await?;
        let mut tables = Vec::new();
        let mut refused = Vec::new();
        for batch in &page.batches {
            let mut changed = 0;
            for index in 0..batch.len() {
                sqlx::query("SAVEPOINT row_write").execute(&mut *tx).await?;
                match batch.write_rows(&mut tx, index..index + 1).await {
                    Ok(n) => changed += n,
                    Err(err) if refuses_a_value(&err) => {
                        sqlx::query("ROLLBACK TO SAVEPOINT row_write")
                            .execute(&mut *tx)
                            .await?;
                        let record_id = batch.record_id(index).unwrap_or_default();
                        tracing::warn!(
                            stream = page.stream,
                            table = batch.table().name,
                            record = %record_id,
                            error = %err,
                            "PostgreSQL refused a record; it is set aside in jira.quarantine"
                        );
                        refused.push(SetAside {
                            stream: page.stream,
                            record_id,
                            record_key: None,
                            error: format!(
                                "PostgreSQL refused it in {}: {err}",
                                batch.table().name
                            ),
                            raw_text: batch.raw_text(index),
                        });
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            tables.push((batch.table().name, batch.len() as u64, changed));
        }
        page.set_aside.extend(refused);
        let rows = tables.iter().map(|t| t.2).sum();
        let set_aside = finish_page(&mut tx, site, page).await?;
        tx.commit().await?;
        Ok(Written {
            rows,
            set_aside,
            tables,
        })
    }

    /// Writes rows without a checkpoint (full refreshes); returns the rows that changed.
    pub async fn write(&self, stream: &'static str, batch: Batch) -> anyhow::Result<Written> {
        self.write_page("", PageWrite::new(stream, batch, CheckpointWrite::None))
            .await
    }

    /// The numeric ids of the rows of `table` owned by `site` whose `column` is `value` and
    /// that are not marked deleted (the live issues of a project, say).
    pub async fn live_ids_where(
        &self,
        table: &'static Table,
        site: &str,
        column: &'static str,
        value: i64,
    ) -> anyhow::Result<Vec<i64>> {
        let sql = format!(
            "SELECT id FROM {} WHERE {} = $1 AND {column} = $2 AND deleted_at IS NULL",
            table.name,
            table.owner.column()
        );
        let rows: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(site)
            .bind(value)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Creates or replaces the Fivetran-compatible views of `site` in `schema`
    /// ([`compat`]); an empty `schema` creates none. In one transaction: all or nothing.
    pub async fn install_compat(&self, schema: &str, site: &str) -> anyhow::Result<()> {
        if schema.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(
            compat::valid_schema_name(schema),
            "database.fivetran_schema {schema:?} is not a plain lower-case name"
        );
        let mut tx = self.pool.begin().await?;
        for statement in compat::statements(schema, site) {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut *tx)
                .await
                .map_err(|err| {
                    anyhow::anyhow!(
                        "creating the views of {schema} failed: {err}; a view another object \
                         depends on (a dbt model, say) cannot change its columns: drop that \
                         object, or set database.fivetran_schema to another name"
                    )
                })?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The ids of the live scrum boards of `site` (the boards sprints are listed under).
    pub async fn live_scrum_boards(&self, site: &str) -> anyhow::Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM jira.boards WHERE site = $1 AND deleted_at IS NULL \
             AND type = 'scrum' ORDER BY id",
        )
        .bind(site)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Refreshes the planner's statistics of `tables` (names from the code's table
    /// definitions, such as `jira.issues`).
    /// It takes seconds on big tables, which is expected: it runs on a connection of its own
    /// that does not log it as a slow statement.
    pub async fn analyze(&self, tables: &[&'static str]) -> anyhow::Result<()> {
        use sqlx::{ConnectOptions, Connection};
        let options = self
            .pool
            .connect_options()
            .as_ref()
            .clone()
            .disable_statement_logging();
        let mut conn = options.connect().await?;
        let sql = format!("ANALYZE {}", tables.join(", "));
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(())
    }

    /// The live custom fields of `site` whose type (`schema_custom`) is one of `types`, by id.
    pub async fn custom_fields_of_types(
        &self,
        site: &str,
        types: &[&str],
    ) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM jira.fields WHERE site = $1 AND deleted_at IS NULL AND custom \
             AND schema_custom = ANY($2) ORDER BY id",
        )
        .bind(site)
        .bind(types)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Whether `table` holds any row of `site`, live or deleted.
    pub async fn has_rows(&self, table: &'static Table, site: &str) -> anyhow::Result<bool> {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE {} = $1)",
            table.name,
            table.owner.column()
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(site)
            .fetch_one(&self.pool)
            .await?)
    }

    /// The numeric ids of the live rows of `table` owned by `site` (every live project).
    pub async fn live_ids(&self, table: &'static Table, site: &str) -> anyhow::Result<Vec<i64>> {
        let sql = format!(
            "SELECT id FROM {} WHERE {} = $1 AND deleted_at IS NULL ORDER BY id",
            table.name,
            table.owner.column()
        );
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(site)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Soft-deletes (never `DELETE`s) the rows of `table` with these ids: sets `deleted_at`
    /// where it is not set yet. Returns how many it marked.
    pub async fn mark_deleted(
        &self,
        table: &'static Table,
        site: &str,
        ids: &[i64],
    ) -> anyhow::Result<u64> {
        let mut tx = self.begin_write().await?;
        let marked = mark_deleted_in(&mut tx, table, site, ids).await?;
        tx.commit().await?;
        Ok(marked)
    }

    /// How many live rows of `table` `site` has, and how many of them have an id not in
    /// `seen` (a full listing): what a full refresh would mark deleted.
    pub async fn count_missing(
        &self,
        table: &'static Table,
        site: &str,
        seen: &[i64],
    ) -> anyhow::Result<(i64, i64)> {
        let sql = format!(
            "SELECT count(*), count(*) FILTER (WHERE NOT (id = ANY($2::int8[]))) FROM {} \
             WHERE {} = $1 AND deleted_at IS NULL",
            table.name,
            table.owner.column()
        );
        let counts: (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(site)
            .bind(seen)
            .fetch_one(&self.pool)
            .await?;
        Ok(counts)
    }

    /// Soft-deletes the live rows of `table` whose id is not in `seen` (a full listing).
    pub async fn mark_missing_deleted(
        &self,
        table: &'static Table,
        site: &str,
        seen: &[i64],
    ) -> anyhow::Result<u64> {
        let sql = format!(
            "UPDATE {} SET deleted_at = now() \
             WHERE {} = $1 AND deleted_at IS NULL AND NOT (id = ANY($2::int8[]))",
            table.name,
            table.owner.column()
        );
        let mut tx = self.begin_write().await?;
        let result = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(site)
            .bind(seen)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(result.rows_affected())
    }
}

/// Soft-deletes the rows of `table` with these ids; returns how many it marked.
async fn mark_deleted_in(
    conn: &mut sqlx::PgConnection,
    table: &'static Table,
    site: &str,
    ids: &[i64],
) -> sqlx::Result<u64> {
    let sql = format!(
        "UPDATE {} SET deleted_at = now() \
         WHERE {} = $1 AND id = ANY($2::int8[]) AND deleted_at IS NULL",
        table.name,
        table.owner.column()
    );
    let result = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(site)
        .bind(ids)
        .execute(&mut *conn)
        .await?;
    Ok(result.rows_affected())
}

/// Writes every batch; per batch its table, its rows and the rows that changed.
async fn write_batches(
    conn: &mut sqlx::PgConnection,
    batches: &[Batch],
) -> sqlx::Result<Vec<(&'static str, u64, u64)>> {
    let mut written = Vec::with_capacity(batches.len());
    for batch in batches {
        let changed = batch.write(conn).await?;
        written.push((batch.table().name, batch.len() as u64, changed));
    }
    Ok(written)
}

/// The rest of a page's transaction after its rows: the records set aside, those resolved,
/// and last the checkpoint, so its row is locked only for the moment before the commit.
/// Returns the ids of the records set aside.
async fn finish_page(
    conn: &mut sqlx::PgConnection,
    site: &str,
    page: PageWrite,
) -> anyhow::Result<Vec<String>> {
    if page.resolves
        && let Some(batch) = page.batches.first()
    {
        let held: Vec<String> = batch
            .record_ids()
            .into_iter()
            .filter(|id| !page.set_aside.iter().any(|s| &s.record_id == id))
            .collect();
        quarantine::resolve(conn, site, page.stream, &held).await?;
    }
    quarantine::set_aside(conn, site, &page.set_aside).await?;
    for prune in &page.prunes {
        children::prune(conn, site, prune).await?;
    }
    for (table, ids) in &page.deletes {
        if !ids.is_empty() {
            mark_deleted_in(conn, table, site, ids).await?;
        }
    }
    if let Some((table, seen)) = &page.listing
        && !seen.is_empty()
    {
        let sql = format!(
            "UPDATE {} SET deleted_at = now() \
             WHERE {} = $1 AND deleted_at IS NULL AND NOT (id::text = ANY($2::text[]))",
            table.name,
            table.owner.column()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(site)
            .bind(seen)
            .execute(&mut *conn)
            .await?;
    }
    children::mark_synced(conn, site, &page.synced).await?;
    checkpoints::apply(conn, site, page.checkpoint).await?;
    Ok(page.set_aside.into_iter().map(|s| s.record_id).collect())
}

/// How each connection is made: the URL, with `sslmode`, a CA certificate and the statement
/// timeout from `[database]`, and `application_name` (how `pg_stat_activity` names it).
pub fn connect_options(
    database: &DatabaseSettings,
    application_name: &str,
) -> anyhow::Result<PgConnectOptions> {
    let url = database.require_url()?;
    // The parse error is not quoted whole: it could contain the password.
    let mut options = PgConnectOptions::from_str(url.expose_secret()).map_err(|err| {
        anyhow::anyhow!(
            "database.url is not a valid PostgreSQL URL: {}",
            redact(&err.to_string(), url)
        )
    })?;
    if !database.sslmode.is_empty() {
        let mode = PgSslMode::from_str(&database.sslmode)
            .map_err(|_| anyhow::anyhow!("database.sslmode {:?} is unknown", database.sslmode))?;
        options = options.ssl_mode(mode);
    }
    if let Some(cert) = &database.ssl_root_cert {
        options = options.ssl_root_cert(cert);
    }
    let timeout = format!("{}s", database.statement_timeout_secs);
    Ok(options
        .application_name(application_name)
        .options([("statement_timeout", timeout.as_str())]))
}

/// The statement timeout and a little more: how long to wait for any answer.
pub fn answer_within(database: &DatabaseSettings) -> Duration {
    Duration::from_secs(database.statement_timeout_secs.saturating_add(5))
}

/// Whether PostgreSQL refused a value of a row (SQLSTATE class 22, data exception, or 54,
/// program limit exceeded), rather than failing the statement for a reason no row can cure.
fn refuses_a_value(err: &sqlx::Error) -> bool {
    let Some(db) = err.as_database_error() else {
        return false;
    };
    db.code()
        .is_some_and(|code| code.starts_with("22") || code.starts_with("54"))
}

/// Whether `err` is the database's: a failed statement, connection or migration.
pub fn failure_of(err: &(dyn std::error::Error + 'static)) -> Option<Failure> {
    if err.is::<LeaseLost>() || err.is::<lease::LeaseHeld>() {
        return Some(Failure::LeaseHeld);
    }
    let database = err.is::<sqlx::Error>() || err.is::<sqlx::migrate::MigrateError>();
    database.then_some(Failure::Database)
}

/// `host:port/database` of a connection URL, without user or password, for messages.
pub fn describe_url(url: &SecretString) -> String {
    match url::Url::parse(url.expose_secret()) {
        Ok(u) => format!(
            "{}:{}{}",
            u.host_str().unwrap_or("localhost"),
            u.port().unwrap_or(5432),
            u.path()
        ),
        Err(_) => "(unparsable URL)".to_string(),
    }
}

/// Removes the URL's password from `text`, should a driver message quote it.
fn redact(text: &str, url: &SecretString) -> String {
    match url::Url::parse(url.expose_secret()) {
        Ok(u) => match u.password() {
            Some(p) if !p.is_empty() => text.replace(p, "[REDACTED]"),
            _ => text.to_string(),
        },
        Err(_) => text.to_string(),
    }
}
