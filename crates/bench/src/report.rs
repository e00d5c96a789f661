//! Results: one [`Section`] per scenario, one [`Row`] per figure, each figure of peerpool next
//! to the reference measured in the same run, with the ratio and the target it is judged by.

use std::fmt;

use crate::sys::Machine;
use crate::Scenario;

/// Everything one benchmark run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// One per scenario run.
    pub sections: Vec<Section>,
}

impl Report {
    /// Whether every row with a target met it.
    pub fn passed(&self) -> bool {
        self.sections
            .iter()
            .flat_map(|s| &s.rows)
            .all(|r| r.verdict() != Verdict::Fail)
    }
}

/// The results of one scenario.
#[derive(Clone, Debug)]
pub struct Section {
    /// The scenario.
    pub scenario: Scenario,
    /// What was run, with the sizes used.
    pub setup: String,
    /// The figures.
    pub rows: Vec<Row>,
    /// Raw samples, caveats and observations.
    pub notes: Vec<String>,
}

impl Section {
    pub(crate) fn new(scenario: Scenario, setup: String) -> Section {
        Section {
            scenario,
            setup,
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// What a row is judged by.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// Context only.
    None,
    /// peerpool / reference must be at least this.
    RatioAtLeast(f64),
    /// peerpool / reference must be at most this.
    RatioAtMost(f64),
    /// peerpool's value must be at most this.
    AtMost(f64),
    /// peerpool's value must be at least this.
    AtLeast(f64),
}

/// Outcome of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Met its target.
    Pass,
    /// Missed its target.
    Fail,
    /// Has no target.
    Info,
}

/// One figure: peerpool's value, the reference's, and the target.
#[derive(Clone, Debug)]
pub struct Row {
    /// What is measured.
    pub metric: String,
    /// Unit of both values.
    pub unit: &'static str,
    /// peerpool's value.
    pub peerpool: f64,
    /// The reference's value, when there is one.
    pub reference: Option<f64>,
    /// The target.
    pub target: Target,
}

impl Row {
    pub(crate) fn new(metric: impl Into<String>, unit: &'static str, peerpool: f64) -> Row {
        Row {
            metric: metric.into(),
            unit,
            peerpool,
            reference: None,
            target: Target::None,
        }
    }

    pub(crate) fn vs(mut self, reference: f64) -> Row {
        self.reference = Some(reference);
        self
    }

    pub(crate) fn target(mut self, target: Target) -> Row {
        self.target = target;
        self
    }

    /// peerpool / reference.
    pub fn ratio(&self) -> Option<f64> {
        self.reference
            .filter(|r| *r != 0.0)
            .map(|r| self.peerpool / r)
    }

    /// Whether the row meets its target.
    pub fn verdict(&self) -> Verdict {
        let ok = match self.target {
            Target::None => return Verdict::Info,
            Target::RatioAtLeast(t) => self.ratio().is_some_and(|r| r >= t),
            Target::RatioAtMost(t) => self.ratio().is_some_and(|r| r <= t),
            Target::AtMost(t) => self.peerpool <= t,
            Target::AtLeast(t) => self.peerpool >= t,
        };
        if ok {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::None => f.write_str("-"),
            Target::RatioAtLeast(t) => write!(f, "ratio >= {t}"),
            Target::RatioAtMost(t) => write!(f, "ratio <= {t}"),
            Target::AtMost(t) => write!(f, "<= {}", number(*t)),
            Target::AtLeast(t) => write!(f, ">= {}", number(*t)),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Info => "info",
        })
    }
}

/// A number with thousands separators, and decimals only where they carry information.
pub(crate) fn number(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v.abs() >= 1000.0 {
        let n = v.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "== {}: {}", self.scenario, self.setup)?;
        writeln!(
            f,
            "  {:<56} {:>13} {:>13} {:>7}  {:<14} result",
            "metric", "peerpool", "reference", "ratio", "target"
        )?;
        for r in &self.rows {
            let metric = format!("{} ({})", r.metric, r.unit);
            writeln!(
                f,
                "  {:<56} {:>13} {:>13} {:>7}  {:<14} {}",
                metric,
                number(r.peerpool),
                r.reference.map_or_else(|| "-".into(), number),
                r.ratio().map_or_else(|| "-".into(), |x| format!("{x:.2}")),
                r.target.to_string(),
                r.verdict()
            )?;
        }
        for n in &self.notes {
            writeln!(f, "  - {n}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "machine: {}", self.machine)?;
        for s in &self.sections {
            writeln!(f)?;
            write!(f, "{s}")?;
        }
        let failed: Vec<String> = self
            .sections
            .iter()
            .flat_map(|s| s.rows.iter().map(move |r| (s.scenario, r)))
            .filter(|(_, r)| r.verdict() == Verdict::Fail)
            .map(|(s, r)| format!("{s}: {}", r.metric))
            .collect();
        writeln!(f)?;
        if failed.is_empty() {
            writeln!(f, "all targets met")
        } else {
            writeln!(f, "targets missed: {}", failed.join("; "))
        }
    }
}

/// Median of a sample (the mean of the middle two for an even count); 0 when empty.
pub(crate) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// The `p`-th percentile (0-100) of sorted values, nearest rank.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Values for a note: `a, b, c`.
pub(crate) fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| number(*v))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(17_012.4), "17,012");
        assert_eq!(number(1_234_567.0), "1,234,567");
        assert_eq!(number(123.4), "123");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(1.234), "1.23");
    }

    #[test]
    fn statistics() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&s, 50.0), 50.0);
        assert_eq!(percentile(&s, 99.0), 99.0);
        assert_eq!(percentile(&s, 100.0), 100.0);
    }

    #[test]
    fn verdicts() {
        let r = Row::new("x", "1/s", 6.0)
            .vs(10.0)
            .target(Target::RatioAtLeast(0.6));
        assert_eq!(r.verdict(), Verdict::Pass);
        let r = Row::new("x", "B", 5000.0).target(Target::AtMost(4096.0));
        assert_eq!(r.verdict(), Verdict::Fail);
        assert_eq!(Row::new("x", "B", 1.0).verdict(), Verdict::Info);
    }
}
