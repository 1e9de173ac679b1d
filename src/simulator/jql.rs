//! The JQL subset the simulator understands: parsing, then compiling against the site.
//!
//! Fields: `project`, `key`/`issuekey`/`id`/`issue`, `updated`, `created`. Operators
//! `= != > >= < <= in, not in, is [not] empty`; `AND`, `OR`, `NOT`, parentheses; `ORDER BY`
//! with at most seven fields. Keywords and field names are case-insensitive. Date literals are
//! read in the user's time zone at minute precision; a bare integer is epoch milliseconds.

use std::cmp::Ordering;

use chrono::{LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

use super::data::Issue;
use super::site::Site;

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

fn err<T>(message: impl Into<String>) -> Result<T, JqlError> {
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

/// Reads a date literal as Jira does: epoch milliseconds for a bare integer, a relative offset
/// such as `-15m`, or a wall-clock date or date-time in the user's zone.
pub(crate) fn date_literal(text: &str, zone: Tz, now_ms: i64) -> Option<i64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    if let Some(offset) = relative_ms(text) {
        return Some(now_ms + offset);
    }
    let naive = ["%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .or_else(|| {
            ["%Y/%m/%d", "%Y-%m-%d"]
                .iter()
                .find_map(|f| NaiveDate::parse_from_str(text, f).ok())
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    Some(local_to_ms(naive, zone))
}

/// Wall-clock time in `zone` to an instant. An ambiguous time (DST fall-back) takes the earlier
/// instant; a time inside a DST gap is shifted forward by the gap, using the offset in force
/// before it, as Java's `ZonedDateTime` does.
fn local_to_ms(naive: NaiveDateTime, zone: Tz) -> i64 {
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.timestamp_millis(),
        LocalResult::None => {
            let before = zone
                .from_local_datetime(&(naive - chrono::Duration::days(1)))
                .earliest();
            let offset_secs = before.map_or(0, |t| {
                use chrono::Offset;
                i64::from(t.offset().fix().local_minus_utc())
            });
            (naive.and_utc().timestamp() - offset_secs) * 1000
        }
    }
}

fn relative_ms(text: &str) -> Option<i64> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'-' => (-1, &text[1..]),
        b'+' => (1, &text[1..]),
        _ => (1, text),
    };
    let unit = rest.chars().last()?;
    let amount: i64 = rest[..rest.len() - unit.len_utf8()].parse().ok()?;
    let unit_ms = match unit {
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        'w' => 7 * 86_400_000,
        _ => return None,
    };
    Some(sign * amount * unit_ms)
}

/// A query compiled against the site: project names resolved, dates turned into instants.
pub(crate) enum Pred {
    All(Vec<Pred>),
    Any(Vec<Pred>),
    Not(Box<Pred>),
    Const(bool),
    Projects { negate: bool, projects: Vec<usize> },
    Ids { negate: bool, ids: Vec<i64> },
    IdCmp { op: Op, id: i64 },
    KeyCmp { op: Op, project: usize, num: u32 },
    Time { created: bool, op: Op, ms: i64 },
}

pub(crate) fn compile(expr: &Expr, site: &Site, zone: Tz, now_ms: i64) -> Result<Pred, JqlError> {
    match expr {
        Expr::And(parts) => Ok(Pred::All(
            parts
                .iter()
                .map(|p| compile(p, site, zone, now_ms))
                .collect::<Result<_, _>>()?,
        )),
        Expr::Or(parts) => Ok(Pred::Any(
            parts
                .iter()
                .map(|p| compile(p, site, zone, now_ms))
                .collect::<Result<_, _>>()?,
        )),
        Expr::Not(inner) => Ok(Pred::Not(Box::new(compile(inner, site, zone, now_ms)?))),
        Expr::Clause { field, op, values } => clause(*field, *op, values, site, zone, now_ms),
    }
}

