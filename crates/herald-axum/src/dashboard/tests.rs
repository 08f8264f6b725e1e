//! Tests of the dashboard's input checks.

use super::api::*;
use super::*;
use herald::tasks::TaskState;

#[test]
fn limits_ids_and_states_are_checked() {
    assert_eq!(parse_limit(None).ok(), Some(DEFAULT_LIMIT));
    assert_eq!(parse_limit(Some("7")).ok(), Some(7));
    for bad in [
        "0",
        "-1",
        "abc",
        "",
        "1.5",
        " 3",
        "1001",
        "99999999999999999999999",
    ] {
        let error = parse_limit(Some(bad)).expect_err(bad);
        assert_eq!(error.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert!(
        parse_limit(Some("5000"))
            .expect_err("too many")
            .message
            .contains("not clamped")
    );
    assert_eq!(parse_id("42").ok(), Some(42));
    for bad in ["0", "-3", "x", "", "99999999999999999999", "1e3", "+4"] {
        let error = parse_id(bad).expect_err(bad);
        assert!(error.message.contains(bad), "{}", error.message);
    }
    assert_eq!(parse_purge_state(Some("dead")).ok(), Some(TaskState::Dead));
    for bad in [None, Some("running"), Some("available"), Some("zombie")] {
        assert!(parse_purge_state(bad).is_err(), "{bad:?}");
    }
    assert_eq!(parse_kind(Some("reindex")).ok(), Some("reindex"));
    for bad in [None, Some("")] {
        assert!(parse_kind(bad).is_err(), "{bad:?}");
    }
    let long = "k".repeat(MAX_KIND + 1);
    assert!(parse_kind(Some(&long)).is_err());
}

#[test]
fn tokens_are_long_visible_ascii() {
    assert_eq!(validate_token("0123456789abcdef"), Ok(()));
    assert_eq!(validate_token(""), Err(InvalidToken::Blank));
    assert_eq!(validate_token("   "), Err(InvalidToken::Blank));
    assert_eq!(
        validate_token("short"),
        Err(InvalidToken::TooShort { len: 5 })
    );
    assert_eq!(
        validate_token("0123456789abcdé"),
        Err(InvalidToken::NotHeaderSafe { position: 15 })
    );
    assert_eq!(
        validate_token("0123456789 abcdef"),
        Err(InvalidToken::NotHeaderSafe { position: 11 })
    );
    let message = validate_token("s3cret").unwrap_err().to_string();
    assert!(message.contains("at least 16"), "{message}");
    assert!(!message.contains("s3cret"), "never shown: {message}");
}

#[test]
fn tokens_compare_whole() {
    assert!(same_bytes(b"secret", b"secret"));
    assert!(!same_bytes(b"secret", b"secreT"));
    assert!(!same_bytes(b"secret", b"secret2"));
}
