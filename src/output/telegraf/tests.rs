//! Unit tests of `telegraf`.

use super::*;

#[test]
fn escapes_exactly_like_telegraf() {
    assert_eq!(escape("a b,c=d"), "a\\ b\\,c\\=d");
    assert_eq!(escape("t\tn\nf\u{c}r\r"), "t\\tn\\nf\\fr\\r");
    assert_eq!(escape("ü\"'"), "ü\"'");
    assert_eq!(escape_measurement("m a,b=c"), "m\\ a\\,b=c");
}

#[test]
fn tag_values_are_storable() {
    let nasty = "web 01, \"x\"=ü\\";
    assert_eq!(tag_value(nasty), "web 01, \"x\"=ü");
    assert_eq!(escape(&tag_value(nasty)), "web\\ 01\\,\\ \"x\"\\=ü");
    assert_eq!(tag_value("line\nbreak\r\ttab"), "line break  tab");
    assert_eq!(tag_value("trailing\\\\"), "trailing");
    assert_eq!(tag_value("a\\,b"), "a,b");
    assert_eq!(tag_value("a\\\\,b"), "a,b");
    assert_eq!(tag_value("a\\ b"), "a b");
    assert_eq!(tag_value("C:\\Windows"), "C:\\Windows");
    assert_eq!(tag_value("\\"), "");
    assert_eq!(tag_value(" \n "), "");
}

#[test]
fn long_tag_values_are_cut_and_stay_apart() {
    let line = |name: &str| {
        let mut out = String::new();
        Point::new("m")
            .tag("vm", name)
            .int("f", 1)
            .write(5, &mut out);
        out
    };
    let a = line(&format!("{} a", "x".repeat(100_000)));
    let b = line(&format!("{} b", "x".repeat(100_000)));
    assert!(a.len() < 300, "{} bytes", a.len());
    assert_ne!(a, b);
    assert!(a.starts_with("m,vm=xxx") && a.contains('~'), "{a}");
}

#[test]
fn empty_tags_are_omitted() {
    let mut out = String::new();
    Point::new("m")
        .tag("a", "")
        .tag("b", "\\")
        .tag("c", "x")
        .int("f", 1)
        .write(5, &mut out);
    assert_eq!(out, "m,c=x f=1i 5\n");
}

#[test]
fn string_fields_are_quoted_and_escaped() {
    assert_eq!(
        string_field("He said \"hi\" C:\\Windows\\"),
        "\"He said \\\"hi\\\" C:\\\\Windows\\\\\""
    );
    assert_eq!(string_field("a\nb"), "\"a b\"");
    assert_eq!(
        string_field(&"x".repeat(5000)).chars().count(),
        STRING_FIELD_MAX_CHARS + 2
    );
}

#[test]
fn field_types_are_explicit_and_stable() {
    let mut out = String::new();
    Point::new("m")
        .int("i", 3u8)
        .float("f", Some(12.0))
        .float("tiny", Some(1e-7))
        .float("nan", Some(f64::NAN))
        .float("inf", Some(f64::INFINITY))
        .float("none", None)
        .bool("yes", Some(true))
        .bool("unknown", None)
        .string("s", "x")
        .write(1_795_636_800_000_000_000, &mut out);
    assert_eq!(
        out,
        "m i=3i,f=12.0,tiny=0.0,yes=true,s=\"x\" 1795636800000000000\n"
    );
}

#[test]
fn a_point_without_fields_is_not_written() {
    let mut out = String::new();
    Point::new("m").tag("a", "b").write(1, &mut out);
    assert_eq!(out, "");
}
