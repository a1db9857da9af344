//! Medians, percentiles, and the JSON line each metric prints (written by hand: a few fixed
//! fields need no serializer).

use std::fmt::Write as _;

use crate::settings::System;

/// Which direction of a metric is good.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Better {
    /// Throughputs.
    Higher,
    /// Latencies and memory.
    Lower,
}

impl Better {
    fn as_str(self) -> &'static str {
        match self {
            Better::Higher => "higher",
            Better::Lower => "lower",
        }
    }
}

/// One printed result: `{"metric":..,"unit":..,"peergraph":..,"raw_quinn":..,"iroh":..,
/// "libp2p":..,"better":..,"runs":..}`; a system that was not run or failed is null.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// The metric's name, with a suffix for its variants (`echo_rtt_p99`).
    pub metric: String,
    /// The unit of the values.
    pub unit: &'static str,
    /// One value per system, in [`System::ALL`] order.
    pub values: [Option<f64>; 4],
    /// Which direction is good.
    pub better: Better,
    /// Repetitions of each system the values are taken over.
    pub runs: usize,
}

impl Line {
    /// The line as one JSON object, without a newline.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(200);
        let _ = write!(
            out,
            "{{\"metric\":\"{}\",\"unit\":\"{}\"",
            self.metric, self.unit
        );
        for system in System::ALL {
            let value = self.values[system.index()]
                .filter(|value| value.is_finite())
                .map_or("null".to_owned(), |value| format!("{value:.1}"));
            let _ = write!(out, ",\"{}\":{value}", system.name());
        }
        let _ = write!(
            out,
            ",\"better\":\"{}\",\"runs\":{}}}",
            self.better.as_str(),
            self.runs
        );
        out
    }
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The `p`-th percentile (0 to 100) of `values` by nearest rank; NaN when empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_has_one_field_per_system() {
        let line = Line {
            metric: "bulk_throughput".into(),
            unit: "MiB/s",
            values: [Some(412.3), Some(430.14), None, Some(f64::NAN)],
            better: Better::Higher,
            runs: 5,
        };
        assert_eq!(
            line.to_json(),
            r#"{"metric":"bulk_throughput","unit":"MiB/s","peergraph":412.3,"raw_quinn":430.1,"iroh":null,"libp2p":null,"better":"higher","runs":5}"#
        );
    }

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 50.0), 50.0);
        assert_eq!(percentile(&hundred, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }
}
