//! Records Jira serves that PostgreSQL refuses, or that cannot be read: stored by a documented
//! rule where they can be, set aside in `jira.quarantine` where they cannot, and never a stop
//! for the rest of the page, the stream or the census.

use crate::support::{ALL, Env, deleted_issue_ids, stored_issues, sync_succeeds, truth_issues};
use jira_sim::{Poison, SimConfig};
use jira_sync::engine::status::collect;
use proptest::prelude::*;
use std::collections::BTreeSet;

/// `(record_id, stream, error, raw_text)` of every quarantined record, by id.
async fn quarantined(env: &Env) -> Vec<(String, String, String, String)> {
    sqlx::query_as(
        "SELECT record_id, stream, error, raw_text FROM jira.quarantine ORDER BY record_id",
    )
    .fetch_all(&env.db.pool)
    .await
    .expect("read the quarantine")
}

async fn summary_of(env: &Env, id: i64) -> String {
    let (summary,): (String,) = sqlx::query_as("SELECT summary FROM jira.issues WHERE id = $1")
        .bind(id)
        .fetch_one(&env.db.pool)
        .await
        .expect("the issue is stored");
    summary
}

#[tokio::test]
async fn bad_records_are_stored_or_set_aside_and_the_rest_of_the_site_lands() {
    let env = Env::start(SimConfig::small()).await;
    let truth = env.sim.truth();
    // In the biggest project, so that they share pages with good issues.
    let ids: Vec<i64> = truth.issues.iter().map(|i| i.id).take(6).collect();
    let [nul, surrogate, deep_ok, too_deep, unreadable, oversized] = ids[..] else {
        panic!("six issues")
    };
    env.sim
        .poison_issue(nul, Some(Poison::Nul))
        .expect("poison");
    env.sim
        .poison_issue(surrogate, Some(Poison::LoneSurrogate))
        .expect("poison");
    // Deeper than serde_json's default limit of 128, within jira-sync's 1,000.
    env.sim
        .poison_issue(deep_ok, Some(Poison::Deep(600)))
        .expect("poison");
    env.sim
        .poison_issue(too_deep, Some(Poison::Deep(5_000)))
        .expect("poison");
    env.sim
        .poison_issue(unreadable, Some(Poison::Unreadable))
        .expect("poison");
    // Read fine, refused by PostgreSQL (an index row of more than 2,704 bytes): the page is
    // written again row by row and only this row is set aside.
    env.sim
        .poison_issue(oversized, Some(Poison::Oversized))
        .expect("poison");

    let outcomes = sync_succeeds(&env, &ALL, false).await;
    let issues = outcomes
        .iter()
        .find(|o| o.stream == "issues")
        .expect("issues ran");
    assert_eq!(issues.set_aside, 3, "{}", issues.summary());
    assert!(issues.summary().contains("3 set aside in jira.quarantine"));

    // Every other issue landed, the three storable ones with their text kept.
    let set_aside: BTreeSet<i64> = [too_deep, unreadable, oversized].into();
    let want: Vec<_> = truth_issues(&env.sim)
        .into_iter()
        .filter(|i| !set_aside.contains(&i.0))
        .collect();
    assert_eq!(stored_issues(&env.db.pool).await, want);
    let summary = summary_of(&env, nul).await;
    assert!(
        summary.contains(" \u{2400} (a NUL character)"),
        "{summary:?}"
    );
    let summary = summary_of(&env, surrogate).await;
    assert!(
        summary.contains(" \u{FFFD} (a lone surrogate)"),
        "{summary:?}"
    );
    let (depth,): (i32,) = sqlx::query_as(
        "SELECT length(raw->'fields'->>'customfield_19999') / 2 FROM jira.issues WHERE id = $1",
    )
    .bind(deep_ok)
    .fetch_one(&env.db.pool)
    .await
    .expect("the deep issue is stored");
    assert_eq!(depth, 600);

    // The two that cannot be stored wait in quarantine with their text and the reason.
    let held = quarantined(&env).await;
    let held_ids: Vec<&str> = held.iter().map(|q| q.0.as_str()).collect();
    let mut want_ids: Vec<String> = set_aside.iter().map(i64::to_string).collect();
    want_ids.sort();
    assert_eq!(held_ids, want_ids);
    for (id, stream, error, raw) in &held {
        assert_eq!(stream, "issues");
        assert!(
            raw.contains(&format!("\"id\":\"{id}\"")),
            "raw text of {id}"
        );
        let reason = match id.parse::<i64>() {
            Ok(id) if id == too_deep => "levels deep; jira-sync reads records up to 1000",
            Ok(id) if id == oversized => "PostgreSQL refused it in jira.issues",
            _ => "updated",
        };
        assert!(error.contains(reason), "error of {id}: {error}");
    }

    // The run's row, status and its JSON count them.
    let (set_aside,): (i64,) = sqlx::query_as(
        "SELECT set_aside FROM jira.sync_runs WHERE stream = 'issues' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&env.db.pool)
    .await
    .expect("the issues run's row");
    assert_eq!(set_aside, 3);
    let report = collect(&env.settings).await.expect("status");
    assert_eq!(report.streams["issues"].set_aside, 3);
    let text = jira_sync::commands::status::render_text(&report);
    assert!(
        text.contains("set aside     3 records in jira.quarantine"),
        "{text}"
    );

    // The census is not held back: a deleted issue is marked.
    let gone = truth.issues[40].id;
    env.sim.delete_issue(gone).expect("delete");
    sync_succeeds(&env, &["issues", "census"], false).await;
    assert_eq!(deleted_issue_ids(&env.db.pool).await, [gone].into());

    // Still bad: retried, still held, counted again; nothing else changes.
    let outcomes = sync_succeeds(&env, &["issues"], false).await;
    assert_eq!(outcomes[0].set_aside, 3, "{}", outcomes[0].summary());
    let (attempts,): (i32,) = sqlx::query_as("SELECT min(attempts) FROM jira.quarantine")
        .fetch_one(&env.db.pool)
        .await
        .expect("attempts");
    assert!(attempts >= 2, "retried: {attempts}");

    // Healed in Jira: the next run stores them and empties the quarantine.
    env.sim.poison_issue(too_deep, None).expect("heal");
    env.sim.poison_issue(unreadable, None).expect("heal");
    env.sim.poison_issue(oversized, None).expect("heal");
    let outcomes = sync_succeeds(&env, &["issues"], false).await;
    assert_eq!(outcomes[0].set_aside, 0);
    assert!(quarantined(&env).await.is_empty());
    assert_eq!(stored_issues(&env.db.pool).await, truth_issues(&env.sim));
    let report = collect(&env.settings).await.expect("status");
    assert_eq!(report.streams["issues"].set_aside, 0);
}

#[tokio::test]
async fn a_quarantined_issue_deleted_in_jira_leaves_the_quarantine() {
    let env = Env::start(SimConfig::small()).await;
    let id = env.sim.truth().issues[3].id;
    env.sim
        .poison_issue(id, Some(Poison::Unreadable))
        .expect("poison");
    sync_succeeds(&env, &["projects", "issues"], false).await;
    assert_eq!(quarantined(&env).await.len(), 1);
    env.sim.delete_issue(id).expect("delete");
    sync_succeeds(&env, &["issues"], false).await;
    assert!(quarantined(&env).await.is_empty());
}

#[tokio::test]
async fn data_center_sets_aside_what_it_cannot_store_too() {
    let mut env = Env::start(SimConfig {
        data_center: true,
        ..SimConfig::small()
    })
    .await;
    env.settings.jira.auth = jira_sync::settings::AuthMode::Bearer;
    env.settings.jira.email = String::new();
    let ids: Vec<i64> = env
        .sim
        .truth()
        .issues
        .iter()
        .map(|i| i.id)
        .take(2)
        .collect();
    env.sim
        .poison_issue(ids[0], Some(Poison::Nul))
        .expect("poison");
    env.sim
        .poison_issue(ids[1], Some(Poison::Unreadable))
        .expect("poison");
    let outcomes = sync_succeeds(&env, &["projects", "issues"], false).await;
    assert_eq!(outcomes[1].set_aside, 1, "{}", outcomes[1].summary());
    let want: Vec<_> = truth_issues(&env.sim)
        .into_iter()
        .filter(|i| i.0 != ids[1])
        .collect();
    assert_eq!(stored_issues(&env.db.pool).await, want);
    env.sim.poison_issue(ids[1], None).expect("heal");
    sync_succeeds(&env, &["issues"], false).await;
    assert!(quarantined(&env).await.is_empty());
    assert_eq!(stored_issues(&env.db.pool).await, truth_issues(&env.sim));
}

/// Everything jira-sync does to a page of issues before it writes it: clean the body, read the
/// page, read each record (set aside or parsed into a row), identify it and excerpt its text.
/// Returns whether the body was a page.
fn read_like_a_sync(body: &[u8]) -> bool {
    use jira_sync::jira::json::{clean, depth};
    use jira_sync::streams::parse::{excerpt, identify, read_records};
    let cleaned = clean(body);
    let text = std::str::from_utf8(&cleaned).expect("a cleaned body is UTF-8");
    let _ = depth(text.as_bytes());
    let _ = excerpt(text, 80);
    let Ok(page) = serde_json::from_str::<jira_sync::jira::model::SearchPage>(text) else {
        return false;
    };
    for record in &page.issues {
        let _ = identify(record);
    }
    let read = read_records("issues", "issue", page.issues, |value| {
        jira_sync::streams::issues::parse_issue(&value)
    });
    for aside in &read.set_aside {
        let _ = excerpt(&aside.error, 80);
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        // A failure prints its minimal input; nothing is written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Arbitrary bytes, as from a broken proxy: cleaned into UTF-8 and read without a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        read_like_a_sync(&bytes);
    }

    /// Issue-shaped pages with random text, escapes, nesting and multi-byte characters where
    /// the parsers look (ids, keys, timestamps): never a panic, and a page that is JSON before
    /// cleaning (NUL included) is still a page after it.
    #[test]
    fn issue_shaped_pages_never_panic_and_stay_pages(
        id in "[0-9a-z\u{e9}\u{1F600}]{0,12}",
        key in "[A-Z\u{e9}\u{65E5}\u{1F600} -]{0,90}",
        updated in "[0-9T:.+Z\u{e9}-]{0,40}",
        depth in 1usize..1_200,
        escape in prop_oneof![
            Just("\\u0000"), Just("\\ud83d"), Just("\\ude00"), Just("\\ud83d\\ude00"), Just("")
        ],
    ) {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let text = format!(
            r#"{{"issues":[{{"id":"{id}","key":"{key}{escape}","fields":{{"updated":"{updated}","summary":"{escape}é","deep":{nested}}}}},{{"id":"1","key":"A-1","fields":{{}}}}],"isLast":true}}"#
        );
        prop_assert!(read_like_a_sync(text.as_bytes()), "not a page after cleaning: {text}");
    }
}
