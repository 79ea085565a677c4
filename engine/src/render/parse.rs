//! Splits template text into literal text and expressions, keeping line and column for errors.
//!
//! Two syntaxes share one template:
//! - impact style `{OrderId}`: a single brace, a name, a single brace, nothing else;
//! - handlebars style `{{OrderId}}` and helper calls `{{amount TransactionAmount 2}}` with
//!   string and integer arguments and `(sub expressions)`.
//!
//! A `{` that does not open either form is literal text, which is why JSON's own braces need no
//! escaping. `\{` writes a literal `{` where a placeholder would otherwise start; `\\` is kept as is.

use super::TemplateError;

/// A position in the template, both 1-based; columns count characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// Line number.
    pub line: usize,
    /// Column number.
    pub column: usize,
}

/// One parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ast {
    /// A placeholder name.
    Name(String, Pos),
    /// A string literal argument.
    Str(String),
    /// An integer literal argument.
    Int(i64),
    /// A helper call.
    Call { helper: String, args: Vec<Ast>, pos: Pos },
}

/// A piece of a template in source order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Piece {
    Literal(String),
    Expr(Ast, Pos),
}

struct Scanner<'a> {
    text: &'a str,
    at: usize,
    line: usize,
    column: usize,
}

impl<'a> Scanner<'a> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn skip(&mut self, n: usize) {
        for _ in 0..n {
            self.bump();
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn ident(&mut self) -> Option<String> {
        let rest = self.rest();
        let len = ident_len(rest);
        if len == 0 {
            return None;
        }
        let name = rest[..len].to_owned();
        self.skip(len);
        Some(name)
    }

    fn error(&self, pos: Pos, message: impl Into<String>) -> TemplateError {
        TemplateError {
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }
}

/// Length of the identifier at the start of `text`: `[A-Za-z_][A-Za-z0-9_]*`.
fn ident_len(text: &str) -> usize {
    let bytes = text.as_bytes();
    if !bytes.first().is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') {
        return 0;
    }
    bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count()
}

/// Parses a whole template.
pub(super) fn parse(text: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut s = Scanner {
        text,
        at: 0,
        line: 1,
        column: 1,
    };
    let mut pieces = Vec::new();
    let mut literal = String::new();
    while let Some(c) = s.peek() {
        let rest = s.rest();
        if rest.starts_with("\\\\") {
            literal.push_str("\\\\");
            s.skip(2);
        } else if rest.starts_with("\\{") {
            literal.push('{');
            s.skip(2);
        } else if rest.starts_with("{{{") {
            return Err(s.error(
                s.pos(),
                "triple braces {{{...}}} would skip escaping and are not supported; \
                 use {{Name}}: every value is escaped for the body format",
            ));
        } else if rest.starts_with("{{") {
            let open = s.pos();
            s.skip(2);
            s.skip_spaces();
            if s.rest().starts_with('!') {
                skip_comment(&mut s, open)?;
                continue;
            }
            let ast = expression(&mut s)?;
            s.skip_spaces();
            if !s.rest().starts_with("}}") {
                let message = match s.peek() {
                    None => "this {{ is never closed; add }}".to_owned(),
                    Some(c) => format!(
                        "expected }}}} to close the {{{{ opened at line {}, column {}, found {c:?}",
                        open.line, open.column
                    ),
                };
                return Err(s.error(s.pos(), message));
            }
            s.skip(2);
            flush(&mut pieces, &mut literal);
            pieces.push(Piece::Expr(ast, open));
        } else if c == '{' && impact_placeholder_len(rest) > 0 {
            let pos = s.pos();
            let len = impact_placeholder_len(rest);
            let name = rest[1..len - 1].to_owned();
            s.skip(len);
            flush(&mut pieces, &mut literal);
            pieces.push(Piece::Expr(Ast::Name(name, pos), pos));
        } else {
            literal.push(c);
            s.bump();
        }
    }
    flush(&mut pieces, &mut literal);
    Ok(pieces)
}

/// `{Name}` at the start of `text`: its whole length, or 0.
fn impact_placeholder_len(text: &str) -> usize {
    let len = ident_len(&text[1..]);
    if len > 0 && text.as_bytes().get(len + 1) == Some(&b'}') {
        len + 2
    } else {
        0
    }
}

fn flush(pieces: &mut Vec<Piece>, literal: &mut String) {
    if !literal.is_empty() {
        pieces.push(Piece::Literal(std::mem::take(literal)));
    }
}

fn skip_comment(s: &mut Scanner<'_>, open: Pos) -> Result<(), TemplateError> {
    let end = if s.rest().starts_with("!--") { "--}}" } else { "}}" };
    match s.rest().find(end) {
        Some(offset) => {
            let n = s.rest()[..offset + end.len()].chars().count();
            s.skip(n);
            Ok(())
        }
        None => Err(s.error(open, format!("this comment is never closed; add {end}"))),
    }
}

fn expression(s: &mut Scanner<'_>) -> Result<Ast, TemplateError> {
    let pos = s.pos();
    match s.peek() {
        Some('#' | '/' | '^' | '>' | '&' | '~') => {
            return Err(s.error(
                pos,
                "block helpers, partials and whitespace control ({{#if}}, {{> x}}, {{~ }}) are not supported; \
                 use a helper such as {{default Name \"fallback\"}}",
            ));
        }
        Some('}') | None => return Err(s.error(pos, "empty {{ }}; write a placeholder name such as {{OrderId}}")),
        _ => {}
    }
    let Some(head) = s.ident() else {
        return Err(s.error(
            pos,
            format!(
                "expected a placeholder or helper name, found {:?}",
                s.peek().unwrap_or(' ')
            ),
        ));
    };
    let args = arguments(s, ")}")?;
    if args.is_empty() {
        Ok(Ast::Name(head, pos))
    } else {
        Ok(Ast::Call {
            helper: head,
            args,
            pos,
        })
    }
}

/// Arguments up to (not including) one of the `stop` characters.
fn arguments(s: &mut Scanner<'_>, stop: &str) -> Result<Vec<Ast>, TemplateError> {
    let mut args = Vec::new();
    loop {
        let had_space = s.peek().is_some_and(char::is_whitespace);
        s.skip_spaces();
        let pos = s.pos();
        match s.peek() {
            None => return Ok(args),
            Some(c) if stop.contains(c) => return Ok(args),
            Some(_) if !had_space => {
                return Err(s.error(
                    pos,
                    format!(
                        "expected a space before the next argument, found {:?}",
                        s.peek().unwrap()
                    ),
                ));
            }
            Some('"' | '\'') => args.push(Ast::Str(string(s)?)),
            Some('(') => {
                s.bump();
                s.skip_spaces();
                let Some(helper) = s.ident() else {
                    return Err(s.error(s.pos(), "expected a helper name after ("));
                };
                let inner = arguments(s, ")}")?;
                if s.peek() != Some(')') {
                    return Err(s.error(
                        s.pos(),
                        format!("expected ) to close the ( at line {}, column {}", pos.line, pos.column),
                    ));
                }
                s.bump();
                args.push(Ast::Call {
                    helper,
                    args: inner,
                    pos,
                });
            }
            Some(c) if c == '-' || c.is_ascii_digit() => {
                let len = s.rest().chars().skip(1).take_while(char::is_ascii_digit).count() + 1;
                let text = &s.rest()[..len];
                let value = text
                    .parse::<i64>()
                    .map_err(|_| s.error(pos, format!("{text:?} is not an integer")))?;
                s.skip(len);
                args.push(Ast::Int(value));
            }
            Some(_) => {
                let Some(name) = s.ident() else {
                    return Err(s.error(
                        pos,
                        format!(
                            "unexpected {:?}; arguments are names, \"strings\", integers or (helper calls)",
                            s.peek().unwrap()
                        ),
                    ));
                };
                if s.peek() == Some('=') {
                    return Err(s.error(
                        pos,
                        format!("named arguments ({name}=...) are not supported; pass values in order"),
                    ));
                }
                if s.peek() == Some('.') {
                    return Err(s.error(
                        pos,
                        "paths such as a.b are not supported; placeholders are plain names like OrderId",
                    ));
                }
                args.push(Ast::Name(name, pos));
            }
        }
    }
}

fn string(s: &mut Scanner<'_>) -> Result<String, TemplateError> {
    let open = s.pos();
    let quote = s.bump().expect("called on a quote");
    let mut value = String::new();
    loop {
        match s.bump() {
            None => return Err(s.error(open, format!("this string is never closed; add {quote}"))),
            Some('\\') => match s.bump() {
                Some(c @ ('\\' | '"' | '\'')) => value.push(c),
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                other => {
                    return Err(s.error(
                        s.pos(),
                        format!(
                            "unknown escape \\{}; use \\\\, \\\", \\', \\n or \\t",
                            other.unwrap_or(' ')
                        ),
                    ));
                }
            },
            Some(c) if c == quote => return Ok(value),
            Some(c) => value.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Pos {
        Pos { line, column }
    }

    #[test]
    fn json_braces_are_literal() {
        let pieces = parse(r#"{"order":"{OrderId}","amount":{TransactionAmount}}"#).unwrap();
        assert_eq!(
            pieces,
            vec![
                Piece::Literal(r#"{"order":""#.into()),
                Piece::Expr(Ast::Name("OrderId".into(), at(1, 11)), at(1, 11)),
                Piece::Literal(r#"","amount":"#.into()),
                Piece::Expr(Ast::Name("TransactionAmount".into(), at(1, 31)), at(1, 31)),
                Piece::Literal("}".into()),
            ]
        );
    }

    #[test]
    fn handlebars_calls_and_sub_expressions() {
        let pieces = parse("{{ upper (default SubId1 \"none\") }}").unwrap();
        let Piece::Expr(Ast::Call { helper, args, .. }, _) = &pieces[0] else {
            panic!("{pieces:?}")
        };
        assert_eq!(helper, "upper");
        assert!(matches!(&args[0], Ast::Call { helper, args, .. }
            if helper == "default" && args[1] == Ast::Str("none".into())));
    }

    #[test]
    fn escapes_and_comments() {
        let pieces = parse(r"a\{OrderId}b\\c{{! note }}{{!-- long }} note --}}").unwrap();
        assert_eq!(pieces, vec![Piece::Literal(r"a{OrderId}b\\c".into())]);
    }

    #[test]
    fn errors_have_line_and_column() {
        let error = parse("line one\n  {{amount TransactionAmount 2").unwrap_err();
        assert_eq!((error.line, error.column), (2, 31));
        assert!(error.message.contains("never closed"), "{error}");
        let error = parse("{{#if OrderId}}x{{/if}}").unwrap_err();
        assert_eq!((error.line, error.column), (1, 3));
        let error = parse("{{amount(TransactionAmount)}}").unwrap_err();
        assert!(error.message.contains("space"), "{error}");
        let error = parse("{{date EventDate \"%Y}}").unwrap_err();
        assert!(error.message.contains("string is never closed"), "{error}");
    }
}
