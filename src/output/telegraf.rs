//! InfluxDB line protocol for Telegraf `inputs.exec`/`inputs.execd`:
//! Telegraf's escape sets (`plugins/serializers/influx/escape.go`), tag
//! values made storable by InfluxDB 1.x, stable field types, one timestamp
//! (the start of the run) on every line.

use super::{agent_up, cut_unique, reachable, Rendered};
use crate::report::{
    AgentReport, NicReport, Report, StateCounts, TargetReport, Thresholds, VmReport,
};
use crate::text::{flatten, truncate_chars};
use crate::verdict::Verdict;
use std::collections::BTreeMap;

/// String fields longer than this are cut (InfluxDB caps string fields at
/// 64 KB and Telegraf execd lines at 64 KiB; a reason is one short line).
const STRING_FIELD_MAX_CHARS: usize = 1024;
/// Tag values longer than this are cut and made unique with a hash
/// (Telegraf's parser refuses lines over 64 KiB; a tag is part of every
/// line of its series).
const TAG_MAX_CHARS: usize = 256;

pub fn render_telegraf(report: &Report) -> Rendered {
    let Report {
        vms,
        external_target: _,
        thresholds,
        fatal,
        timestamp_ns,
        duration_ms,
        age_ms,
        // vms=0 says it; the reason is for the status line.
        no_vms_reason: _,
    } = report;
    let Thresholds {
        warning: _,
        critical: _,
    } = thresholds;
    let mut text = String::new();
    if fatal.is_none() {
        for vm in vms {
            for point in vm_points(vm) {
                point.write(*timestamp_ns, &mut text);
            }
        }
    }
    let StateCounts {
        ok,
        warning,
        critical,
        unknown,
    } = report.counts();
    let mut run = Point::new("vmnetprobe_run")
        .int("vms", vms.len())
        .int("ok", ok)
        .int("warning", warning)
        .int("critical", critical)
        .int("unknown", unknown)
        .float("duration_ms", Some(*duration_ms))
        .bool("cached", Some(age_ms.is_some()))
        .float("age_ms", *age_ms);
    if let Some(fatal) = fatal {
        run = run.string("error", fatal);
    }
    run.write(*timestamp_ns, &mut text);
    // Telegraf drops the batch when the command fails; problems are data.
    Rendered { text, exit_code: 0 }
}

fn vm_points(vm: &VmReport) -> Vec<Point> {
    let VmReport {
        name,
        uuid,
        os,
        verdict,
        agent,
        nics,
        external,
        duration_ms,
        agent_commands,
        agent_execs,
        cloud,
    } = vm;
    let Verdict {
        state,
        code,
        reason,
    } = verdict;
    let AgentReport {
        verdict: agent_verdict,
        version: _,
        exec_enabled: _,
    } = agent;
    let mut points = vec![Point::new("vmnetprobe_vm")
        .tag("vm", name)
        .tag("uuid", uuid.as_deref().unwrap_or(""))
        // Host-side facts (Nova's metadata in the domain XML): stable tags.
        .tag("instance", cloud.as_ref().map_or("", |c| c.name.as_str()))
        .tag(
            "project",
            cloud
                .as_ref()
                .and_then(|c| c.project.as_deref())
                .unwrap_or(""),
        )
        .int("state_code", state.code())
        .string("state", state.as_str())
        .string("code", code.as_str())
        .string("reason", reason)
        .bool("agent_up", Some(agent_up(agent_verdict)))
        .float("duration_ms", Some(*duration_ms))
        .int("agent_commands", *agent_commands)
        .int("agent_execs", *agent_execs)
        // A field, not a tag: it reads "unknown" while the agent is down,
        // and a tag would split the VM's series each time.
        .string("os", os.as_str())];
    for nic in nics {
        let NicReport {
            mac,
            name: nic_name,
            host_dev: _,
            network,
            ips: _,
            gateway,
            gateway_source: _,
            kind,
            verdict,
            rtt_ms,
        } = nic;
        let mut point = Point::new("vmnetprobe_nic")
            .tag("vm", name)
            .tag("mac", mac)
            .tag("type", kind.as_str())
            .tag("network", network.as_deref().unwrap_or(""))
            .int("state_code", verdict.state.code())
            .bool("reachable", reachable(verdict, *rtt_ms))
            .float("rtt_ms", *rtt_ms);
        if let Some(gateway) = gateway {
            point = point.string("gateway", &gateway.to_string());
        }
        // The interface name comes from the guest (the tap device while the
        // agent is down): a field, so the series keeps to the MAC.
        if let Some(nic_name) = nic_name {
            point = point.string("nic", nic_name);
        }
        points.push(
            point
                .string("code", verdict.code.as_str())
                .string("reason", &verdict.reason),
        );
    }
    if let Some(TargetReport {
        address,
        verdict,
        rtt_ms,
    }) = external
    {
        points.push(
            Point::new("vmnetprobe_external")
                .tag("vm", name)
                .tag("target", &address.to_string())
                .int("state_code", verdict.state.code())
                .bool("reachable", reachable(verdict, *rtt_ms))
                .float("rtt_ms", *rtt_ms)
                .string("code", verdict.code.as_str())
                .string("reason", &verdict.reason),
        );
    }
    points
}

