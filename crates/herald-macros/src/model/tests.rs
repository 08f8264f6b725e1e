//! Tests of the model derive.

use super::*;

/// The model the struct `src` validates to.
fn model(src: &str) -> Model {
    let input: DeriveInput = syn::parse_str(src).expect("the test input parses");
    match validate(&input) {
        Ok(model) => model,
        Err(e) => panic!("expected a valid model, got: {e}"),
    }
}

/// Every error message for the struct `src`, in order.
fn errors(src: &str) -> Vec<String> {
    let input: DeriveInput = syn::parse_str(src).expect("the test input parses");
    match validate(&input) {
        Ok(_) => panic!("expected errors for {src}"),
        Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
    }
}

/// The struct `src` fails with exactly one error, which contains `expected`.
fn check_error(src: &str, expected: &str) {
    let errors = errors(src);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains(expected),
        "error {:?}\ndoes not contain {expected:?}",
        errors[0]
    );
}

/// The expansion of the struct `src` contains `piece` (compared as token text).
fn check_expansion(src: &str, piece: TokenStream) {
    let input: TokenStream = src.parse().expect("the test input lexes");
    let out = expand(input).expect("valid input").to_string();
    let piece = piece.to_string();
    assert!(out.contains(&piece), "{out}\n\ndoes not contain\n\n{piece}");
}

fn columns(model: &Model) -> Vec<&str> {
    model.fields.iter().map(|f| f.column.as_str()).collect()
}

/// (AUTO_PK, whether the key's type is checked at compile time).
fn auto(src: &str) -> (bool, bool) {
    let m = model(src);
    (m.auto_pk, m.auto_span.is_some())
}

#[test]
fn defaults_an_auto_key_named_id_a_snake_case_table_and_field_named_columns() {
    let m = model("struct BookAuthor { id: Option<i64>, book_id: i64, r#type: String }");
    assert_eq!(m.table, "book_author");
    assert_eq!(m.name, "BookAuthor");
    assert_eq!(columns(&m), ["id", "book_id", "type"]);
    assert_eq!((m.pk, m.auto_pk, m.auto_span.is_some()), (0, true, false));
    assert_eq!(m.krate.to_string(), quote!(::herald).to_string());
}

#[test]
fn options_override_the_defaults() {
    let m = model(
        r#"
            #[model(table = "books", name = "Livre")]
            #[model(crate = ::my::herald)]
            struct Book {
                title: String,
                #[model(primary_key)]
                isbn: String,
                #[model(column = "url_slug")]
                slug: String,
                id: i64,
            }
            "#,
    );
    assert_eq!((m.table.as_str(), m.name.as_str()), ("books", "Livre"));
    assert_eq!(columns(&m), ["title", "isbn", "url_slug", "id"]);
    assert_eq!((m.pk, m.auto_pk), (1, false));
    assert_eq!(m.krate.to_string(), quote!(::my::herald).to_string());
}

#[test]
fn a_key_is_database_assigned_when_written_option_i64_or_marked_auto() {
    assert_eq!(auto("struct A { id: Option<i64> }"), (true, false));
    assert_eq!(
        auto("struct A { id: std::option::Option<i64> }"),
        (true, false)
    );
    assert_eq!(
        auto("struct A { id: ::core::option::Option<core::primitive::i64> }"),
        (true, false)
    );
    assert_eq!(auto("struct A { id: i64 }"), (false, false));
    assert_eq!(auto("struct A { id: Option<i32> }"), (false, false));
    assert_eq!(auto("struct A { id: my::Option<i64> }"), (false, false));
    assert_eq!(auto("struct A { id: Option<my::i64> }"), (false, false));
    // An explicit `auto` is checked at compile time; `auto = false` opts out.
    assert_eq!(
        auto("struct A { #[model(auto)] id: Option<i32> }"),
        (true, true)
    );
    assert_eq!(
        auto("struct A { #[model(primary_key, auto = false)] id: Option<i64> }"),
        (false, false)
    );
}

