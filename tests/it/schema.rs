//! docs/schema.md stays true: its example queries run against a database synced from the
//! simulator and return rows, and every table and column the migrations create is documented
//! (and drawn in its entity diagram).

use crate::support::{Env, sync_every_stream};
use jira_sim::SimConfig;
use std::collections::BTreeMap;

fn schema_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/schema.md");
    std::fs::read_to_string(path).expect("read docs/schema.md")
}

/// The fenced blocks of `language` in `text`, each with the `###` heading above it.
fn fenced(text: &str, language: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut heading = String::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            Some(body) if line.trim() == "```" => {
                blocks.push((heading.clone(), std::mem::take(body)));
                current = None;
            }
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
            None if line.trim() == format!("```{language}") => current = Some(String::new()),
            None => {
                if let Some(title) = line.strip_prefix("### ") {
                    heading = title.to_owned();
                }
            }
        }
    }
    blocks
}

#[tokio::test]
async fn the_example_queries_of_the_schema_doc_run_on_synced_data_and_return_rows() {
    let env = Env::start(SimConfig::small()).await;
    sync_every_stream(&env).await;

    let doc = schema_doc();
    let examples = doc
        .split_once("## Example queries")
        .expect("an Example queries section")
        .1;
    let queries = fenced(examples, "sql");
    assert_eq!(queries.len(), 9, "nine example queries");
    for (title, sql) in &queries {
        // Read-only, so an example can never change the data it is shown on.
        let mut tx = env.db.pool.begin().await.expect("begin");
        sqlx::query("SET TRANSACTION READ ONLY")
            .execute(&mut *tx)
            .await
            .expect("read only");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_all(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("query {title:?} fails: {e}\n{sql}"));
        assert!(!rows.is_empty(), "query {title:?} returned no rows:\n{sql}");
        tx.rollback().await.expect("rollback");
    }
}

#[tokio::test]
async fn every_table_and_column_the_migrations_create_is_documented() {
    let env = Env::start(SimConfig::small()).await;
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema || '.' || table_name, column_name::text \
         FROM information_schema.columns WHERE table_schema IN ('jira', 'jira_secrets') \
         ORDER BY table_schema, table_name, ordinal_position",
    )
    .fetch_all(&env.db.pool)
    .await
    .expect("read the catalog");
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (table, column) in columns {
        tables.entry(table).or_default().push(column);
    }
    assert!(tables.contains_key("jira.issues"), "{tables:?}");
    assert!(
        tables.contains_key("jira_secrets.credentials"),
        "{tables:?}"
    );
    let doc = schema_doc();
    let diagram = &fenced(&doc, "mermaid")[0].1;
    for (table, columns) in &tables {
        let heading = format!("### `{table}`");
        let section = doc
            .split_once(&heading)
            .unwrap_or_else(|| panic!("docs/schema.md has no section {heading}"))
            .1;
        let section = section.split("\n### ").next().unwrap_or_default();
        for column in columns {
            assert!(
                section.contains(&format!("| `{column}` |")),
                "docs/schema.md does not describe {table}.{column}"
            );
        }
        assert!(
            diagram.contains(&format!(
                "    {} {{",
                table.rsplit('.').next().unwrap_or(table)
            )),
            "the entity diagram lacks {table}"
        );
    }
}
