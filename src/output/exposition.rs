//! The Prometheus text exposition format 0.0.4 itself: metric families with
//! HELP and TYPE, samples with escaped labels, and the values it can carry
//! (an unknown value is left out, never written as NaN). What vmnetprobe
//! exposes is prometheus.rs.

use super::fixed_decimal;
use std::collections::HashSet;
use std::fmt::Write as _;

pub(super) type Labels = Vec<(&'static str, String)>;

/// One metric family: name, type, help, and its samples in order.
pub(super) struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(Labels, String)>,
    /// Label sets already written: a repeated one (two NICs with one MAC
    /// in a VM's XML, say) would make Prometheus refuse the whole scrape,
    /// so only the first is kept.
    seen: HashSet<Labels>,
}

impl Family {
    pub(super) fn gauge(name: &'static str, help: &'static str) -> Family {
        Family {
            name,
            kind: "gauge",
            help,
            samples: Vec::new(),
            seen: HashSet::new(),
        }
    }

    pub(super) fn counter(name: &'static str, help: &'static str) -> Family {
        Family {
            kind: "counter",
            ..Family::gauge(name, help)
        }
    }

    pub(super) fn add(&mut self, labels: &[(&'static str, &str)], value: impl Into<Value>) {
        if let Some(text) = value.into().text() {
            let labels: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
            if self.seen.insert(labels.clone()) {
                self.samples.push((labels, text));
            }
        }
    }

    pub(super) fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(self.help));
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in &self.samples {
            out.push_str(self.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (key, val)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{key}=\"{}\"", escape_label(val));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {value}");
        }
    }
}

/// A sample value; `None`-like values (unknown, NaN) are left out.
pub(super) enum Value {
    Int(u64),
    Float(Option<f64>),
    Flag(Option<bool>),
}

impl Value {
    pub(super) fn text(self) -> Option<String> {
        match self {
            Value::Int(v) => Some(v.to_string()),
            Value::Float(v) => v.and_then(|v| fixed_decimal(v, 9)),
            Value::Flag(v) => v.map(|b| u8::from(b).to_string()),
        }
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v)
    }
}

impl From<Option<f64>> for Value {
    fn from(v: Option<f64>) -> Value {
        Value::Float(v)
    }
}

impl From<Option<bool>> for Value {
    fn from(v: Option<bool>) -> Value {
        Value::Flag(v)
    }
}

/// Label values: backslash, double quote and line feed escaped, as the
/// text format requires; any other character (UTF-8) is kept.
pub(super) fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text: backslash and line feed escaped.
pub(super) fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_exactly_backslash_quote_newline() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_label("ü,= {}"), "ü,= {}");
        assert_eq!(escape_help("a\\b\nc\"d"), "a\\\\b\\nc\"d");
    }

    #[test]
    fn unknown_values_are_left_out() {
        let mut f = Family::gauge("x", "h");
        f.add(&[], Some(f64::NAN));
        f.add(&[], None::<bool>);
        f.add(&[], Some(0.000412));
        f.add(&[("a", "1")], Some(true));
        let mut out = String::new();
        f.write(&mut out);
        assert_eq!(
            out,
            "# HELP x h\n# TYPE x gauge\nx 0.000412\nx{a=\"1\"} 1\n"
        );
    }
}
