//! The JSON line `records` prints: `compare`'s fields with `sqlite` where compare has
//! `raw_quinn` and no `baseline` (there is one), numbers written the same way, and a ratio
//! oriented so that 1.0 or more means peergraph is at least as good as SQLite.

use std::fmt::Write as _;

use crate::report::{number, Better};

/// One printed result: `{"metric":..,"unit":..,"engine":..,"sqlite":..,"ratio":..,
/// "better":..,"runs":..}`.
///
/// Unlike `compare`'s [`Line`](crate::Line), whose ratio is always engine over raw,
/// `ratio` here is engine / sqlite when higher is better (throughputs) and
/// sqlite / engine when lower is better (latencies, open time): 1.0 or more always means
/// peergraph did at least as well.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordsLine {
    /// The metric's name (`add_record_durable`, `search_records_p99`, `open_100k`).
    pub metric: String,
    /// The unit of `engine` and `sqlite`.
    pub unit: &'static str,
    /// peergraph's value (a median of the runs, or a percentile of their samples).
    pub engine: f64,
    /// SQLite's value, taken the same way.
    pub sqlite: f64,
    /// Which direction is good.
    pub better: Better,
    /// How many repetitions of each side the values are taken over.
    pub runs: usize,
}

impl RecordsLine {
    /// The oriented ratio: engine / sqlite for [`Better::Higher`], sqlite / engine for
    /// [`Better::Lower`]; `None` when it is not finite (a zero or missing value).
    pub fn ratio(&self) -> Option<f64> {
        let ratio = match self.better {
            Better::Higher => self.engine / self.sqlite,
            Better::Lower => self.sqlite / self.engine,
        };
        ratio.is_finite().then_some(ratio)
    }

    /// The line as one JSON object, without a newline. Values have one decimal, three
    /// for milliseconds (a search takes well under one); the ratio has two, or two
    /// significant digits when it is below 0.1 (so that a ratio of 0.004 does not print
    /// as 0.00).
    pub fn to_json(&self) -> String {
        let decimals = if self.unit == "ms" { 3 } else { 1 };
        let mut out = String::with_capacity(160);
        let better = match self.better {
            Better::Higher => "higher",
            Better::Lower => "lower",
        };
        let _ = write!(
            out,
            "{{\"metric\":\"{}\",\"unit\":\"{}\",\"engine\":{},\"sqlite\":{},\"ratio\":{},\"better\":\"{}\",\"runs\":{}}}",
            self.metric,
            self.unit,
            number(self.engine, decimals),
            number(self.sqlite, decimals),
            self.ratio().map_or("null".to_owned(), ratio_text),
            better,
            self.runs,
        );
        out
    }
}

/// A ratio with two decimals, or two significant digits below 0.1.
fn ratio_text(ratio: f64) -> String {
    if ratio >= 0.1 || ratio <= 0.0 {
        return number(ratio, 2);
    }
    // 0.0123 has its first digit at 10^-2: 1 + 2 decimals keep two digits.
    let first_digit = -ratio.log10().floor();
    number(ratio, (1.0 + first_digit).clamp(2.0, 9.0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_is_oriented_so_that_one_or_more_is_as_good() {
        let line = RecordsLine {
            metric: "add_record_durable".into(),
            unit: "records/s",
            engine: 5000.0,
            sqlite: 4000.0,
            better: Better::Higher,
            runs: 5,
        };
        assert_eq!(
            line.to_json(),
            r#"{"metric":"add_record_durable","unit":"records/s","engine":5000.0,"sqlite":4000.0,"ratio":1.25,"better":"higher","runs":5}"#
        );
        let latency = RecordsLine {
            metric: "search_records_p50".into(),
            unit: "ms",
            engine: 2.0,
            sqlite: 1.0,
            better: Better::Lower,
            ..line
        };
        assert_eq!(
            latency.to_json(),
            r#"{"metric":"search_records_p50","unit":"ms","engine":2.000,"sqlite":1.000,"ratio":0.50,"better":"lower","runs":5}"#
        );
        let far = RecordsLine {
            engine: 64.0,
            sqlite: 0.28,
            ..latency.clone()
        };
        assert!(
            far.to_json().contains("\"ratio\":0.0044"),
            "{}",
            far.to_json()
        );
        let broken = RecordsLine {
            engine: 0.0,
            ..latency
        };
        assert!(broken.to_json().contains("\"ratio\":null"));
    }
}
