//! Crash safety: the real binary killed with SIGKILL at random points of a bulk and of an
//! incremental sync, restarted, and finally let finish, ends with the database equal to the
//! simulator's ground truth, and re-fetches at most the pages that were in flight.

use crate::support::cli::{quiet_sync, site_toml, sync_to_the_end, write_config};
use crate::support::{Env, audit_ids, stored_issues, truth_issues};
use jira_sim::{FaultKind, FaultPlan, SimConfig};
use rand::{Rng, SeedableRng};
use std::process::Command;
use std::time::Duration;

const STREAMS: &str = "issues,audit";

fn config() -> SimConfig {
    SimConfig {
        projects: 4,
        issues: 2_500,
        ..SimConfig::small()
    }
}

fn sync_command(env: &Env, config_path: &std::path::Path) -> Command {
    quiet_sync(
        config_path,
        &env.db.url,
        &["--no-census", "--stream", STREAMS],
    )
}

/// Starts a sync, kills it with SIGKILL after a random delay. Returns whether it was killed
/// (a run that finished first is not).
async fn start_and_kill(env: &Env, config_path: &std::path::Path, delay: Duration) -> bool {
    let mut child = sync_command(env, config_path)
        .spawn()
        .expect("start jira-sync");
    tokio::time::sleep(delay).await;
    let killed = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();
    killed
}

async fn finish(env: &Env, config_path: &std::path::Path) {
    sync_to_the_end(sync_command(env, config_path)).await;
}

async fn assert_equals_truth(env: &Env) {
    assert_eq!(stored_issues(&env.db.pool).await, truth_issues(&env.sim));
    // The records of issues too: histories, comments, worklogs and links.
    crate::support::assert_exact(env, "after the kills").await;
    let (stored, want) = audit_ids(&env.db.pool, &env.sim).await;
    assert_eq!(stored, want);
}

fn search_pages(env: &Env) -> u64 {
    env.sim.request_count("/rest/api/3/search/jql")
}

/// Every response is a little slow, so kills land in the middle of the work.
fn slow(seed: u64) -> FaultPlan {
    FaultPlan {
        seed,
        rate: 1.0,
        kinds: vec![FaultKind::Slow { delay_ms: 10 }],
        ..FaultPlan::default()
    }
}

#[tokio::test]
async fn killing_the_binary_at_random_points_loses_nothing_and_refetches_little() {
    // A clean run gives the number of search pages a full sync needs.
    let clean = Env::start(config()).await;
    let clean_file = write_config(&site_toml(
        &clean.sim.base_url(),
        &clean.sim.config().email,
        &clean.sim.config().api_token,
    ));
    finish(&clean, &clean_file.path).await;
    let clean_pages = search_pages(&clean);

    for seed in [7_u64, 1_234] {
        let env = Env::start(config()).await;
        let file = write_config(&site_toml(
            &env.sim.base_url(),
            &env.sim.config().email,
            &env.sim.config().api_token,
        ));
        env.sim.set_faults(slow(seed));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);

        // Bulk sync, killed three times (a run may also finish before its kill).
        for _ in 0..3 {
            let delay = Duration::from_millis(rng.random_range(150..900));
            start_and_kill(&env, &file.path, delay).await;
        }
        finish(&env, &file.path).await;
        assert_equals_truth(&env).await;
        // Each run after the first resumes every project from its committed mark, so per
        // project it fetches again at most the page that was in flight when the process died,
        // plus one page more when the overlap re-read before the mark pushes the rest past a
        // page boundary: two pages per project per restart. A lost cursor would re-read whole
        // projects instead (about 25 pages per restart here).
        let restarts = 3;
        let refetched = search_pages(&env).saturating_sub(clean_pages);
        let projects = env.sim.truth().projects.len() as u64;
        assert!(
            refetched <= 2 * restarts * projects,
            "seed {seed}: {refetched} search pages fetched again over {restarts} restarts \
             of {projects} projects"
        );

        // Changes, then an incremental sync killed twice.
        crate::support::change_site(&env.sim, 40, 20);
        for _ in 0..2 {
            let delay = Duration::from_millis(rng.random_range(100..400));
            start_and_kill(&env, &file.path, delay).await;
        }
        finish(&env, &file.path).await;
        assert_equals_truth(&env).await;
    }
}
