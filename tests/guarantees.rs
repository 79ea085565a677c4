//! `docs/guarantees.md` names the test that proves each promise, as `` `path.rs::function` ``.
//! Every test named there exists: a promise whose test was renamed or removed shows here, not
//! in a reader's trust.

use std::path::Path;

/// The `` `path.rs::function` `` references of `text`, in order.
fn references(text: &str) -> Vec<(String, String)> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|quoted| {
            let (path, function) = quoted.split_once(".rs::")?;
            let is_name = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_/-".contains(c));
            (is_name(path) && is_name(function) && !function.contains('/'))
                .then(|| (format!("{path}.rs"), function.to_owned()))
        })
        .collect()
}

/// Whether `source` defines a test function `name`: `fn name(` under `#[test]` (proptest's
/// too) or a tokio test, or a function the store's `suite!` or the end-to-end suites'
/// `on_both_backends!` runs on every backend.
fn defines_test(source: &str, name: &str) -> bool {
    let definition = format!("fn {name}(");
    let attributed = source.match_indices(&definition).any(|(at, _)| {
        let before = &source[..at];
        let attributes = &before[before.rfind('}').unwrap_or(0)..];
        attributes.contains("#[test]") || attributes.contains("#[tokio::test")
    });
    let in_suite = source.contains(&definition)
        && ["\nsuite!(", "\ncrate::on_both_backends!("].iter().any(|opening| {
            source.split(opening).skip(1).any(|list| {
                list.split(')')
                    .next()
                    .is_some_and(|names| names.split(',').any(|n| n.trim() == name))
            })
        });
    attributed || in_suite
}

#[test]
fn every_test_the_guarantees_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/guarantees.md")).expect("docs/guarantees.md reads");
    let named = references(&doc);
    assert!(
        named.len() >= 40,
        "the guarantees name their tests: {} found",
        named.len()
    );
    let missing: Vec<String> = named
        .iter()
        .filter(|(path, function)| {
            let source = std::fs::read_to_string(root.join(path)).unwrap_or_default();
            !defines_test(&source, function)
        })
        .map(|(path, function)| format!("{path}::{function}"))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/guarantees.md names tests that do not exist: {missing:#?}"
    );
}

#[test]
fn references_are_read_and_checked() {
    let text = "a `tests/x.rs::one_test`, `engine/src/y.rs::two` and `not a ref` or `z.rs` or `a.rs::b c`";
    assert_eq!(
        references(text),
        vec![
            ("tests/x.rs".to_owned(), "one_test".to_owned()),
            ("engine/src/y.rs".to_owned(), "two".to_owned())
        ]
    );
    let source = "#[test]\nfn real() {}\n\nfn helper() {}\n\n#[tokio::test]\nasync fn later() {}\n\
                  async fn each(backend: B) {}\nsuite!(\n    each,\n);\n";
    assert!(defines_test(source, "real"));
    assert!(defines_test(source, "later"));
    assert!(defines_test(source, "each"), "a test the suite runs on every backend");
    assert!(
        !defines_test(source, "helper"),
        "a function that is not a test proves nothing"
    );
    assert!(!defines_test(source, "absent"));
}
