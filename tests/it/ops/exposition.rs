//! Reading `/metrics` as a scraper would: the OpenMetrics text checked line by line (every
//! sample belongs to a family declared with `# TYPE`, label syntax, `# EOF` last), samples keyed
//! for lookup. Written here because the maintained Rust parsers either read only the older
//! Prometheus text format or are LGPL-licensed.

use std::collections::BTreeMap;

/// One scrape: every sample by `name{labels}` (labels sorted), after checking the text is
/// valid OpenMetrics: every sample belongs to a family declared with `# TYPE`.
pub async fn scrape(base: &str) -> BTreeMap<String, f64> {
    let response = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("scrape /metrics");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("ascii");
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    parse_exposition(&response.text().await.expect("body"))
}

fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let body = text
        .strip_suffix("# EOF\n")
        .unwrap_or_else(|| panic!("the exposition does not end with # EOF: {text}"));
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            families.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("not a number in {line:?}")),
        };
        let (name, _) = parse_series(series);
        let belongs = |suffix: &str, kind: &str| {
            let family = name.strip_suffix(suffix)?;
            families.get(family).filter(|k| *k == kind)
        };
        let typed = belongs("", "gauge").is_some()
            || belongs("_total", "counter").is_some()
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| belongs(suffix, "histogram").is_some());
        assert!(typed, "no # TYPE for {line:?}");
        samples.insert(series_key(series), value);
    }
    samples
}

/// `name{k="v",…}` split into the name and its labels, unescaping values.
fn parse_series(series: &str) -> (String, Vec<(String, String)>) {
    let Some((name, rest)) = series.split_once('{') else {
        return (series.to_owned(), Vec::new());
    };
    let mut labels = Vec::new();
    let mut chars = rest.chars();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() || key == "}" {
            break;
        }
        assert!(
            key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{series}"
        );
        assert_eq!(chars.next(), Some('"'), "{series}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(chars.next().expect("an escaped character")),
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((key, value));
        if chars.next() != Some(',') {
            break;
        }
    }
    (name.to_owned(), labels)
}

/// The series with its labels sorted, as samples are keyed.
pub fn series_key(series: &str) -> String {
    let (name, mut labels) = parse_series(series);
    if labels.is_empty() {
        return name;
    }
    labels.sort();
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// A sample's value, 0 when absent; `series` as `name{a="x",b="y"}` in any label order.
pub fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    samples.get(&series_key(series)).copied().unwrap_or(0.0)
}
