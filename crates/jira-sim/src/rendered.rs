//! Issues rendered once and served many times: the JSON of an issue version for a field
//! selection is kept until the site next changes.
//!
//! Jira renders issues on its own machines; the simulator renders them on the machine that
//! also runs the client and PostgreSQL, where building and serializing the JSON of every page
//! again would take the client's CPU and make benchmarks measure the simulator. Any write
//! access to the site ([`super::Shared::site_mut`]) starts a new generation and drops every
//! entry, so what is served is always what rendering now would give.

use super::Poison;
use super::data::Issue;
use super::fields::FieldSel;
use super::render::Ctx;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// Past this many bytes of JSON the cache starts over, so a huge site cannot grow it without
/// bound (the large site's 100,000 full issues take about 600 MB).
const MAX_BYTES: usize = 1 << 30;

#[derive(Default)]
pub(crate) struct Rendered {
    generation: u64,
    /// By the issue version's address (stable while the generation lasts: nothing moves the
    /// site's data without a write access) and the selection's fingerprint.
    entries: HashMap<(usize, u64), Box<RawValue>>,
    bytes: usize,
}

impl Rendered {
    /// The cached JSON of `issue` under `sel` in `generation`, if rendered since it began.
    pub fn get(&mut self, generation: u64, issue: &Issue, sel: u64) -> Option<Box<RawValue>> {
        self.start(generation);
        if generation != self.generation {
            return None;
        }
        self.entries.get(&(address(issue), sel)).cloned()
    }

    /// Keeps `json` unless the site changed since `generation` began.
    pub fn put(&mut self, generation: u64, issue: &Issue, sel: u64, json: &RawValue) {
        self.start(generation);
        if generation != self.generation {
            return;
        }
        if self.bytes + json.get().len() > MAX_BYTES {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += json.get().len();
        let replaced = self.entries.insert((address(issue), sel), json.to_owned());
        // Two requests may render the same issue at once; count its bytes once.
        self.bytes -= replaced.map_or(0, |old| old.get().len());
    }

    /// Moves to `generation` when it is newer, dropping what older ones rendered.
    fn start(&mut self, generation: u64) {
        if generation > self.generation {
            self.generation = generation;
            self.entries.clear();
            self.bytes = 0;
        }
    }
}

fn address(issue: &Issue) -> usize {
    std::ptr::from_ref(issue) as usize
}

/// A fingerprint of a field selection.
pub(crate) fn fingerprint(sel: &FieldSel) -> u64 {
    let mut hasher = DefaultHasher::new();
    format!("{sel:?}").hash(&mut hasher);
    hasher.finish()
}

/// `issue` as `ctx` renders it under `sel`.
pub(crate) fn render(ctx: &Ctx<'_>, issue: &Issue, sel: &FieldSel) -> Box<RawValue> {
    let json =
        serde_json::value::to_raw_value(&ctx.issue(issue, sel)).expect("a rendered issue is JSON");
    match issue.poison {
        Some(Poison::LoneSurrogate) => {
            let mut mark = [0u8; 4];
            let mark = super::render::LONE_SURROGATE_MARK.encode_utf8(&mut mark);
            let text = json.get().replace(&*mark, "\\ud83d");
            RawValue::from_string(text).expect("a lone surrogate escape is JSON")
        }
        Some(Poison::Deep(depth)) if sel.wants("customfield_19999") => {
            // Written as text: serializing a value this deep would take as deep a recursion.
            let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let field = format!("\"customfield_19999\":{nested}");
            let text = match json.get().contains("\"fields\":{}") {
                true => json
                    .get()
                    .replacen("\"fields\":{}", &format!("\"fields\":{{{field}}}"), 1),
                false => json
                    .get()
                    .replacen("\"fields\":{", &format!("\"fields\":{{{field},"), 1),
            };
            RawValue::from_string(text).expect("nested arrays are JSON")
        }
        _ => json,
    }
}