fn clause(
    field: Field,
    op: Op,
    values: &[String],
    site: &Site,
    zone: Tz,
    now_ms: i64,
) -> Result<Pred, JqlError> {
    // Every field here always has a value, so emptiness checks are constants.
    match op {
        Op::IsEmpty => return Ok(Pred::Const(false)),
        Op::IsNotEmpty => return Ok(Pred::Const(true)),
        _ => {}
    }
    let negate = matches!(op, Op::Ne | Op::NotIn);
    match field {
        Field::Project => {
            if !matches!(op, Op::Eq | Op::Ne | Op::In | Op::NotIn) {
                return err(format!(
                    "The operator '{}' is not supported by the 'project' field.",
                    op_text(op)
                ));
            }
            let projects = values
                .iter()
                .map(|v| {
                    site.project_index(v).ok_or_else(|| {
                        JqlError(format!(
                            "The value '{v}' does not exist for the field 'project'."
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(Pred::Projects { negate, projects })
        }
        Field::Issue => issue_clause(op, values, site, negate),
        Field::Updated | Field::Created => {
            let name = if field == Field::Created {
                "created"
            } else {
                "updated"
            };
            let instants = values
                .iter()
                .map(|v| {
                    date_literal(v, zone, now_ms).ok_or_else(|| {
                        JqlError(format!("Date value '{v}' for field '{name}' is invalid. Valid formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'."))
                    })
                })
                .collect::<Result<Vec<i64>, _>>()?;
            let created = field == Field::Created;
            let per_value = match op {
                Op::In | Op::NotIn => Op::Eq,
                other => other,
            };
            let preds = instants
                .into_iter()
                .map(|ms| Pred::Time {
                    created,
                    op: per_value,
                    ms,
                })
                .collect();
            let any = Pred::Any(preds);
            Ok(if op == Op::NotIn {
                Pred::Not(Box::new(any))
            } else {
                any
            })
        }
    }
}

fn issue_clause(op: Op, values: &[String], site: &Site, negate: bool) -> Result<Pred, JqlError> {
    let numeric = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    if matches!(op, Op::Eq | Op::Ne | Op::In | Op::NotIn) {
        let mut ids = Vec::new();
        for value in values {
            if !numeric(value) && !value.contains('-') {
                return err(format!(
                    "The issue key '{value}' for field 'key' is invalid."
                ));
            }
            // Unknown or deleted issues simply match nothing.
            ids.extend(site.resolve(value));
        }
        return Ok(Pred::Ids { negate, ids });
    }
    let value = values.first().map(String::as_str).unwrap_or_default();
    if numeric(value) {
        let id = value
            .parse()
            .map_err(|_| JqlError(format!("The issue id '{value}' is invalid.")))?;
        return Ok(Pred::IdCmp { op, id });
    }
    let parsed = value
        .rsplit_once('-')
        .and_then(|(project, num)| Some((site.project_index(project)?, num.parse::<u32>().ok()?)));
    match parsed {
        Some((project, num)) => Ok(Pred::KeyCmp { op, project, num }),
        None => err(format!(
            "The issue key '{value}' for field 'key' is invalid."
        )),
    }
}

fn op_text(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::In => "in",
        Op::NotIn => "not in",
        Op::IsEmpty => "is empty",
        Op::IsNotEmpty => "is not empty",
    }
}

fn compare(op: Op, ordering: Ordering) -> bool {
    match op {
        Op::Eq | Op::In => ordering == Ordering::Equal,
        Op::Ne | Op::NotIn => ordering != Ordering::Equal,
        Op::Gt => ordering == Ordering::Greater,
        Op::Ge => ordering != Ordering::Less,
        Op::Lt => ordering == Ordering::Less,
        Op::Le => ordering != Ordering::Greater,
        Op::IsEmpty => false,
        Op::IsNotEmpty => true,
    }
}

impl Pred {
    pub fn matches(&self, issue: &Issue) -> bool {
        match self {
            Pred::All(parts) => parts.iter().all(|p| p.matches(issue)),
            Pred::Any(parts) => parts.iter().any(|p| p.matches(issue)),
            Pred::Not(inner) => !inner.matches(issue),
            Pred::Const(value) => *value,
            Pred::Projects { negate, projects } => projects.contains(&issue.project) != *negate,
            Pred::Ids { negate, ids } => ids.contains(&issue.id) != *negate,
            Pred::IdCmp { op, id } => compare(*op, issue.id.cmp(id)),
            Pred::KeyCmp { op, project, num } => {
                issue.project == *project && compare(*op, issue.num.cmp(num))
            }
            Pred::Time { created, op, ms } => {
                let value = if *created {
                    issue.created_ms
                } else {
                    issue.updated_ms
                };
                compare(*op, value.cmp(ms))
            }
        }
    }
}

/// Orders issues by the query's `ORDER BY` (default `key ASC`), then by id, so that every
/// ordering is total and offset paging is well defined.
pub(crate) fn sort(issues: &mut [&Issue], order: &[(SortField, bool)], site: &Site) {
    let default = [(SortField::Key, true)];
    let order = if order.is_empty() {
        &default[..]
    } else {
        order
    };
    issues.sort_by(|a, b| {
        for (field, ascending) in order {
            let ordering = match field {
                SortField::Key => site.projects[a.project]
                    .key
                    .cmp(&site.projects[b.project].key)
                    .then(a.num.cmp(&b.num)),
                SortField::Id => a.id.cmp(&b.id),
                SortField::Updated => a.updated_ms.cmp(&b.updated_ms),
                SortField::Created => a.created_ms.cmp(&b.created_ms),
                SortField::Project => site.projects[a.project]
                    .key
                    .cmp(&site.projects[b.project].key),
            };
            let ordering = if *ascending {
                ordering
            } else {
                ordering.reverse()
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        a.id.cmp(&b.id)
    });
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

    #[test]
    fn date_literals_are_read_in_the_users_zone() {
        let la: Tz = "America/Los_Angeles".parse().expect("zone");
        let kiritimati: Tz = "Pacific/Kiritimati".parse().expect("zone");
        // 2025-03-04 09:15 UTC.
        let want = 1_741_079_700_000;
        assert_eq!(date_literal("2025/03/04 01:15", la, 0), Some(want));
        assert_eq!(date_literal("2025-03-04 23:15", kiritimati, 0), Some(want));
        assert_eq!(
            date_literal("2025/03/04", chrono_tz::UTC, 0),
            Some(want - 9 * 3_600_000 - 15 * 60_000)
        );
        assert_eq!(date_literal("1741079700000", la, 0), Some(want));
        assert_eq!(date_literal("-15m", la, want), Some(want - 15 * 60_000));
        assert_eq!(date_literal("2w", la, 0), Some(14 * 86_400_000));
        assert_eq!(date_literal("yesterday", la, 0), None);
    }

    #[test]
    fn dst_ambiguity_takes_the_earlier_instant_and_gaps_shift_forward() {
        let la: Tz = "America/Los_Angeles".parse().expect("zone");
        // 2024-11-03 01:30 happens twice in Los Angeles; the first is 08:30 UTC (PDT).
        assert_eq!(
            date_literal("2024/11/03 01:30", la, 0),
            Some(1_730_622_600_000)
        );
        // 2024-03-10 02:30 does not exist; it becomes 03:30 PDT, which is 10:30 UTC.
        assert_eq!(
            date_literal("2024/03/10 02:30", la, 0),
            Some(1_710_066_600_000)
        );
    }
}
