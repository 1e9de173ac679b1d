//! The container checks that need no Docker engine: the Dockerfile parses into instructions,
//! everything it copies exists and reaches the build context, the commands it runs exist in
//! the CLI; docker-compose.yml is valid YAML with the expected services; and the variables
//! documented in .env.example are exactly the ones the configuration reads.

use crate::support::cli::{jira_sync, run, text};
use config::Source as _;
use jira_sync::settings::{DEFAULT_TOML, Settings};
use serde_norway::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Instructions a Dockerfile may hold.
const INSTRUCTIONS: [&str; 18] = [
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
    "MAINTAINER",
];

/// Variables jira-sync reads that are not configuration keys.
const PROCESS_VARS: [&str; 5] = [
    "DATABASE_URL",
    "JIRA_SYNC_CONFIG",
    "RUST_LOG",
    "HTTPS_PROXY",
    "NO_PROXY",
];

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// One instruction: its keyword, `--flags`, and the rest of the line.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    flags: Vec<String>,
    args: String,
}

/// Splits a Dockerfile into instructions: comments dropped, `\` continuations joined.
fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else if !trimmed.starts_with('#') {
            current.push_str(trimmed);
            logical.push(std::mem::take(&mut current));
        }
    }
    assert!(
        current.is_empty(),
        "the Dockerfile ends inside a continuation"
    );
    logical
        .iter()
        .map(|line| {
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            assert!(
                INSTRUCTIONS.contains(&keyword),
                "unknown instruction {keyword:?} in {line:?}"
            );
            let mut words = rest.split_whitespace().peekable();
            let mut flags = Vec::new();
            while let Some(flag) = words.next_if(|w| w.starts_with("--")) {
                flags.push(flag.to_owned());
            }
            let args = words.collect::<Vec<_>>().join(" ");
            Instruction {
                keyword: keyword.to_owned(),
                flags,
                args,
            }
        })
        .collect()
}

/// The JSON array of an exec-form instruction.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("not an exec-form array: {args}: {e}"))
}

/// Whether `path` is left out of the build context by a .dockerignore `pattern` (`*` matches
/// within one path segment; a match on a directory covers what is below it).
fn ignored(path: &str, patterns: &[&str]) -> bool {
    fn glob(pattern: &str, text: &str) -> bool {
        match pattern.split_once('*') {
            None => pattern == text,
            Some((head, tail)) => {
                let Some(rest) = text.strip_prefix(head) else {
                    return false;
                };
                (0..=rest.len())
                    .take_while(|&i| !rest[..i].contains('/'))
                    .any(|i| rest.is_char_boundary(i) && glob(tail, &rest[i..]))
            }
        }
    }
    let segments: Vec<&str> = path.split('/').collect();
    (1..=segments.len()).any(|n| {
        let prefix = segments[..n].join("/");
        patterns.iter().any(|p| glob(p, &prefix))
    })
}

/// Runs `jira-sync <args> --help` and asserts it is a known command.
async fn assert_command_exists(args: &[String]) {
    let mut cmd = jira_sync();
    cmd.args(args).arg("--help");
    let output = run(cmd).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "`jira-sync {}` is not a command:\n{stdout}{stderr}",
        args.join(" ")
    );
}