#[test]
fn snake_case_splits_words_acronyms_and_digits() {
    for (name, snake) in [
        ("Book", "book"),
        ("BookAuthor", "book_author"),
        ("HTTPRequest", "http_request"),
        ("Isbn13Code", "isbn13_code"),
        ("Book_Author", "book_author"),
        ("ABC", "abc"),
    ] {
        assert_eq!(snake_case(name), snake, "{name}");
    }
}

#[test]
fn table_and_column_names_are_checked_identifiers() {
    check_error(
        r#"#[model(table = "Books")] struct Book { id: i64 }"#,
        "invalid table name `Books`: it contains 'B'",
    );
    check_error(
        r#"#[model(table = "2books")] struct Book { id: i64 }"#,
        "it starts with a digit",
    );
    check_error(
        r#"struct Book { id: i64, #[model(column = "")] title: String }"#,
        "invalid column name ``: it is empty",
    );
    check_error(
        "struct Bücher { id: i64 }",
        "invalid table name `bücher`: it contains 'ü'; table and column names are lowercase \
             ASCII letters, digits and `_`, not starting with a digit; it comes from the struct's \
             name `Bücher`, so set one with `#[model(table = \"...\")]`",
    );
    check_error(
        "struct Book { id: i64, Title: String }",
        "invalid column name `Title`: it contains 'T'; table and column names are lowercase \
             ASCII letters, digits and `_`, not starting with a digit; it comes from the field's \
             name, so set one with `#[model(column = \"...\")]`",
    );
}

#[test]
fn two_fields_cannot_share_a_column() {
    check_error(
        r#"struct Book { id: i64, slug: String, #[model(column = "slug")] url: String }"#,
        "duplicate column `slug`: field `slug` already uses it",
    );
}

#[test]
fn a_model_has_exactly_one_primary_key() {
    check_error(
        "struct Book { isbn: String, title: String }",
        "`Book` has no primary key: mark its key field `#[model(primary_key)]`, or name it `id`",
    );
    check_error(
        "struct Book { #[model(primary_key)] id: i64, #[model(primary_key)] isbn: String }",
        "a second primary key: `id` is already the key",
    );
    check_error(
        "struct Book { id: Option<i64>, #[model(auto)] other: Option<i64> }",
        "`auto` applies to the primary key only",
    );
}

#[test]
fn only_plain_structs_with_named_fields_are_models() {
    check_error(
        "struct Book(i64, String);",
        "a tuple struct's fields have no names",
    );
    check_error("struct Book;", "a unit struct has no columns");
    check_error("enum Book { A }", "not an enum");
    check_error("union Book { a: i64 }", "not a union");
    check_error(
        "struct Book<T> { id: T }",
        "does not support generic parameters",
    );
    check_error(
        "struct Book<'a> { id: &'a str }",
        "does not support generic parameters",
    );
    check_error(
        "struct Book where i64: Copy { id: i64 }",
        "or where clauses",
    );
}

#[test]
fn unknown_misplaced_and_repeated_options_are_named() {
    check_error(
        r#"#[model(tabel = "books")] struct Book { id: i64 }"#,
        "unknown `model` option `tabel`: expected `table`, `name` or `crate`",
    );
    check_error(
        "struct Book { #[model(primary)] id: i64 }",
        "unknown `model` option `primary`: expected `primary_key`, `auto` or `column`",
    );
    check_error(
        "#[model(primary_key)] struct Book { id: i64 }",
        "`primary_key` goes on a field, not on the struct",
    );
    check_error(
        r#"struct Book { #[model(table = "x")] id: i64 }"#,
        "`table` goes on the struct, not on a field",
    );
    check_error(
        r#"#[model(table = "a")] #[model(table = "b")] struct Book { id: i64 }"#,
        "`table` is given twice",
    );
    check_error(
        "struct Book { #[model(primary_key = true)] id: i64 }",
        "`primary_key` takes no value: write `#[model(primary_key)]`",
    );
    check_error(
        r#"#[model(name = " ")] struct Book { id: i64 }"#,
        "the model's name cannot be empty",
    );
    check_error(
        "#[model] struct Book { id: i64 }",
        "expected attribute arguments",
    );
    // Options before a mistake still count: no "no primary key" on top of the typo.
    check_error(
        r#"struct Book { #[model(primary_key, colum = "x")] isbn: String }"#,
        "unknown `model` option `colum`",
    );
}

