//! The routes the API's routers declare, read from their source, so that the tests that must
//! cover every route (the tenant-isolation matrix, the OpenAPI document) fail when one is added
//! without them.

use std::collections::BTreeSet;

/// The methods an axum router can route, lower-case as in an OpenAPI document.
pub const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

/// Every `(METHOD, path)` the API's routers declare, read from their source.
pub fn declared_routes() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let constant = text
            .split_once("const PATH: &str = \"")
            .map(|(_, rest)| rest.split('"').next().unwrap().to_owned());
        for (at, _) in text.match_indices(".route(") {
            let arguments = balanced(&text[at + ".route(".len()..]);
            let (path, handlers) = arguments.split_once(',').expect("a route has a path and handlers");
            let path = path.trim();
            let path = if let Some(literal) = path.strip_prefix('"') {
                literal.trim_end_matches('"').to_owned()
            } else if path == "PATH" {
                constant.clone().expect("a PATH constant")
            } else if let Some(literal) = path.strip_prefix("&format!(\"") {
                literal
                    .trim_end_matches(')')
                    .trim_end_matches('"')
                    .replace("{PATH}", constant.as_deref().expect("a PATH constant"))
            } else {
                panic!("a route path this test cannot read: {path}");
            };
            let methods = method_calls(handlers);
            assert!(!methods.is_empty(), "no method in the route {path}: {handlers}");
            for method in methods {
                routes.insert((method, path.clone()));
            }
        }
    }
    routes
}

/// The text up to the parenthesis that closes the one just opened.
pub fn balanced(text: &str) -> &str {
    let mut depth = 1;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[..i];
                }
            }
            _ => {}
        }
    }
    panic!("an unclosed parenthesis: {}", &text[..text.len().min(80)]);
}

/// The methods of a method router such as `get(show).put(save)`, upper-case.
pub fn method_calls(handlers: &str) -> Vec<String> {
    let mut found = Vec::new();
    for method in METHODS {
        for (at, _) in handlers.match_indices(&format!("{method}(")) {
            let before = handlers[..at].chars().next_back();
            if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
                found.push(method.to_uppercase());
            }
        }
    }
    found
}
