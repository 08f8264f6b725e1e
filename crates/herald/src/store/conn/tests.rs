//! Tests of splitting statements and refusing transaction control.

use super::{refuse_transaction_control, statements};

#[test]
fn statements_split_outside_quotes_and_comments() {
    assert_eq!(statements("SELECT 1; SELECT 2"), ["SELECT 1", " SELECT 2"]);
    assert_eq!(statements("SELECT ';'; x"), ["SELECT ';'", " x"]);
    let body = "CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END $$ LANGUAGE plpgsql";
    assert_eq!(statements(body), [body]);
    assert_eq!(statements("-- a; b\nSELECT 1"), ["-- a; b\nSELECT 1"]);
}

#[test]
fn transaction_control_is_found_in_any_statement() {
    assert!(refuse_transaction_control("SELECT 1; COMMIT").is_err());
    assert!(refuse_transaction_control("  begin  ").is_err());
    assert!(refuse_transaction_control("/* x */ savepoint a").is_err());
    assert!(refuse_transaction_control("SELECT 'BEGIN'").is_ok());
    assert!(refuse_transaction_control("CREATE TABLE commits (x INT)").is_ok());
    assert!(
        refuse_transaction_control(
            "CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END $$ LANGUAGE sql"
        )
        .is_ok()
    );
}

#[test]
fn a_sqlite_trigger_body_is_one_statement_and_what_follows_it_is_checked() {
    let trigger = "CREATE TRIGGER t BEFORE INSERT ON books WHEN NEW.price_cents < 0 \
                   BEGIN SELECT RAISE(ABORT, 'no'); UPDATE x SET n = 1; END";
    assert!(refuse_transaction_control(trigger).is_ok());
    assert!(refuse_transaction_control(&format!("{trigger}; SELECT 1")).is_ok());
    assert!(refuse_transaction_control(&format!("{trigger}; COMMIT")).is_err());
    assert!(refuse_transaction_control("CREATE TABLE t (x INT); END").is_err());
    assert!(
        refuse_transaction_control(
            "create temp trigger t after delete on b begin delete from c; end; rollback"
        )
        .is_err()
    );
}
