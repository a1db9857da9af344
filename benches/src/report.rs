//! Medians, percentiles, and the JSON line each metric prints. The JSON is written by hand:
//! seven fixed fields do not need a serializer.

use std::fmt::Write as _;

/// Which direction of a metric is good.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Better {
    /// Throughputs: more is better, the target is `engine / raw >= x`.
    Higher,
    /// Latencies and memory: less is better, the target is `raw / engine >= x`.
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

/// What the raw quinn side of a line does, so a reader knows what the ratio compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    /// The same work written plainly on quinn's API, with the same guarantee.
    Raw,
    /// Small frames gathered into 32 KiB chunks before each write, as the engine does and
    /// a careful user would: the fair baseline for small messages.
    RawBatched,
    /// One `write_all` per small frame: the naive baseline, kept for reference.
    RawUnbatched,
    /// A close that ends once the peer has read everything and said so (our FIN, read to
    /// the end, the peer's FIN back), the guarantee of CloseDirectConnection's S_OK.
    RawConfirmedClose,
    /// `Connection::close` until the peer sees it: no guarantee that data was read.
    RawOneWayClose,
    /// The engine's protocol steps written on quinn, as the engine takes them on a second
    /// link to a node: a resumed handshake with a CONNECT-sized request as 0-RTT data and a
    /// WELCOME-sized answer as 0.5-RTT data, then a confirmed close. What the engine's
    /// open and close would cost with nothing of its own.
    RawSameSteps,
}

impl Baseline {
    /// The name printed in the JSON line.
    pub fn as_str(self) -> &'static str {
        match self {
            Baseline::Raw => "raw_quinn",
            Baseline::RawBatched => "raw_quinn_batched",
            Baseline::RawUnbatched => "raw_quinn_unbatched",
            Baseline::RawConfirmedClose => "raw_quinn_confirmed_close",
            Baseline::RawOneWayClose => "raw_quinn_one_way_close",
            Baseline::RawSameSteps => "raw_quinn_same_steps",
        }
    }
}

/// One printed result: `{"metric":..,"unit":..,"engine":..,"raw_quinn":..,"baseline":..,
/// "ratio":..,"better":..,"runs":..}` with `ratio` always engine over raw.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// The metric's name, with a suffix for its variants (`echo_rtt_p99`).
    pub metric: String,
    /// The unit of `engine` and `raw_quinn`.
    pub unit: &'static str,
    /// The engine's value (a median of the runs, or a percentile of their samples).
    pub engine: f64,
    /// Raw quinn's value, taken the same way.
    pub raw_quinn: f64,
    /// What raw quinn did for `raw_quinn` (see `Baseline`).
    pub baseline: Baseline,
    /// Which direction is good.
    pub better: Better,
    /// How many repetitions of each side the values are taken over.
    pub runs: usize,
}

impl Line {
    /// The line with raw quinn's side described as `baseline`.
    pub fn against(mut self, baseline: Baseline) -> Line {
        self.baseline = baseline;
        self
    }

    /// Engine over raw (`None` when raw is zero or a value is not finite).
    pub fn ratio(&self) -> Option<f64> {
        let ratio = self.engine / self.raw_quinn;
        ratio.is_finite().then_some(ratio)
    }

    /// The line as one JSON object, without a newline.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(160);
        let _ = write!(
            out,
            "{{\"metric\":\"{}\",\"unit\":\"{}\",\"engine\":{},\"raw_quinn\":{},\"baseline\":\"{}\",\"ratio\":{},\"better\":\"{}\",\"runs\":{}}}",
            self.metric,
            self.unit,
            number(self.engine, 1),
            number(self.raw_quinn, 1),
            self.baseline.as_str(),
            self.ratio().map_or("null".to_owned(), |r| number(r, 2)),
            self.better.as_str(),
            self.runs,
        );
        out
    }
}

/// A JSON number with `decimals` places, or `null` for NaN and infinities, which JSON has
/// no spelling for.
pub(crate) fn number(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "null".to_owned()
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
    fn the_line_has_the_issues_format() {
        let line = Line {
            metric: "bulk_throughput".into(),
            unit: "MiB/s",
            engine: 412.3,
            raw_quinn: 430.1,
            baseline: Baseline::Raw,
            better: Better::Higher,
            runs: 5,
        };
        assert_eq!(
            line.to_json(),
            r#"{"metric":"bulk_throughput","unit":"MiB/s","engine":412.3,"raw_quinn":430.1,"baseline":"raw_quinn","ratio":0.96,"better":"higher","runs":5}"#
        );
        let broken = Line {
            raw_quinn: 0.0,
            ..line
        };
        assert!(broken.to_json().contains("\"ratio\":null"));
    }

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 50.0), 50.0);
        assert_eq!(percentile(&hundred, 99.0), 99.0);
        assert_eq!(percentile(&hundred, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }
}
