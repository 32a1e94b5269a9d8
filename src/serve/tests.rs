//! Unit tests of `serve`.

use super::*;

#[test]
fn listen_addresses_are_ip_literals_with_a_port() {
    assert_eq!(
        parse_listen(DEFAULT_LISTEN).unwrap(),
        "127.0.0.1:9469".parse().unwrap()
    );
    assert!(parse_listen("[::1]:9469").is_ok());
    for bad in [
        "localhost:9469",
        "127.0.0.1",
        ":9469",
        "127.0.0.1:99999",
        "",
    ] {
        let e = parse_listen(bad).unwrap_err();
        assert!(e.0.starts_with("invalid --listen"), "{e}");
    }
}

#[test]
fn every_status_used_has_its_reason_phrase() {
    for status in [200, 400, 404, 405, 408, 431, 503] {
        assert_ne!(reason(status), "Error");
    }
}
