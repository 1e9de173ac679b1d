//! Typed, versioned checkpoints: each stream with a cursor has one struct, stored as one JSON
//! document per site and stream (`jira.sync_state`) with its `version` beside its fields. A
//! document of another version, or one this version cannot read, fails with the command that
//! rebuilds it rather than guessing.
//!
//! A checkpoint change travels with the page it covers ([`crate::store::PageWrite`]): either the
//! whole new document ([`replace`]) or a change of the stored one ([`update`]), which the store
//! applies under a row lock, so parallel tasks that each own a part of the document (the
//! issues stream's projects and ranges) never lose each other's changes.

use super::StreamContext;
use crate::store::CheckpointWrite;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A stream's checkpoint document.
pub trait Checkpoint: Serialize + DeserializeOwned + Default + Send + 'static {
    /// The stream it belongs to (its row in `jira.sync_state`).
    const STREAM: &'static str;
    /// Bumped whenever a version cannot read the documents of the one before.
    const VERSION: u32;

    /// The stream whose full sync rebuilds the document (a record of issues: `issues`).
    fn rebuilt_by() -> &'static str {
        Self::STREAM
    }
}

/// The stream's checkpoint, if it has one.
pub async fn load<C: Checkpoint>(ctx: &StreamContext) -> anyhow::Result<Option<C>> {
    match ctx.store.load_checkpoint(&ctx.site, C::STREAM).await? {
        Some(value) => decode(value).map(Some),
        None => Ok(None),
    }
}

/// Reads a stored document, checking its version.
pub fn decode<C: Checkpoint>(value: Value) -> anyhow::Result<C> {
    let stream = C::STREAM;
    let rebuild = format!(
        "run `jira-sync sync --once --full --stream {}` to rebuild it",
        C::rebuilt_by()
    );
    let found = value.get("version").and_then(Value::as_u64);
    if found != Some(u64::from(C::VERSION)) {
        let found = found.map_or_else(|| "none".to_string(), |v| v.to_string());
        anyhow::bail!(
            "the {stream} checkpoint in jira.sync_state has version {found} but this jira-sync \
             reads version {}; {rebuild}",
            C::VERSION
        );
    }
    serde_json::from_value(value).map_err(|err| {
        anyhow::anyhow!(
            "the {stream} checkpoint in jira.sync_state is unreadable ({err}); {rebuild}"
        )
    })
}

/// The stored document of `checkpoint`: its fields and its version.
pub fn encode<C: Checkpoint>(checkpoint: &C) -> anyhow::Result<Value> {
    let mut value = serde_json::to_value(checkpoint)?;
    let Some(fields) = value.as_object_mut() else {
        anyhow::bail!("the {} checkpoint is not a JSON object", C::STREAM);
    };
    fields.insert("version".to_owned(), Value::from(C::VERSION));
    Ok(value)
}

/// Replaces the stream's checkpoint with `checkpoint`.
pub fn replace<C: Checkpoint>(checkpoint: &C) -> anyhow::Result<CheckpointWrite> {
    Ok(CheckpointWrite::Replace {
        stream: C::STREAM,
        value: encode(checkpoint)?,
    })
}

/// Changes the stored checkpoint (a default one when there is none yet) with `change`.
pub fn update<C: Checkpoint>(
    change: impl FnOnce(&mut C) -> anyhow::Result<()> + Send + 'static,
) -> CheckpointWrite {
    CheckpointWrite::Update {
        stream: C::STREAM,
        update: Box::new(move |stored| {
            let mut checkpoint = match stored {
                Some(value) => decode::<C>(value)?,
                None => C::default(),
            };
            change(&mut checkpoint)?;
            encode(&checkpoint)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    struct Marks {
        #[serde(default)]
        seen: Vec<u32>,
    }

    impl Checkpoint for Marks {
        const STREAM: &'static str = "marks";
        const VERSION: u32 = 3;
    }

    #[test]
    fn documents_carry_their_version_and_another_version_is_refused_with_the_fix() {
        let value = encode(&Marks { seen: vec![1] }).expect("encodes");
        assert_eq!(value, serde_json::json!({"version": 3, "seen": [1]}));
        assert_eq!(decode::<Marks>(value).expect("decodes").seen, vec![1]);
        let old = serde_json::json!({"version": 2, "seen": []});
        let err = decode::<Marks>(old)
            .expect_err("another version")
            .to_string();
        assert!(
            err.contains("version 2") && err.contains("--full --stream marks"),
            "{err}"
        );
        let bad = serde_json::json!({"version": 3, "seen": "x"});
        assert!(decode::<Marks>(bad).is_err());
    }

    #[test]
    fn an_update_starts_from_the_stored_document_or_a_default_one() {
        let apply = |stored: Option<Value>| {
            let CheckpointWrite::Update { update, .. } = update::<Marks>(|m| {
                m.seen.push(7);
                Ok(())
            }) else {
                panic!("an update");
            };
            update(stored).expect("applies")
        };
        assert_eq!(apply(None), serde_json::json!({"version": 3, "seen": [7]}));
        let stored = serde_json::json!({"version": 3, "seen": [1]});
        assert_eq!(
            apply(Some(stored)),
            serde_json::json!({"version": 3, "seen": [1, 7]})
        );
    }
}