enum FieldValue {
    Int(i64),
    Float(String),
    Bool(bool),
    Str(String),
}

/// One line: measurement, tags (sorted by key, as Telegraf writes them),
/// fields in the order added.
struct Point {
    measurement: &'static str,
    tags: BTreeMap<&'static str, String>,
    fields: Vec<(&'static str, FieldValue)>,
}

impl Point {
    fn new(measurement: &'static str) -> Self {
        Point {
            measurement,
            tags: BTreeMap::new(),
            fields: Vec::new(),
        }
    }

    /// A tag, omitted when nothing storable is left of the value.
    fn tag(mut self, key: &'static str, value: &str) -> Self {
        let value = cut_unique(&tag_value(value), TAG_MAX_CHARS);
        if !value.is_empty() {
            self.tags.insert(key, value);
        }
        self
    }

    fn int(mut self, key: &'static str, value: impl TryInto<i64>) -> Self {
        if let Ok(value) = value.try_into() {
            self.fields.push((key, FieldValue::Int(value)));
        }
        self
    }

    /// A float field, omitted when absent, NaN or infinite.
    fn float(mut self, key: &'static str, value: Option<f64>) -> Self {
        if let Some(text) = value.and_then(float_text) {
            self.fields.push((key, FieldValue::Float(text)));
        }
        self
    }

    /// A boolean field, omitted when unknown.
    fn bool(mut self, key: &'static str, value: Option<bool>) -> Self {
        if let Some(value) = value {
            self.fields.push((key, FieldValue::Bool(value)));
        }
        self
    }

    fn string(mut self, key: &'static str, value: &str) -> Self {
        self.fields.push((key, FieldValue::Str(value.to_string())));
        self
    }

    fn write(&self, timestamp_ns: u64, out: &mut String) {
        if self.fields.is_empty() {
            return;
        }
        out.push_str(&escape_measurement(self.measurement));
        for (key, value) in &self.tags {
            out.push(',');
            out.push_str(&escape(key));
            out.push('=');
            out.push_str(&escape(value));
        }
        for (i, (key, value)) in self.fields.iter().enumerate() {
            out.push(if i == 0 { ' ' } else { ',' });
            out.push_str(&escape(key));
            out.push('=');
            match value {
                FieldValue::Int(v) => {
                    out.push_str(&v.to_string());
                    out.push('i');
                }
                FieldValue::Float(v) => out.push_str(v),
                FieldValue::Bool(v) => out.push_str(if *v { "true" } else { "false" }),
                FieldValue::Str(v) => out.push_str(&string_field(v)),
            }
        }
        out.push(' ');
        // Line protocol timestamps are int64: a report read back from the
        // (untrusted) state directory may carry any u64.
        out.push_str(&timestamp_ns.min(i64::MAX as u64).to_string());
        out.push('\n');
    }
}

/// Telegraf's escaper for tag keys, tag values and field keys: `\t \n \f
/// \r` as backslash escapes, and comma, space, equals sign preceded by a
/// backslash.
fn escape(text: &str) -> String {
    escape_with(text, true)
}

/// Telegraf's escaper for measurement names: as [`escape`] but `=` stays.
fn escape_measurement(text: &str) -> String {
    escape_with(text, false)
}

fn escape_with(text: &str, equals: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            ',' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '=' if equals => out.push_str("\\="),
            _ => out.push(c),
        }
    }
    out
}

/// A tag value InfluxDB 1.x stores as written: control characters become
/// spaces (1.x would store `\n` literally), and a backslash is dropped where
/// it would end the value or sit right before an escaped comma, space or
/// equals sign (`\\,` is not an escape in line protocol: the value would
/// end there). Surrounding blanks are trimmed; the result may be empty.
fn tag_value(raw: &str) -> String {
    // Every Unicode space becomes ' ' first, so trimming cannot uncover a
    // backslash the walk below already judged.
    let flat: String = flatten(raw)
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    let mut kept: Vec<char> = Vec::with_capacity(flat.len());
    // Walk from the end: is the next kept character escaped (or the end)?
    let mut next_is_special = true;
    for c in flat.trim().chars().rev() {
        if c == '\\' && next_is_special {
            continue;
        }
        next_is_special = matches!(c, ',' | ' ' | '=');
        kept.push(c);
    }
    kept.reverse();
    let value: String = kept.into_iter().collect();
    value.trim().to_string()
}

/// A string field: one line, `"` and `\` escaped, quoted.
fn string_field(raw: &str) -> String {
    let flat = truncate_chars(&flatten(raw), STRING_FIELD_MAX_CHARS);
    let mut out = String::with_capacity(flat.len() + 2);
    out.push('"');
    for c in flat.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Floats always carry a decimal point (`12.0`), never an exponent, at most
/// 6 decimals (nanoseconds when the unit is ms).
fn float_text(value: f64) -> Option<String> {
    super::fixed_decimal(value, 6)
}

#[cfg(test)]
mod tests;