#[tokio::test]
async fn the_dockerfile_parses_copies_what_exists_and_runs_commands_the_cli_has() {
    let instructions = parse_dockerfile(&read("Dockerfile"));
    let dockerignore = read(".dockerignore");
    let ignore: Vec<&str> = dockerignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut stages = Vec::new();
    let mut final_stage = Vec::new();
    for ins in &instructions {
        match ins.keyword.as_str() {
            "FROM" => {
                let words: Vec<&str> = ins.args.split_whitespace().collect();
                if let [_, as_, name] = words.as_slice() {
                    assert!(as_.eq_ignore_ascii_case("as"), "{ins:?}");
                    stages.push(name.to_string());
                }
                final_stage.clear();
            }
            "COPY" | "ADD" => {
                let from = ins.flags.iter().find_map(|f| f.strip_prefix("--from="));
                let words: Vec<&str> = ins.args.split_whitespace().collect();
                assert!(words.len() >= 2, "{ins:?} needs a source and a destination");
                match from {
                    Some(stage) => assert!(stages.iter().any(|s| s == stage), "{ins:?}"),
                    None => {
                        for source in &words[..words.len() - 1] {
                            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
                            assert!(path.exists(), "COPY source {source} does not exist");
                            assert!(!ignored(source, &ignore), ".dockerignore drops {source}");
                        }
                    }
                }
            }
            _ => {}
        }
        final_stage.push(ins);
    }
    let last = |keyword: &str| {
        final_stage
            .iter()
            .rev()
            .find(|i| i.keyword == keyword)
            .unwrap_or_else(|| panic!("the runtime stage has no {keyword}"))
    };
    let runtime = &final_stage[0].args;
    assert!(
        runtime.contains("distroless")
            || final_stage
                .iter()
                .any(|i| i.args.contains("ca-certificates")),
        "the runtime image needs CA certificates: {runtime}"
    );
    let user = &last("USER").args;
    assert!(
        !["root", "0"].contains(&user.split(':').next().unwrap_or_default()),
        "{user}"
    );
    assert_eq!(exec_form(&last("ENTRYPOINT").args), ["jira-sync"]);
    let cmd = exec_form(&last("CMD").args);
    assert_eq!(cmd, ["run"]);
    assert_command_exists(&cmd).await;
    let healthcheck = &last("HEALTHCHECK").args;
    let probe = exec_form(
        healthcheck
            .strip_prefix("CMD ")
            .expect("HEALTHCHECK CMD [...]"),
    );
    assert_eq!(probe[0], "jira-sync");
    assert_command_exists(&probe[1..]).await;

    // The image's environment is configuration jira-sync accepts, and it listens on all
    // addresses at the port the image exposes.
    let env = image_env(&final_stage);
    assert_eq!(env["JIRA_SYNC__SERVER__LISTEN"], "0.0.0.0:9464");
    assert_eq!(last("EXPOSE").args, "9464");
    let settings = Settings::load_from(None, with_site(env.clone())).expect("the image's settings");
    assert_eq!(settings.server.addr().expect("address").port(), 9464);
}

