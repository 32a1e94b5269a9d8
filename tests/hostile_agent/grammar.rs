//! Small grammar checks for vmnetprobe's outputs, strict enough to catch an
//! escaping mistake: the Nagios plugin output (status line, perfdata, long
//! output) and InfluxDB line protocol as Telegraf parses it.

use std::collections::BTreeMap;

pub const STATES: [&str; 4] = ["OK", "WARNING", "CRITICAL", "UNKNOWN"];

/// The parts of a Nagios plugin output.
#[derive(Debug)]
pub struct Nagios {
    pub state: String,
    pub summary: String,
    /// (label, value, uom); the value is NaN for `U` (unknown)
    pub perfdata: Vec<(String, f64, String)>,
    pub long_output: Vec<String>,
}

fn is_number(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// `[@][start:][end]` with `~` for negative infinity; empty is allowed.
fn is_threshold(text: &str) -> bool {
    let text = text.strip_prefix('@').unwrap_or(text);
    if text.is_empty() {
        return true;
    }
    match text.split_once(':') {
        Some((start, end)) => {
            (start.is_empty() || start == "~" || is_number(start))
                && (end.is_empty() || is_number(end))
        }
        None => is_number(text),
    }
}

fn check_perf_entry(label: &str, rest: &str) -> Result<(String, f64, String), String> {
    // vmnetprobe's labels have no blanks either (Icinga's guideline).
    if label.is_empty() || label.contains(['=', '\'']) || label.contains(char::is_whitespace) {
        return Err(format!("bad perfdata label {label:?}"));
    }
    let parts: Vec<&str> = rest.split(';').collect();
    if parts.len() > 5 {
        return Err(format!("too many ';' in perfdata {rest:?}"));
    }
    let value = parts[0];
    // The plugin API's "unknown": a bare `U`, no unit.
    let (value, unknown) = match value {
        "U" => ("0", true),
        _ => (value, false),
    };
    let uom_at = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(value.len());
    let (number, uom) = value.split_at(uom_at);
    if !is_number(number) {
        return Err(format!("perfdata value {value:?} is not a number"));
    }
    if !["", "s", "ms", "us", "%", "B", "KB", "MB", "TB", "c"].contains(&uom) {
        return Err(format!("perfdata unit {uom:?}"));
    }
    for (i, t) in parts.iter().enumerate().skip(1) {
        let ok = if i <= 2 {
            is_threshold(t)
        } else {
            t.is_empty() || is_number(t)
        };
        if !ok {
            return Err(format!("perfdata field {i} {t:?} in {rest:?}"));
        }
    }
    let number: f64 = number.parse().map_err(|e| format!("{number}: {e}"))?;
    let number = if unknown { f64::NAN } else { number };
    Ok((label.to_string(), number, uom.to_string()))
}

fn parse_perfdata(text: &str) -> Result<Vec<(String, f64, String)>, String> {
    let mut entries = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (label, after) = if let Some(quoted) = rest.strip_prefix('\'') {
            let end = quoted
                .find('\'')
                .ok_or_else(|| format!("unterminated label in {rest:?}"))?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = rest
                .find('=')
                .ok_or_else(|| format!("no '=' in perfdata {rest:?}"))?;
            let label = &rest[..end];
            if label.contains(' ') {
                return Err(format!("unquoted label with a space: {label:?}"));
            }
            (label, &rest[end..])
        };
        let after = after
            .strip_prefix('=')
            .ok_or_else(|| format!("no '=' after label {label:?}"))?;
        let end = after.find(' ').unwrap_or(after.len());
        entries.push(check_perf_entry(label, &after[..end])?);
        rest = after[end..].trim_start();
    }
    Ok(entries)
}

