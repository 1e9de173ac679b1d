//! The simulated organization's audit log: deterministic events spread over products and a year
//! of time, kept in processing order, and their Admin API JSON.
//!
//! Events are stored compactly (indices into the site's users and the tables below); texts,
//! contexts and locations are derived from each event's seed when rendered.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use super::SimConfig;
use super::catalog::{ANCHOR_MS, DAY_MS, GROUPS};
use super::data::{Dice, User, mix64, uuid_like};
use super::site::to_utc;

/// Products that product-scoped events name.
const PRODUCTS: [&str; 5] = ["jira", "confluence", "bitbucket", "opsgenie", "statuspage"];
const APPS: [&str; 4] = ["Tempo Timesheets", "Slack", "GitHub for Jira", "draw.io"];
const PLACES: [(&str, &str, &str, &str); 4] = [
    ("EU", "Germany", "Berlin", "Berlin"),
    ("NA", "United States", "California", "San Francisco"),
    ("APAC", "Australia", "New South Wales", "Sydney"),
    ("EU", "France", "Île-de-France", "Paris"),
];

/// What an event touched, rendered into its `context`.
#[derive(Clone, Copy)]
enum Touch {
    Nothing,
    User,
    UserAndGroup,
    Group,
    ApiKey,
    Space,
    Repository,
    App,
}

/// An event kind: action, product (`*`: one of [`PRODUCTS`], named in the container; a name:
/// the action's prefix says it; empty: organization-wide), what it touches, message, weight.
struct Kind {
    action: &'static str,
    product: &'static str,
    touch: Touch,
    message: &'static str,
    weight: u32,
}

const fn kind(
    action: &'static str,
    product: &'static str,
    touch: Touch,
    message: &'static str,
    weight: u32,
) -> Kind {
    Kind {
        action,
        product,
        touch,
        message,
        weight,
    }
}

#[rustfmt::skip]
const KINDS: [Kind; 14] = [
    kind("user_login", "", Touch::Nothing, "{actor} logged in", 30),
    kind("user_login_failed", "", Touch::Nothing, "{actor} failed to log in", 6),
    kind("user_logout", "", Touch::Nothing, "{actor} logged out", 8),
    kind("user_added_to_group", "", Touch::UserAndGroup, "{actor} added {subject} to {group}", 8),
    kind("user_removed_from_group", "", Touch::UserAndGroup,
         "{actor} removed {subject} from {group}", 4),
    kind("user_invited", "", Touch::User, "{actor} invited {subject}", 4),
    kind("product_access_granted", "*", Touch::Group,
         "{actor} granted {group} access to {product}", 6),
    kind("product_access_revoked", "*", Touch::Group,
         "{actor} revoked the access of {group} to {product}", 2),
    kind("api_key_created", "", Touch::ApiKey, "{actor} created an organization API key", 2),
    kind("api_token_created", "", Touch::Nothing, "{actor} created an API token", 4),
    kind("jira_global_permission_updated", "jira", Touch::Group,
         "{actor} changed a global permission of {group}", 5),
    kind("confluence_added_space_permission", "confluence", Touch::Space,
         "{actor} added a space permission", 5),
    kind("bitbucket_repository_created", "bitbucket", Touch::Repository,
         "{actor} created a repository", 3),
    kind("marketplace_app_installed", "*", Touch::App, "{actor} installed {app}", 3),
];

/// One event as the organization stores it.
pub(crate) struct OrgEvent {
    pub id: String,
    pub time_ms: i64,
    /// Never decreases along the log: the feed's sort key.
    pub processed_ms: i64,
    kind: usize,
    actor: u32,
    subject: u32,
    product: usize,
    seed: u64,
}

/// The organization: its events in processing order, and whether the key has the scope.
pub(crate) struct Org {
    pub events: Vec<OrgEvent>,
    pub scope_granted: bool,
    rng: ChaCha8Rng,
}

impl Org {
    /// The same config and users always yield the same events, over the year before the anchor.
    pub fn generate(config: &SimConfig, users: usize) -> Org {
        let mut rng = ChaCha8Rng::seed_from_u64(mix64(config.seed ^ 0x0E6E_A0D1));
        let start = ANCHOR_MS - 365 * DAY_MS;
        let mut events: Vec<OrgEvent> = (0..config.org_events)
            .map(|_| {
                let time_ms = start + rng.random_range(0..365 * DAY_MS);
                // Most events are processed within seconds; a few hours late.
                let delay = match rng.random_bool(0.05) {
                    true => rng.random_range(0..4 * 3_600_000),
                    false => rng.random_range(0..3_000),
                };
                new_event(&mut rng, users, time_ms, time_ms + delay)
            })
            .collect();
        events.sort_by_key(|e| e.processed_ms);
        Org {
            events,
            scope_granted: true,
            rng,
        }
    }

    /// Appends an event that happened just now (processed after every earlier one).
    pub fn append(&mut self, users: usize, now_ms: i64) -> String {
        let last = self.events.last().map_or(0, |e| e.processed_ms);
        let processed_ms = now_ms.max(last);
        let time_ms = processed_ms - self.rng.random_range(0..2_000);
        let event = new_event(&mut self.rng, users, time_ms, processed_ms);
        let id = event.id.clone();
        self.events.push(event);
        id
    }

    pub fn ids(&self) -> Vec<String> {
        self.events.iter().map(|e| e.id.clone()).collect()
    }
}