/// The `ENV` variables of a stage.
fn image_env(stage: &[&Instruction]) -> HashMap<String, String> {
    stage
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| i.args.split_whitespace())
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("ENV NAME=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// `env` plus the minimum a site needs, where it does not set them.
fn with_site(mut env: HashMap<String, String>) -> HashMap<String, String> {
    for (name, value) in [
        ("JIRA_SYNC__JIRA__BASE_URL", "https://acme.atlassian.net"),
        ("JIRA_SYNC__JIRA__EMAIL", "bot@example.com"),
        ("JIRA_SYNC__JIRA__API_TOKEN", "token"),
    ] {
        let entry = env.entry(name.to_owned()).or_default();
        if entry.is_empty() {
            *entry = value.to_owned();
        }
    }
    env
}

#[test]
fn dockerignore_patterns_match_like_docker_does() {
    let patterns = ["target", "*.md", ".env.*", "docs"];
    assert!(ignored("target/release/x", &patterns));
    assert!(ignored("README.md", &patterns));
    assert!(!ignored("src/README.md.rs", &patterns));
    assert!(ignored(".env.local", &patterns));
    assert!(!ignored(".env", &patterns));
    assert!(!ignored("src", &patterns));
    assert!(ignored("docs/schema.md", &patterns));
}

/// The YAML of docker-compose.yml with `<<` merge keys applied.
fn compose() -> Yaml {
    let mut yaml: Yaml = serde_norway::from_str(&read("docker-compose.yml")).expect("valid YAML");
    yaml.apply_merge().expect("merge keys resolve");
    yaml
}

#[tokio::test]
async fn the_compose_file_runs_the_database_the_daemon_and_an_optional_simulator() {
    let yaml = compose();
    let services = yaml["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(Yaml::as_str).collect();
    let want = ["db", "jira-sync", "jira-sync-simulated", "simulator"];
    assert_eq!(names, want.into_iter().collect());
    let db = &yaml["services"]["db"];
    assert!(
        db["healthcheck"]["test"].is_sequence(),
        "db needs a healthcheck"
    );
    let volume = db["volumes"][0].as_str().expect("a volume");
    assert!(volume.ends_with(":/var/lib/postgresql/data"), "{volume}");
    let named = volume.split(':').next().unwrap_or_default();
    assert!(
        !yaml["volumes"][named].is_string(),
        "volume {named} is declared"
    );
    for daemon in ["jira-sync", "jira-sync-simulated"] {
        let service = &yaml["services"][daemon];
        assert_eq!(
            service["depends_on"]["db"]["condition"], "service_healthy",
            "{daemon}"
        );
        assert!(
            service["profiles"].is_null() == (daemon == "jira-sync"),
            "{daemon}"
        );
        let grace = service["stop_grace_period"].as_str().unwrap_or_default();
        assert!(
            grace
                .trim_end_matches('s')
                .parse::<u64>()
                .is_ok_and(|s| s > 30),
            "{grace}"
        );
    }
    let sim = &yaml["services"]["simulator"];
    assert_eq!(sim["profiles"][0], "simulator");
    let command: Vec<String> = serde_norway::from_value(sim["command"].clone()).expect("command");
    assert_eq!(command[0], "simulate");
    assert_command_exists(&command[..1]).await;
    let probe: Vec<String> =
        serde_norway::from_value(sim["healthcheck"]["test"].clone()).expect("healthcheck");
    assert_eq!(probe[..3], ["CMD", "jira-sync", "healthcheck"]);
    let simulated = &yaml["services"]["jira-sync-simulated"];
    assert_eq!(simulated["network_mode"], "service:simulator");
    assert_eq!(
        simulated["depends_on"]["simulator"]["condition"],
        "service_healthy"
    );
    // The simulated daemon's settings load, against the simulator's address.
    let env: HashMap<String, String> =
        serde_norway::from_value(simulated["environment"].clone()).expect("environment");
    Settings::load_from(None, env).expect("the simulated daemon's settings");
}

/// `NAME` → value of every `NAME=value` line of .env.example, commented out or not.
fn documented_variables() -> BTreeMap<String, String> {
    read(".env.example")
        .lines()
        .filter_map(|line| {
            let line = line.trim_start_matches('#').trim();
            let (name, value) = line.split_once('=')?;
            let is_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            is_name.then(|| (name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Every key of the default configuration as `section.key`, with its default as text (lists
/// comma-separated, as the environment writes them).
fn config_keys() -> BTreeMap<String, String> {
    let defaults = config::Config::builder()
        .add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ))
        .build()
        .expect("the defaults parse");
    let mut keys = BTreeMap::new();
    let table = defaults.collect().expect("a table");
    for (section, values) in table {
        add_keys(&mut keys, &section, values);
    }
    keys
}

/// The keys under `prefix` (a section, or a section's subsection such as `streams.statuses`).
fn add_keys(keys: &mut BTreeMap<String, String>, prefix: &str, values: config::Value) {
    let values = values.into_table().expect("a section is a table");
    for (key, value) in values {
        if let Ok(sub) = value.clone().into_table() {
            add_keys(keys, &format!("{prefix}.{key}"), config::Value::from(sub));
            continue;
        }
        let text = match value.clone().into_array() {
            Ok(items) => items
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            Err(_) => value.to_string(),
        };
        keys.insert(format!("{prefix}.{key}"), text);
    }
}

#[test]
fn every_variable_in_env_example_is_read_and_every_config_key_is_documented() {
    let documented = documented_variables();
    let keys = config_keys();
    let image = image_env(
        &parse_dockerfile(&read("Dockerfile"))
            .iter()
            .collect::<Vec<_>>(),
    );
    let compose_text = read("docker-compose.yml");
    let mut env = HashMap::new();
    for (name, value) in &documented {
        if let Some(key) = name.strip_prefix("JIRA_SYNC__") {
            let key = key.to_lowercase().replace("__", ".");
            let default = keys.get(&key).unwrap_or_else(|| {
                panic!("{name} in .env.example sets {key}, which is no configuration key")
            });
            let line = format!("{name}={value}");
            let commented = read(".env.example").contains(&format!("# {line}\n"));
            if commented {
                let same = value == default
                    || value.parse::<f64>().ok() == default.parse::<f64>().ok()
                        && value.parse::<f64>().is_ok();
                assert!(
                    same || image.get(name) == Some(value),
                    "{line}: a commented line must show the default ({default:?}) or the image's value"
                );
            }
            env.insert(name.clone(), value.clone());
        } else {
            let in_compose = compose_text.contains(&format!("${{{name}"));
            assert!(
                in_compose || PROCESS_VARS.contains(&name.as_str()),
                "{name} in .env.example is read by neither docker-compose.yml nor jira-sync"
            );
        }
    }
    for key in keys.keys() {
        let name = format!("JIRA_SYNC__{}", key.replace('.', "__").to_uppercase());
        assert!(
            documented.contains_key(&name),
            "config key {key} has no {name} line in .env.example: add it, commented out with \
             its default"
        );
    }
    // Together they load: every name is a key the configuration accepts, every value valid.
    Settings::load_from(None, with_site(env)).expect(".env.example loads");
    // Every variable docker-compose.yml substitutes is documented.
    for part in compose_text.split("${").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(
            documented.contains_key(&name),
            "{name} is not in .env.example"
        );
    }
}
