//! What a subcommand reports: its figures, each with its same-run baseline and their ratio,
//! the details behind them, and notes on what limited the run. Printed for people, or as one
//! JSON object per subcommand.

use serde::Serialize;
use serde_json::{Map, Value};

/// One measured figure beside its baseline.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    /// What was measured, e.g. `"1 MiB messages"`.
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// What the baseline is, e.g. `"AES-256-CBC encryption of the same bytes, one core"`.
    pub baseline_name: Option<String>,
    /// The baseline, in the figure's unit.
    pub baseline: Option<f64>,
    /// `value / baseline`.
    pub ratio: Option<f64>,
}

impl Figure {
    /// A figure with a baseline in the same unit; the ratio is `value / baseline`.
    pub fn new(name: &str, value: f64, unit: &str, baseline_name: &str, baseline: f64) -> Self {
        Self {
            name: name.into(),
            value,
            unit: unit.into(),
            baseline_name: Some(baseline_name.into()),
            baseline: Some(baseline),
            ratio: (baseline != 0.0).then(|| value / baseline),
        }
    }

    /// A figure without a baseline.
    pub fn alone(name: &str, value: f64, unit: &str) -> Self {
        Self {
            name: name.into(),
            value,
            unit: unit.into(),
            baseline_name: None,
            baseline: None,
            ratio: None,
        }
    }
}

/// One subcommand's result.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The subcommand.
    pub bench: &'static str,
    /// What was measured: an address and whether the bench started it.
    pub target: String,
    pub figures: Vec<Figure>,
    /// Counts and timings behind the figures (names with their unit as a suffix).
    pub details: Map<String, Value>,
    /// What limited the run, anything capped or skipped.
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(bench: &'static str, target: impl Into<String>) -> Self {
        Self {
            bench,
            target: target.into(),
            figures: Vec::new(),
            details: Map::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a detail.
    pub fn detail(&mut self, key: &str, value: impl Into<Value>) {
        self.details.insert(key.into(), value.into());
    }

    /// Adds a note.
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// One line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut out = format!("{} ({})\n", self.bench, self.target);
        for f in &self.figures {
            out.push_str(&format!("  {}: {} {}", f.name, number(f.value), f.unit));
            if let (Some(name), Some(b)) = (&f.baseline_name, f.baseline) {
                out.push_str(&format!(
                    "\n      baseline ({name}): {} {}",
                    number(b),
                    f.unit
                ));
            }
            if let Some(r) = f.ratio {
                out.push_str(&format!("\n      ratio: {r:.3}"));
            }
            out.push('\n');
        }
        if !self.details.is_empty() {
            out.push_str("  details:\n");
            for (k, v) in &self.details {
                let v = match v {
                    Value::Number(n) if n.is_f64() => {
                        n.as_f64().map_or_else(|| n.to_string(), number)
                    }
                    Value::Number(n) => n.as_i64().map_or_else(|| n.to_string(), integer),
                    other => other.to_string(),
                };
                out.push_str(&format!("    {k}: {v}\n"));
            }
        }
        for n in &self.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        out
    }
}

/// An integer with thousands separators.
pub fn integer(v: i64) -> String {
    let digits = v.unsigned_abs().to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if v < 0 {
        format!("-{grouped}")
    } else {
        grouped
    }
}

/// A number with thousands separators and as many decimals as its size deserves.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let decimals = match v.abs() {
        a if a >= 1000.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    let text = format!("{:.*}", decimals, v.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if v < 0.0 { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(1_234_567.8), "1,234,568");
        assert_eq!(number(123.45), "123.5");
        assert_eq!(number(1.5), "1.50");
        assert_eq!(number(0.25), "0.250");
        assert_eq!(number(-2500.0), "-2,500");
        assert_eq!(integer(0), "0");
        assert_eq!(integer(1_234_567), "1,234,567");
        assert_eq!(integer(-1000), "-1,000");
    }

    #[test]
    fn ratio_is_value_over_baseline() {
        let f = Figure::new("x", 50.0, "MB/s", "y", 200.0);
        assert_eq!(f.ratio, Some(0.25));
        let mut r = Report::new("stream", "127.0.0.1:1");
        r.figures.push(f);
        r.detail("count", 3);
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["figures"][0]["ratio"], 0.25);
        assert_eq!(v["details"]["count"], 3);
        assert!(r.to_text().contains("ratio: 0.250"));
    }
}