impl OrgEvent {
    /// The product the event belongs to; `None` for organization-wide events.
    pub fn product(&self) -> Option<&'static str> {
        match KINDS[self.kind].product {
            "" => None,
            "*" => Some(PRODUCTS[self.product]),
            named => Some(named),
        }
    }
}

fn new_event(rng: &mut ChaCha8Rng, users: usize, time_ms: i64, processed_ms: i64) -> OrgEvent {
    let total: u32 = KINDS.iter().map(|k| k.weight).sum();
    let mut roll = rng.random_range(0..total);
    let kind = KINDS
        .iter()
        .position(|k| {
            let hit = roll < k.weight;
            roll = roll.saturating_sub(k.weight);
            hit
        })
        .unwrap_or(0);
    OrgEvent {
        id: uuid_like(rng.random::<u128>()),
        time_ms,
        processed_ms,
        kind,
        actor: rng.random_range(0..users.max(1)) as u32,
        subject: rng.random_range(0..users.max(1)) as u32,
        product: rng.random_range(0..PRODUCTS.len()),
        seed: rng.random(),
    }
}

/// What rendering needs besides the event: the site's users and where the site lives.
pub(crate) struct OrgView<'a> {
    pub users: &'a [User],
    pub org_id: &'a str,
    /// The simulator's base URL, for links and the site's host name.
    pub base: &'a str,
}

fn iso(ms: i64) -> String {
    to_utc(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl OrgView<'_> {
    fn person(&self, index: u32) -> (String, String, Option<String>) {
        match self.users.get(index as usize) {
            Some(u) => (
                u.account_id.clone(),
                u.display_name.clone(),
                u.email.clone(),
            ),
            None => ("unknown".to_owned(), "Unknown user".to_owned(), None),
        }
    }

    /// The event as the Admin API shows it; the polling feed adds `processedAt`.
    pub fn render(&self, e: &OrgEvent, processed_at: bool) -> Value {
        let k = &KINDS[e.kind];
        let mut dice = Dice::new(e.seed);
        let (actor_id, actor_name, actor_email) = self.person(e.actor);
        let subject_name = self.person(e.subject).1;
        let group = GROUPS[dice.below(GROUPS.len())];
        let app = APPS[dice.below(APPS.len())];
        let message = k
            .message
            .replace("{actor}", &actor_name)
            .replace("{subject}", &subject_name)
            .replace("{group}", group)
            .replace("{product}", e.product().unwrap_or_default())
            .replace("{app}", app);
        let mut attributes = json!({
            "time": iso(e.time_ms),
            "action": k.action,
            "actor": {"id": actor_id, "name": actor_name},
            "context": self.context(e, &mut dice, group, app),
            "container": self.container(e, &mut dice),
        });
        if let Some(email) = actor_email {
            attributes["actor"]["email"] = json!(email);
        }
        if processed_at {
            attributes["processedAt"] = json!(iso(e.processed_ms));
        }
        // A tenth of the events (system actions) carry no location.
        if !dice.chance(0.1) {
            let (geo, country, region, city) = PLACES[dice.below(PLACES.len())];
            let ip = format!("203.0.113.{}", 1 + dice.below(254));
            attributes["location"] = json!({
                "ip": ip, "geo": geo, "countryName": country, "regionName": region, "city": city,
            });
        }
        let link = format!(
            "{}/admin/v1/orgs/{}/events/{}",
            self.base, self.org_id, e.id
        );
        json!({
            "id": e.id,
            "type": "events",
            "attributes": attributes,
            "message": {"content": message, "format": "simple"},
            "links": {"self": link},
        })
    }

    /// What the event touched: `[{id, type, attributes}]`.
    fn context(&self, e: &OrgEvent, dice: &mut Dice, group: &str, app: &str) -> Value {
        let (subject_id, subject_name, _) = self.person(e.subject);
        let user = json!({"id": subject_id, "type": "users", "attributes": {"name": subject_name}});
        let mut item = |kind: &str, attributes: Value| {
            let id = random_uuid(dice);
            json!({"id": id, "type": kind, "attributes": attributes})
        };
        match KINDS[e.kind].touch {
            Touch::Nothing => json!([]),
            Touch::User => json!([user]),
            Touch::UserAndGroup => json!([user, item("groups", json!({"name": group}))]),
            Touch::Group => json!([item("groups", json!({"name": group}))]),
            Touch::ApiKey => json!([item("api-keys", json!({"name": "Audit export"}))]),
            Touch::Space => json!([item("space", json!({"name": "Engineering", "key": "ENG"}))]),
            Touch::Repository => json!([item("repository", json!({"name": "payments-service"}))]),
            Touch::App => json!([item("apps", json!({"name": app}))]),
        }
    }

    /// Where it happened: the organization, a site of a product (named in `product`), or a
    /// product's unit (the product only in the action's prefix).
    fn container(&self, e: &OrgEvent, dice: &mut Dice) -> Value {
        let id = random_uuid(dice);
        match (KINDS[e.kind].product, e.product()) {
            ("*", Some(product)) => {
                let host = self.base.trim_start_matches("http://");
                let attributes =
                    json!({"siteHostName": self.base, "siteName": host, "product": product});
                json!([{"id": id, "type": "sites", "attributes": attributes}])
            }
            (_, Some(_)) => json!([{"id": id, "type": "unit", "attributes": {}}]),
            (_, None) => {
                json!([{"id": self.org_id, "type": "orgs", "attributes": {"name": "Example Org"}}])
            }
        }
    }
}

fn random_uuid(dice: &mut Dice) -> String {
    uuid_like((u128::from(dice.next_u64()) << 64) | u128::from(dice.next_u64()))
}