#[test]
fn independent_mistakes_are_reported_together() {
    let errors = errors(
        r#"struct Book { Title: String, #[model(column = "A")] b: String, #[model(nope)] c: i64 }"#,
    );
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(errors[0].contains("`Title`"));
    assert!(errors[1].contains("`A`"));
    assert!(errors[2].contains("`nope`"));
    assert!(errors[3].contains("no primary key"));
}

#[test]
fn expansion_goes_through_field_for_every_type_and_keeps_one_key_per_type() {
    let book = r#"
            #[model(table = "books")]
            struct Book { id: Option<i64>, #[model(column = "url_slug")] slug: String }
        "#;
    check_expansion(
        book,
        quote!(
            const TABLE: &'static str = "books";
        ),
    );
    check_expansion(
        book,
        quote! {
            ::herald::Column {
                name: "url_slug",
                sql_type: <String as ::herald::Field>::SQL_TYPE,
                nullable: <String as ::herald::Field>::NULLABLE,
            },
        },
    );
    check_expansion(
        book,
        quote!(
            const PK: usize = 0usize;
        ),
    );
    check_expansion(
        book,
        quote!(
            const AUTO_PK: bool = true;
        ),
    );
    check_expansion(
        book,
        quote!(
            static KEY: ::herald::dispatch::SenderKey = ::herald::dispatch::SenderKey::new();
        ),
    );
    check_expansion(
        book,
        quote!(1usize => <String as ::herald::Field>::to_value(&self.slug),),
    );
    check_expansion(
        book,
        quote!(::std::format!("expected 2 columns, got {}", values.len())),
    );
    let one = "#[model(crate = crate::db)] struct One { id: i64 }";
    check_expansion(
        one,
        quote!(::std::format!("expected 1 column, got {}", values.len())),
    );
    check_expansion(one, quote!(impl crate::db::Model for One));
}

#[test]
fn an_explicit_auto_key_has_its_type_checked_at_compile_time() {
    let message = "`A.key` is `#[model(auto)]`, so its type must be an `Option` of an integer \
                       type (`None` until the database assigns the key)";
    check_expansion(
        "struct A { #[model(primary_key, auto)] key: Option<i32> }",
        quote! {
            const _: () = ::core::assert!(
                <Option<i32> as ::herald::Field>::NULLABLE
                    && ::core::matches!(
                        <Option<i32> as ::herald::Field>::SQL_TYPE,
                        ::herald::SqlType::Int
                    ),
                #message
            );
        },
    );
}

#[test]
fn each_field_is_a_typed_column_constant_named_after_it_upper_cased() {
    let book = r#"
            pub(crate) struct Book {
                id: Option<i64>,
                #[model(column = "url_slug")] slug: String,
                r#type: Option<String>,
            }
        "#;
    check_expansion(
        book,
        quote!(
            pub(crate) const SLUG: ::herald::query::Col<Book, String> =
                ::herald::query::Col::new(1usize, "url_slug");
        ),
    );
    // `Option<String>` as a type, so that `>` and `>>` tokens compare alike.
    let ty: Type = syn::parse_quote!(Option<String>);
    check_expansion(
        book,
        quote!(
            pub(crate) const TYPE: ::herald::query::Col<Book, #ty> =
                ::herald::query::Col::new(2usize, "type");
        ),
    );
}
