//! Samples and their summary: median, p95, min, max.

use serde_json::{Value, json};

/// Repeated measurements of one quantity.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    /// No samples yet.
    pub fn new() -> Self {
        Samples(Vec::new())
    }

    /// Adds one.
    pub fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The `q` quantile (0 to 1), nearest-rank; NaN without samples.
    pub fn quantile(&self, q: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = (q * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    /// The median: the mean of the two middle samples for an even count.
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// The 95th percentile (nearest rank).
    pub fn p95(&self) -> f64 {
        self.quantile(0.95)
    }

    /// The smallest.
    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    /// The largest.
    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    /// `{"n", "median", "p95", "min", "max", "samples"}`, rounded to `digits`.
    pub fn json(&self, digits: i32) -> Value {
        let r = |x: f64| round(x, digits);
        json!({
            "n": self.len(),
            "median": r(self.median()),
            "p95": r(self.p95()),
            "min": r(self.min()),
            "max": r(self.max()),
            "samples": self.0.iter().map(|x| r(*x)).collect::<Vec<_>>(),
        })
    }
}

/// `x` rounded to `digits` decimals, as JSON (null for NaN).
pub fn round(x: f64, digits: i32) -> Value {
    if !x.is_finite() {
        return Value::Null;
    }
    let f = 10f64.powi(digits);
    json!((x * f).round() / f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p95() {
        let s = Samples((1..=20).map(f64::from).collect());
        assert_eq!(s.median(), 10.5);
        assert_eq!(s.p95(), 19.0);
        assert_eq!(s.min(), 1.0);
        assert_eq!(s.max(), 20.0);
        let odd = Samples(vec![5.0, 1.0, 3.0]);
        assert_eq!(odd.median(), 3.0);
        assert_eq!(odd.p95(), 5.0);
        assert!(Samples::new().median().is_nan());
        assert_eq!(Samples::new().json(1)["median"], Value::Null);
    }
}
