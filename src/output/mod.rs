//! Renderers: pure functions from a [`Report`] to text and an exit code.
//! Only `main.rs` writes to stdout.

use crate::report::Report;

/// What a renderer produces: the text for stdout and the process exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub exit_code: u8,
}

pub fn render_nagios(report: &Report) -> Rendered {
    Rendered { text: format!("VMNETPROBE {} - todo\n", report.state()), exit_code: report.state().code() }
}
pub fn render_discovery_vms(_report: &Report) -> Rendered {
    Rendered { text: "[]\n".into(), exit_code: 0 }
}
pub fn render_discovery_nics(_report: &Report) -> Rendered {
    Rendered { text: "[]\n".into(), exit_code: 0 }
}
pub fn render_zabbix(report: &Report) -> Rendered {
    render_status_json(report)
}
pub fn render_telegraf(_report: &Report) -> Rendered {
    Rendered { text: String::new(), exit_code: 0 }
}
pub fn render_status_table(report: &Report) -> Rendered {
    render_status_json(report)
}
pub fn render_status_json(report: &Report) -> Rendered {
    let text = serde_json::to_string(report).unwrap_or_default();
    Rendered { text: text + "\n", exit_code: 0 }
}
