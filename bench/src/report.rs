//! The one table `make bench` prints and writes to BENCHMARKS.md.

use std::fmt::Write as _;

#[derive(Debug, Clone)]
pub struct Row {
    pub part: &'static str,
    pub measure: String,
    pub result: String,
    pub budget: String,
    /// `ok`, `info`, or `MISS: <reason>`.
    pub verdict: String,
}

impl Row {
    pub fn new(
        part: &'static str,
        measure: impl Into<String>,
        result: impl Into<String>,
        budget: impl Into<String>,
        verdict: impl Into<String>,
    ) -> Row {
        Row {
            part,
            measure: measure.into(),
            result: result.into(),
            budget: budget.into(),
            verdict: verdict.into(),
        }
    }

    /// A part that could not be measured: said in the table, never skipped silently.
    pub fn failed(part: &'static str, what: &str, why: &str) -> Row {
        let why = why.lines().next().unwrap_or(why);
        Row::new(part, what, "not measured", "—", format!("FAILED: {why}"))
    }
}

/// A Markdown table; `|` inside a cell is escaped.
pub fn table(rows: &[Row]) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out =
        String::from("| part | measure | result | budget | verdict |\n|---|---|---|---|---|\n");
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            row.part,
            cell(&row.measure),
            cell(&row.result),
            cell(&row.budget),
            cell(&row.verdict)
        );
    }
    out
}

/// 12345.6 → "12,346".
pub fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_digits() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