/// Checks a Nagios plugin output: `VMNETPROBE <STATE> - <text> | <perfdata>`
/// on the first line, no `|` anywhere in the long output (it would start
/// more perfdata), no control character but the line ends.
pub fn check_nagios(text: &str) -> Result<Nagios, String> {
    if !text.ends_with('\n') {
        return Err("output does not end with a newline".into());
    }
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\n') {
        return Err(format!("control character {c:?} in output"));
    }
    let mut lines = text.lines();
    let first = lines.next().ok_or("empty output")?;
    let rest = first
        .strip_prefix("VMNETPROBE ")
        .ok_or_else(|| format!("first line {first:?} lacks 'VMNETPROBE '"))?;
    let (state, rest) = rest
        .split_once(" - ")
        .ok_or_else(|| format!("first line {first:?} lacks ' - '"))?;
    if !STATES.contains(&state) {
        return Err(format!("state {state:?}"));
    }
    let parts: Vec<&str> = rest.split('|').collect();
    let (summary, perfdata) = match parts.as_slice() {
        [summary] => (summary.to_string(), Vec::new()),
        [summary, perf] => (summary.trim_end().to_string(), parse_perfdata(perf)?),
        _ => return Err(format!("more than one '|' in {first:?}")),
    };
    let long_output: Vec<String> = lines.map(str::to_string).collect();
    if let Some(line) = long_output.iter().find(|l| l.contains('|')) {
        return Err(format!("'|' in long output line {line:?}"));
    }
    Ok(Nagios {
        state: state.to_string(),
        summary,
        perfdata,
        long_output,
    })
}

// The values and points are the shared reader's (tests/common): this module
// adds the strict grammar on top, not a second data model.
pub use crate::common::line_protocol::{Field as FieldValue, Point};

/// Reads up to an unescaped stop character; `escapable` may follow a
/// backslash (which is then dropped). Returns (value, rest).
fn read_escaped<'a>(
    text: &'a str,
    stops: &[char],
    escapable: &[char],
) -> Result<(String, &'a str), String> {
    let mut out = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            if let Some(&(_, next)) = chars.peek() {
                if escapable.contains(&next) {
                    out.push(next);
                    chars.next();
                    continue;
                }
            }
            out.push(c);
            continue;
        }
        if stops.contains(&c) {
            return Ok((out, &text[i..]));
        }
        if c.is_control() {
            return Err(format!("raw control character {c:?} in {text:?}"));
        }
        out.push(c);
    }
    Ok((out, ""))
}

fn parse_field_value(text: &str) -> Result<(FieldValue, &str), String> {
    if let Some(body) = text.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, n @ ('"' | '\\'))) => out.push(n),
                    Some((_, n)) => {
                        out.push('\\');
                        out.push(n);
                    }
                    None => return Err("string field ends in a backslash".into()),
                },
                '"' => return Ok((FieldValue::Str(out), &body[i + 1..])),
                '\n' | '\r' => return Err("newline in a string field".into()),
                _ => out.push(c),
            }
        }
        return Err(format!("unterminated string field {text:?}"));
    }
    let end = text.find([',', ' ']).unwrap_or(text.len());
    let (raw, rest) = text.split_at(end);
    let value = if let Some(int) = raw.strip_suffix('i') {
        FieldValue::Int(int.parse().map_err(|_| format!("bad integer {raw:?}"))?)
    } else if ["t", "T", "true", "True", "TRUE"].contains(&raw) {
        FieldValue::Bool(true)
    } else if ["f", "F", "false", "False", "FALSE"].contains(&raw) {
        FieldValue::Bool(false)
    } else if is_number(raw) {
        FieldValue::Float(raw.parse().map_err(|_| format!("bad float {raw:?}"))?)
    } else {
        return Err(format!("bad field value {raw:?}"));
    };
    Ok((value, rest))
}

pub fn parse_line(line: &str) -> Result<Point, String> {
    let (measurement, mut rest) = read_escaped(line, &[',', ' '], &[',', ' '])?;
    if measurement.is_empty() {
        return Err(format!("no measurement in {line:?}"));
    }
    let mut tags = Vec::new();
    while let Some(after) = rest.strip_prefix(',') {
        let (key, after) = read_escaped(after, &['=', ',', ' '], &[',', ' ', '='])?;
        let after = after
            .strip_prefix('=')
            .ok_or_else(|| format!("tag {key:?} without '=' in {line:?}"))?;
        let (value, after) = read_escaped(after, &[',', ' ', '='], &[',', ' ', '='])?;
        if after.starts_with('=') {
            return Err(format!("unescaped '=' in tag value {value:?} of {line:?}"));
        }
        if key.is_empty() || value.is_empty() {
            return Err(format!("empty tag key or value in {line:?}"));
        }
        tags.push((key, value));
        rest = after;
    }
    let mut rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no field set in {line:?}"))?;
    let mut fields = Vec::new();
    loop {
        let (key, after) = read_escaped(rest, &['=', ',', ' '], &[',', ' ', '='])?;
        let after = after
            .strip_prefix('=')
            .ok_or_else(|| format!("field {key:?} without '=' in {line:?}"))?;
        if key.is_empty() {
            return Err(format!("empty field key in {line:?}"));
        }
        let (value, after) = parse_field_value(after)?;
        fields.push((key, value));
        if let Some(next) = after.strip_prefix(',') {
            rest = next;
            continue;
        }
        rest = after;
        break;
    }
    let timestamp = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no timestamp in {line:?}"))?;
    let timestamp: i64 = timestamp
        .parse()
        .map_err(|_| format!("bad timestamp {timestamp:?} in {line:?}"))?;
    Ok(Point {
        measurement,
        tags,
        fields,
        timestamp: Some(timestamp),
    })
}

