//! Nagios threshold ranges (`[@]start:end`, `~` for minus infinity), as the
//! monitoring-plugins developer guidelines define them.

use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    start: f64,
    end: f64,
    /// `@`: alert when inside the range instead of outside.
    inside: bool,
    text: String,
}

impl Range {
    /// True when `value` should raise the alert this range stands for.
    pub fn alerts(&self, value: f64) -> bool {
        let within = value >= self.start && value <= self.end;
        within == self.inside
    }

    /// The range as the user wrote it, for perfdata.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Range {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

fn parse_bound(text: &str, whole: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("invalid threshold range '{whole}': '{text}' is not a number"))?;
    if !value.is_finite() {
        return Err(format!("invalid threshold range '{whole}'"));
    }
    Ok(value)
}

impl FromStr for Range {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.is_empty() {
            return Err("empty threshold range".to_string());
        }
        let (inside, body) = match text.strip_prefix('@') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (start, end) = match body.split_once(':') {
            None => (0.0, parse_bound(body, text)?),
            Some((start, end)) => {
                let start = match start {
                    "~" => f64::NEG_INFINITY,
                    "" => 0.0,
                    other => parse_bound(other, text)?,
                };
                let end = if end.is_empty() {
                    f64::INFINITY
                } else {
                    parse_bound(end, text)?
                };
                (start, end)
            }
        };
        if start > end {
            return Err(format!(
                "invalid threshold range '{text}': start is greater than end"
            ));
        }
        Ok(Range {
            start,
            end,
            inside,
            text: text.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> Range {
        s.parse().expect("valid range")
    }

    #[test]
    fn follows_the_guideline_table() {
        // 10: alert if < 0 or > 10
        assert!(range("10").alerts(11.0));
        assert!(range("10").alerts(-1.0));
        assert!(!range("10").alerts(10.0));
        // 10: -> alert if < 10
        assert!(range("10:").alerts(9.9));
        assert!(!range("10:").alerts(1e9));
        // ~:10 -> alert if > 10
        assert!(range("~:10").alerts(10.5));
        assert!(!range("~:10").alerts(-1e9));
        // 10:20 -> outside
        assert!(range("10:20").alerts(9.0));
        assert!(range("10:20").alerts(21.0));
        assert!(!range("10:20").alerts(15.0));
        // @10:20 -> inside, inclusive
        assert!(range("@10:20").alerts(10.0));
        assert!(range("@10:20").alerts(20.0));
        assert!(!range("@10:20").alerts(20.1));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "20:10", "1:x", "@", "nan", "inf", "1e999"] {
            assert!(bad.parse::<Range>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn keeps_the_text_for_perfdata() {
        assert_eq!(range("~:250.5").as_str(), "~:250.5");
    }
}
