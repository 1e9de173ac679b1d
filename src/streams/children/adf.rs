//! Atlassian Document Format (the rich text of comments, worklog comments and descriptions in
//! REST API v3) as plain text, for full-text search and language models: the words as a reader
//! sees them, one line per paragraph, list items with a dash, table cells between bars, a
//! mention as `@name`, an emoji by its short name, a link card by its address. Marks (bold,
//! links) drop away; media are `[attachment]`. A plain string (API v2, Data Center's wiki
//! markup) is kept as it is.

use serde_json::Value;

/// The text of an ADF document (or of a plain string).
pub fn to_text(document: &Value) -> String {
    if let Some(text) = document.as_str() {
        return text.to_owned();
    }
    let mut out = String::new();
    block(document, &mut out, "");
    // Lines end with a newline as they are written; trailing blank lines say nothing.
    out.truncate(out.trim_end().len());
    out
}

fn children(node: &Value) -> &[Value] {
    node.get("content")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn attr<'a>(node: &'a Value, name: &str) -> Option<&'a str> {
    node.get("attrs")?.get(name)?.as_str()
}

/// Writes a block node and ends it with a newline; `prefix` starts each of its lines (a list
/// item's dash, a quote's bar).
fn block(node: &Value, out: &mut String, prefix: &str) {
    let kind = node.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "doc" | "panel" | "layoutSection" | "layoutColumn" | "nestedExpand" | "bodiedExtension" => {
            for child in children(node) {
                block(child, out, prefix);
            }
        }
        "expand" => {
            if let Some(title) = attr(node, "title").filter(|t| !t.is_empty()) {
                line(out, prefix, title);
            }
            for child in children(node) {
                block(child, out, prefix);
            }
        }
        "paragraph" | "heading" => {
            let mut text = String::new();
            inline_all(children(node), &mut text);
            line(out, prefix, &text);
        }
        "codeBlock" => {
            let mut text = String::new();
            inline_all(children(node), &mut text);
            for code_line in text.lines() {
                line(out, prefix, code_line);
            }
        }
        "blockquote" => {
            let quoted = format!("{prefix}> ");
            for child in children(node) {
                block(child, out, &quoted);
            }
        }
        "bulletList" | "orderedList" | "taskList" | "decisionList" => {
            let start = node
                .get("attrs")
                .and_then(|a| a.get("order"))
                .and_then(Value::as_u64)
                .unwrap_or(1);
            for (n, item) in children(node).iter().enumerate() {
                let marker = match (kind, attr(item, "state")) {
                    ("orderedList", _) => format!("{}. ", start + n as u64),
                    (_, Some("DONE")) => "[x] ".to_owned(),
                    (_, Some("TODO")) => "[ ] ".to_owned(),
                    _ => "- ".to_owned(),
                };
                list_item(item, out, prefix, &marker);
            }
        }
        "table" => {
            for row in children(node) {
                let cells: Vec<String> = children(row)
                    .iter()
                    .map(|cell| {
                        let mut text = String::new();
                        block(cell, &mut text, "");
                        text.trim().replace('\n', " ")
                    })
                    .collect();
                line(out, prefix, &cells.join(" | "));
            }
        }
        "tableCell" | "tableHeader" | "listItem" | "taskItem" | "decisionItem" => {
            list_item(node, out, prefix, "");
        }
        "rule" => line(out, prefix, "---"),
        "mediaSingle" | "mediaGroup" | "media" | "mediaInline" => {
            line(out, prefix, "[attachment]");
        }
        "blockCard" | "embedCard" => line(out, prefix, attr(node, "url").unwrap_or_default()),
        // An inline node where a block was expected, or a block type this does not know:
        // its text still counts.
        _ => {
            let mut text = String::new();
            inline(node, &mut text);
            if !text.is_empty() {
                line(out, prefix, &text);
            }
        }
    }
}

/// A list item: its first line after `marker`, the lines after it indented as far.
fn list_item(item: &Value, out: &mut String, prefix: &str, marker: &str) {
    let mut inner = String::new();
    let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
    if matches!(kind, "taskItem" | "decisionItem") {
        // Their content is inline.
        inline_all(children(item), &mut inner);
        inner.push('\n');
    } else {
        for child in children(item) {
            block(child, &mut inner, "");
        }
    }
    let indent = " ".repeat(marker.chars().count());
    for (n, text) in inner.trim_end().lines().enumerate() {
        let lead = if n == 0 { marker } else { indent.as_str() };
        line(out, prefix, &format!("{lead}{text}"));
    }
}

