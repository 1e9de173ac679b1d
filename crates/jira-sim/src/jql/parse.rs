//! JQL text to a syntax tree: the lexer and a recursive-descent parser.

pub(crate) const UNBOUNDED: &str =
    "Unbounded JQL queries are not allowed here. Please add a search restriction to your query.";

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Comma,
    Op(&'static str),
    /// A quoted string.
    Quoted(String),
    /// A bare word: keyword, field name, number, key, relative date.
    Word(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Project,
    Issue,
    Updated,
    Created,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    In,
    NotIn,
    IsEmpty,
    IsNotEmpty,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Clause {
        field: Field,
        op: Op,
        values: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SortField {
    Key,
    Id,
    Updated,
    Created,
    Project,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    pub filter: Option<Expr>,
    pub order: Vec<(SortField, bool)>,
}

/// A JQL problem, reported to the client as a 400 with this message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JqlError(pub String);

pub(super) fn err<T>(message: impl Into<String>) -> Result<T, JqlError> {
    Err(JqlError(message.into()))
}

fn lex(text: &str) -> Result<Vec<Token>, JqlError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '(' | ')' | ',' => {
                tokens.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
                i += 1;
            }
            '=' => {
                tokens.push(Token::Op("="));
                i += 1;
            }
            '!' | '<' | '>' => {
                let op = match (c, next) {
                    ('!', Some('=')) => "!=",
                    ('<', Some('=')) => "<=",
                    ('>', Some('=')) => ">=",
                    ('<', _) => "<",
                    ('>', _) => ">",
                    _ => {
                        return err(format!(
                            "Error in the JQL Query: The character '!' on line 1, position {} is a reserved JQL character.",
                            i + 1
                        ));
                    }
                };
                tokens.push(Token::Op(op));
                i += op.len();
            }
            '"' | '\'' => {
                let (value, end) = quoted(&chars, i)?;
                tokens.push(Token::Quoted(value));
                i = end;
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !"()=,!<>\"'~".contains(chars[i])
                {
                    i += 1;
                }
                if i == start {
                    return err(format!(
                        "Error in the JQL Query: The character '{c}' on line 1, position {} is a reserved JQL character.",
                        i + 1
                    ));
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(tokens)
}

/// Reads a quoted string starting at `start` (the quote); returns it and the index after it.
fn quoted(chars: &[char], start: usize) -> Result<(String, usize), JqlError> {
    let quote = chars[start];
    let mut value = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                value.push(chars[i + 1]);
                i += 2;
            }
            c if c == quote => return Ok((value, i + 1)),
            c => {
                value.push(c);
                i += 1;
            }
        }
    }
    err(format!(
        "Error in the JQL Query: The quoted string starting at position {} is not terminated.",
        start + 1
    ))
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

fn is_keyword(token: Option<&Token>, keyword: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
}

fn describe(token: Option<&Token>) -> String {
    match token {
        None => "the end of the query".to_owned(),
        Some(Token::Open) => "'('".to_owned(),
        Some(Token::Close) => "')'".to_owned(),
        Some(Token::Comma) => "','".to_owned(),
        Some(Token::Op(op)) => format!("'{op}'"),
        Some(Token::Quoted(s)) => format!("'\"{s}\"'"),
        Some(Token::Word(w)) => format!("'{w}'"),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn bump(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn expected<T>(&self, what: &str) -> Result<T, JqlError> {
        err(format!(
            "Error in the JQL Query: Expecting {what} but got {}.",
            describe(self.peek())
        ))
    }

    fn or(&mut self) -> Result<Expr, JqlError> {
        let mut parts = vec![self.and()?];
        while is_keyword(self.peek(), "or") {
            self.at += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Expr, JqlError> {
        let mut parts = vec![self.unary()?];
        while is_keyword(self.peek(), "and") {
            self.at += 1;
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn unary(&mut self) -> Result<Expr, JqlError> {
        if is_keyword(self.peek(), "not") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or()?;
            if self.bump() != Some(Token::Close) {
                self.at -= 1;
                return self.expected("')'");
            }
            return Ok(inner);
        }
        self.clause()
    }

    fn clause(&mut self) -> Result<Expr, JqlError> {
        let name = match self.peek() {
            Some(Token::Word(w)) if !is_reserved(w) => w.clone(),
            Some(Token::Quoted(w)) => w.clone(),
            _ => return self.expected("a field name"),
        };
        self.at += 1;
        let field = match name.to_ascii_lowercase().as_str() {
            "project" => Field::Project,
            "key" | "issuekey" | "id" | "issue" => Field::Issue,
            "updated" | "updateddate" => Field::Updated,
            "created" | "createddate" => Field::Created,
            _ => {
                return err(format!(
                    "Field '{name}' does not exist or you do not have permission to view it."
                ));
            }
        };
        let op = self.operator()?;
        let values = match op {
            Op::IsEmpty | Op::IsNotEmpty => Vec::new(),
            Op::In | Op::NotIn => self.list()?,
            _ => vec![self.value()?],
        };
        Ok(Expr::Clause { field, op, values })
    }

    fn operator(&mut self) -> Result<Op, JqlError> {
        let op = match self.peek() {
            Some(Token::Op(op)) => match *op {
                "=" => Op::Eq,
                "!=" => Op::Ne,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                "<" => Op::Lt,
                _ => Op::Le,
            },
            Some(t) if is_keyword(Some(t), "in") => Op::In,
            Some(t)
                if is_keyword(Some(t), "not") && is_keyword(self.tokens.get(self.at + 1), "in") =>
            {
                self.at += 1;
                Op::NotIn
            }
            Some(t) if is_keyword(Some(t), "is") => {
                self.at += 1;
                let negated = is_keyword(self.peek(), "not");
                if negated {
                    self.at += 1;
                }
                if !(is_keyword(self.peek(), "empty") || is_keyword(self.peek(), "null")) {
                    return self.expected("'EMPTY'");
                }
                if negated { Op::IsNotEmpty } else { Op::IsEmpty }
            }
            _ => return self.expected("an operator"),
        };
        self.at += 1;
        Ok(op)
    }

    fn value(&mut self) -> Result<String, JqlError> {
        match self.peek() {
            Some(Token::Quoted(v)) => {
                let v = v.clone();
                self.at += 1;
                Ok(v)
            }
            Some(Token::Word(w)) if !is_reserved(w) => {
                let w = w.clone();
                self.at += 1;
                Ok(w)
            }
            _ => self.expected("either a value, 'EMPTY' or a function"),
        }
    }

    fn list(&mut self) -> Result<Vec<String>, JqlError> {
        if self.bump() != Some(Token::Open) {
            self.at -= 1;
            return self.expected("'('");
        }
        let mut values = vec![self.value()?];
        loop {
            match self.bump() {
                Some(Token::Comma) => values.push(self.value()?),
                Some(Token::Close) => return Ok(values),
                _ => {
                    self.at -= 1;
                    return self.expected("')'");
                }
            }
        }
    }

    fn order(&mut self) -> Result<Vec<(SortField, bool)>, JqlError> {
        let mut order = Vec::new();
        loop {
            let name = match self.bump() {
                Some(Token::Word(w)) | Some(Token::Quoted(w)) => w,
                _ => {
                    self.at -= 1;
                    return self.expected("a field name");
                }
            };
            let field = match name.to_ascii_lowercase().as_str() {
                "key" | "issuekey" => SortField::Key,
                "id" | "issue" => SortField::Id,
                "updated" | "updateddate" => SortField::Updated,
                "created" | "createddate" => SortField::Created,
                "project" => SortField::Project,
                _ => return err(format!("Not able to sort using field '{name}'.")),
            };
            let mut ascending = true;
            if is_keyword(self.peek(), "asc") || is_keyword(self.peek(), "desc") {
                ascending = is_keyword(self.peek(), "asc");
                self.at += 1;
            }
            order.push((field, ascending));
            if self.peek() != Some(&Token::Comma) {
                break;
            }
            self.at += 1;
        }
        if order.len() > 7 {
            return err("The ORDER BY clause may not contain more than 7 fields.");
        }
        Ok(order)
    }
}

fn is_reserved(word: &str) -> bool {
    [
        "and", "or", "not", "in", "is", "order", "by", "empty", "null",
    ]
    .iter()
    .any(|k| word.eq_ignore_ascii_case(k))
}

/// Parses JQL text. An empty query parses to no filter; the caller decides whether that is
/// allowed (search and count reject it as unbounded).
pub(crate) fn parse(text: &str) -> Result<Query, JqlError> {
    let mut parser = Parser {
        tokens: lex(text)?,
        at: 0,
    };
    let starts_with_order =
        is_keyword(parser.peek(), "order") && is_keyword(parser.tokens.get(1), "by");
    let filter = if parser.peek().is_none() || starts_with_order {
        None
    } else {
        Some(parser.or()?)
    };
    let mut order = Vec::new();
    if is_keyword(parser.peek(), "order") {
        parser.at += 1;
        if !is_keyword(parser.peek(), "by") {
            return parser.expected("'BY'");
        }
        parser.at += 1;
        order = parser.order()?;
    }
    if parser.peek().is_some() {
        return parser.expected("either 'AND', 'OR' or 'ORDER BY'");
    }
    Ok(Query { filter, order })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clause(field: Field, op: Op, values: &[&str]) -> Expr {
        Expr::Clause {
            field,
            op,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn parses_a_typical_incremental_query() {
        let query = parse(
            r#"project = OPS AND updated >= "2025/03/04 19:15" ORDER BY updated ASC, key ASC"#,
        )
        .expect("valid");
        assert_eq!(
            query.filter,
            Some(Expr::And(vec![
                clause(Field::Project, Op::Eq, &["OPS"]),
                clause(Field::Updated, Op::Ge, &["2025/03/04 19:15"]),
            ]))
        );
        assert_eq!(
            query.order,
            vec![(SortField::Updated, true), (SortField::Key, true)]
        );
    }

    #[test]
    fn keywords_are_case_insensitive_and_precedence_puts_and_before_or() {
        let query =
            parse("Project In (OPS, 'WEB') or KEY = OPS-1 and not id != 10001 order by KEY desc")
                .expect("valid");
        assert_eq!(
            query.filter,
            Some(Expr::Or(vec![
                clause(Field::Project, Op::In, &["OPS", "WEB"]),
                Expr::And(vec![
                    clause(Field::Issue, Op::Eq, &["OPS-1"]),
                    Expr::Not(Box::new(clause(Field::Issue, Op::Ne, &["10001"]))),
                ]),
            ]))
        );
        assert_eq!(query.order, vec![(SortField::Key, false)]);
    }

    #[test]
    fn not_in_and_parentheses_parse() {
        let query = parse("(project not in (A, B)) AND created < -2h").expect("valid");
        assert_eq!(
            query.filter,
            Some(Expr::And(vec![
                clause(Field::Project, Op::NotIn, &["A", "B"]),
                clause(Field::Created, Op::Lt, &["-2h"]),
            ]))
        );
    }

    #[test]
    fn empty_and_order_only_queries_have_no_filter() {
        assert_eq!(parse("").expect("valid").filter, None);
        assert_eq!(parse("   ").expect("valid").filter, None);
        let query = parse("ORDER BY key DESC").expect("valid");
        assert_eq!(query.filter, None);
        assert_eq!(query.order, vec![(SortField::Key, false)]);
    }

    #[test]
    fn syntax_errors_are_reported() {
        for bad in [
            "project =",
            "project = OPS AND",
            "(project = OPS",
            "project OPS",
            "project in OPS",
            "summary ~ foo",
            "project = \"OPS",
            "project = OPS ORDER BY",
            "project = OPS ORDER BY summary",
            "project = OPS extra",
        ] {
            assert!(parse(bad).is_err(), "{bad} should not parse");
        }
        let eight = "project = A ORDER BY key, id, updated, created, project, key, id, updated";
        assert!(parse(eight).is_err());
        let seven = "project = A ORDER BY key, id, updated, created, project, key, id";
        assert!(parse(seven).is_ok());
    }
}
