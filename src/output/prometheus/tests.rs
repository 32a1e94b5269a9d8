//! Unit tests of `prometheus`.

use super::*;

#[test]
fn a_repeated_label_set_is_written_once() {
    let mut f = Family::gauge("x", "h");
    f.add(&[("mac", "m")], Some(true));
    f.add(&[("mac", "m")], Some(false));
    f.add(&[("mac", "n")], Some(false));
    let mut out = String::new();
    f.write(&mut out);
    assert_eq!(
        out,
        "# HELP x h\n# TYPE x gauge\nx{mac=\"m\"} 1\nx{mac=\"n\"} 0\n"
    );
}

#[test]
fn a_failed_run_is_up_0_and_exit_3() {
    let report = Report {
        vms: Vec::new(),
        external_target: None,
        thresholds: Thresholds::default(),
        fatal: Some("libvirt down".into()),
        timestamp_ns: 1_500_000_000,
        duration_ms: 2.0,
        age_ms: None,
        no_vms_reason: None,
    };
    let r = render_prometheus(&report);
    assert_eq!(r.exit_code, 3);
    assert!(r.text.contains("\nvmnetprobe_up 0\n"), "{}", r.text);
    assert!(r.text.starts_with("# vmnetprobe error: libvirt down\n"));
    assert_eq!(r.text.matches("libvirt down").count(), 1);
}

#[test]
fn serve_counters_are_counters() {
    let text = render_serve_counters(&ServeCounters {
        scrapes: 3,
        probe_errors: 1,
        rejected: 2,
    });
    assert!(text.contains("# TYPE vmnetprobe_scrapes_total counter\nvmnetprobe_scrapes_total 3\n"));
    assert!(text.contains("vmnetprobe_probe_errors_total 1\n"));
    assert!(text.contains("vmnetprobe_http_rejected_total 2\n"));
}
