//! The Prometheus text exposition format (version 0.0.4): `# HELP` and `# TYPE` per family,
//! one sample a line, label values escaped, histograms as cumulative buckets.
//!
//! Every value is known at scrape time (snapshots of counters the daemon keeps anyway), so a
//! writer is all that is needed: no registry, no global recorder.

use std::fmt::Write as _;

/// What a family holds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Observations counted into fixed buckets (upper bounds), with their sum and count.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at most `bounds[i]` and above `bounds[i - 1]`; the last slot is `+Inf`.
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let slot = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[slot] += 1;
        self.sum += value;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The text of one scrape, built family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a family; its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = writeln!(
            self.out,
            "{name}{} {}",
            render_labels(labels, None),
            number(value)
        );
    }

    /// The `_bucket`, `_sum` and `_count` samples of a histogram.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        let mut cumulative = 0;
        for (i, count) in histogram.counts.iter().enumerate() {
            cumulative += count;
            let le = histogram
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| number(*b));
            let labels = render_labels(labels, Some(&le));
            let _ = writeln!(self.out, "{name}_bucket{labels} {cumulative}");
        }
        let plain = render_labels(labels, None);
        let _ = writeln!(self.out, "{name}_sum{plain} {}", number(histogram.sum));
        let _ = writeln!(self.out, "{name}_count{plain} {cumulative}");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// `{a="x",b="y"}` with `le` last when given; nothing at all without labels.
fn render_labels(labels: &[(&str, &str)], le: Option<&str>) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .copied()
        .chain(le.map(|le| ("le", le)))
        .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: integers without a fraction, infinities as the format spells them.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaped_labels_follow_the_text_format() {
        let mut text = Exposition::default();
        text.family("x_total", Kind::Counter, "Things.\nMore");
        text.sample("x_total", &[("endpoint", "GET /a\"b\\")], 3.0);
        text.sample("x_total", &[], 0.5);
        assert_eq!(
            text.finish(),
            "# HELP x_total Things.\\nMore\n# TYPE x_total counter\n\
             x_total{endpoint=\"GET /a\\\"b\\\\\"} 3\nx_total 0.5\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_infinity() {
        static BOUNDS: [f64; 2] = [1.0, 10.0];
        let mut h = Histogram::new(&BOUNDS);
        for v in [0.5, 2.0, 3.0, 100.0] {
            h.observe(v);
        }
        assert_eq!(h.count(), 4);
        let mut text = Exposition::default();
        text.histogram("d_seconds", &[("stream", "issues")], &h);
        assert_eq!(
            text.finish(),
            "d_seconds_bucket{stream=\"issues\",le=\"1\"} 1\n\
             d_seconds_bucket{stream=\"issues\",le=\"10\"} 3\n\
             d_seconds_bucket{stream=\"issues\",le=\"+Inf\"} 4\n\
             d_seconds_sum{stream=\"issues\"} 105.5\n\
             d_seconds_count{stream=\"issues\"} 4\n"
        );
    }
}