/// Parses a whole batch and checks what holds across lines: one timestamp,
/// a field never changes type, the batch ends with `vmnetprobe_run`.
pub fn check_line_protocol(text: &str) -> Result<Vec<Point>, String> {
    if !text.ends_with('\n') {
        return Err("batch does not end with a newline".into());
    }
    let points = text
        .lines()
        .map(parse_line)
        .collect::<Result<Vec<_>, _>>()?;
    let mut types: BTreeMap<(String, String), &'static str> = BTreeMap::new();
    for point in &points {
        for (key, value) in &point.fields {
            let seen = types
                .entry((point.measurement.clone(), key.clone()))
                .or_insert(value.kind());
            if *seen != value.kind() {
                return Err(format!(
                    "{}.{key} is {} here and {seen} elsewhere",
                    point.measurement,
                    value.kind()
                ));
            }
        }
    }
    if points.windows(2).any(|w| w[0].timestamp != w[1].timestamp) {
        return Err("more than one timestamp in one batch".into());
    }
    match points.last() {
        Some(p) if p.measurement == "vmnetprobe_run" => Ok(points),
        _ => Err("batch does not end with vmnetprobe_run".into()),
    }
}

#[cfg(test)]
mod self_tests {
    use super::*;

    #[test]
    fn nagios_checker_accepts_good_and_refuses_bad() {
        let good = "VMNETPROBE OK - fine | vms=1;;;0 'a.rtt'=0.41ms;100;~:500;0; 'b.rtt'=U;100;500;0; duration=1.5ms;;;0;\n[OK] a\n";
        let n = check_nagios(good).unwrap();
        assert_eq!(n.perfdata.len(), 4);
        assert!(n.perfdata[2].1.is_nan());
        for bad in [
            "VMNETPROBE OK - a | b | c=1\n",
            "VMNETPROBE FINE - x\n",
            "VMNETPROBE OK - x | 'a=b'=1\n",
            "VMNETPROBE OK - x | a b=1\n",
            "VMNETPROBE OK - x | a=1parsec\n",
            "VMNETPROBE OK - x | 'a b'=1\n",
            "VMNETPROBE OK - x | a=Ums\n",
            "VMNETPROBE OK - x\nlong | perf\n",
            "VMNETPROBE OK - x\r\n",
            "VMNETPROBE OK - x",
        ] {
            assert!(check_nagios(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn line_protocol_checker_accepts_good_and_refuses_bad() {
        let good =
            "m,vm=a\\ b\\,c\\=d x=1i,s=\"q\\\"\\\\\",f=0.5,b=true 5\nvmnetprobe_run vms=1i 5\n";
        let points = check_line_protocol(good).unwrap();
        assert_eq!(points[0].tag("vm"), Some("a b,c=d"));
        assert_eq!(points[0].field("s"), Some(&FieldValue::Str("q\"\\".into())));
        for bad in [
            "m,vm=a b x=1i 5\nvmnetprobe_run v=1i 5\n",
            "m,vm=a=b x=1i 5\nvmnetprobe_run v=1i 5\n",
            "m x=\"a 5\nvmnetprobe_run v=1i 5\n",
            "m x=1i 5\nm x=1.0 5\nvmnetprobe_run v=1i 5\n",
            "m x=1i 5\nvmnetprobe_run v=1i 6\n",
            "m x=1e5 5\nvmnetprobe_run v=1i 5\n",
            "m,vm= x=1i 5\nvmnetprobe_run v=1i 5\n",
            "vmnetprobe_run v=1i\n",
        ] {
            assert!(check_line_protocol(bad).is_err(), "{bad:?}");
        }
    }
}
