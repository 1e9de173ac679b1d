//! A throwaway cluster starts from the machine's binaries, serves databases, and leaves
//! nothing behind once dropped.

use sqlx::Connection;
use std::time::{Duration, Instant};
use throwaway_pg::TempCluster;

#[tokio::test]
async fn a_cluster_serves_new_databases_and_removes_itself_when_dropped() {
    let cluster = TempCluster::start()
        .await
        .expect("a throwaway cluster starts");
    let directory = cluster.directory().to_owned();
    assert!(directory.exists());
    let url = cluster
        .create_database("created_here")
        .await
        .expect("a database");
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connects");
    let (name,): (String,) = sqlx::query_as("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .expect("asks");
    assert_eq!(name, "created_here");
    conn.close().await.expect("closes");
    assert!(cluster.create_database("no; drop").await.is_err());
    drop(cluster);
    let deadline = Instant::now() + Duration::from_secs(30);
    while directory.exists() {
        assert!(
            Instant::now() < deadline,
            "{} is still there",
            directory.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