fn line(out: &mut String, prefix: &str, text: &str) {
    out.push_str(prefix);
    out.push_str(text);
    out.push('\n');
}

fn inline_all(nodes: &[Value], out: &mut String) {
    for node in nodes {
        inline(node, out);
    }
}

/// Writes an inline node.
fn inline(node: &Value, out: &mut String) {
    let kind = node.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "text" => out.push_str(node.get("text").and_then(Value::as_str).unwrap_or_default()),
        "hardBreak" => out.push('\n'),
        "mention" => {
            let name = attr(node, "text").unwrap_or_default();
            if name.starts_with('@') {
                out.push_str(name);
            } else {
                out.push('@');
                out.push_str(name);
            }
        }
        "emoji" => out.push_str(
            attr(node, "shortName")
                .or_else(|| attr(node, "text"))
                .unwrap_or_default(),
        ),
        "inlineCard" => out.push_str(attr(node, "url").unwrap_or_default()),
        "status" => out.push_str(attr(node, "text").unwrap_or_default()),
        "date" => {
            let day = attr(node, "timestamp")
                .and_then(|t| t.parse::<i64>().ok())
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|d| d.format("%Y-%m-%d").to_string());
            out.push_str(&day.unwrap_or_default());
        }
        "mediaInline" => out.push_str("[attachment]"),
        _ => inline_all(children(node), out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(content: Value) -> String {
        to_text(&json!({"type": "doc", "version": 1, "content": content}))
    }

    #[test]
    fn paragraphs_become_lines_and_marks_drop_away() {
        let doc = json!([
            {"type": "paragraph", "content": [
                {"type": "text", "text": "Deploy "},
                {"type": "text", "text": "today", "marks": [{"type": "strong"}]},
                {"type": "hardBreak"},
                {"type": "text", "text": "then check", "marks": [{"type": "link", "attrs": {"href": "https://x"}}]}
            ]},
            {"type": "heading", "attrs": {"level": 2}, "content": [{"type": "text", "text": "Notes"}]}
        ]);
        assert_eq!(text(doc), "Deploy today\nthen check\nNotes");
    }

    #[test]
    fn lists_quotes_tables_and_inline_nodes_read_as_a_person_reads_them() {
        let doc = json!([
            {"type": "bulletList", "content": [
                {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "one"}]}]},
                {"type": "listItem", "content": [
                    {"type": "paragraph", "content": [{"type": "text", "text": "two"}]},
                    {"type": "orderedList", "attrs": {"order": 3}, "content": [
                        {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "nested"}]}]}
                    ]}
                ]}
            ]},
            {"type": "blockquote", "content": [{"type": "paragraph", "content": [
                {"type": "mention", "attrs": {"id": "5b10", "text": "@Dana K."}},
                {"type": "text", "text": " said "},
                {"type": "emoji", "attrs": {"shortName": ":tada:"}},
                {"type": "text", "text": " on "},
                {"type": "date", "attrs": {"timestamp": "1700000000000"}}
            ]}]},
            {"type": "table", "content": [
                {"type": "tableRow", "content": [
                    {"type": "tableHeader", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "a"}]}]},
                    {"type": "tableHeader", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "b"}]}]}
                ]},
                {"type": "tableRow", "content": [
                    {"type": "tableCell", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "1"}]}]},
                    {"type": "tableCell", "content": [{"type": "paragraph", "content": [{"type": "status", "attrs": {"text": "DONE"}}]}]}
                ]}
            ]},
            {"type": "taskList", "content": [
                {"type": "taskItem", "attrs": {"state": "DONE"}, "content": [{"type": "text", "text": "ship"}]}
            ]},
            {"type": "mediaSingle", "content": [{"type": "media", "attrs": {"id": "x"}}]},
            {"type": "rule"},
            {"type": "codeBlock", "content": [{"type": "text", "text": "let a = 1;\nlet b = 2;"}]}
        ]);
        assert_eq!(
            text(doc),
            "- one\n- two\n  3. nested\n> @Dana K. said :tada: on 2023-11-14\na | b\n1 | DONE\n\
             [x] ship\n[attachment]\n---\nlet a = 1;\nlet b = 2;"
        );
    }

    #[test]
    fn plain_strings_null_and_unknown_nodes_do_not_fail() {
        assert_eq!(to_text(&json!("h2. wiki markup")), "h2. wiki markup");
        assert_eq!(to_text(&Value::Null), "");
        let odd = json!([{"type": "futureNode", "content": [{"type": "text", "text": "kept"}]}, 7]);
        assert_eq!(text(odd), "kept");
    }
}
