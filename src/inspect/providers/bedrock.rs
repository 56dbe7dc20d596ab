//! AWS Bedrock runtime: `/model/{id}/converse[-stream]` (Converse API) and
//! `/model/{id}/invoke[-with-response-stream]`, whose body is the model family's own format
//! (Anthropic Messages for Claude; other families fall back to the generic reader).

use super::super::content::{join, Collector};
use super::super::json::Node;
use super::{anthropic, generic};

pub fn read(c: &mut Collector, root: &Node, path: &str) {
    c.content.model = model_from_path(path);
    if is_converse(path) {
        converse(c, root);
    } else if reads_as_messages(root, path) {
        anthropic::read(c, root);
    } else {
        generic::read_json(c, root);
    }
}

fn is_converse(path: &str) -> bool {
    path.ends_with("/converse") || path.ends_with("/converse-stream")
}

/// Whether the body is read by its `system` and `messages` (Converse, or a Claude model's
/// Anthropic Messages body) rather than generically.
pub fn reads_as_messages(root: &Node, path: &str) -> bool {
    is_converse(path) || root.get("anthropic_version").is_some() || root.get("messages").is_some()
}

fn converse(c: &mut Collector, root: &Node) {
    if let Some(system) = root.get("system").and_then(Node::as_array) {
        c.group();
        for (i, block) in system.iter().enumerate() {
            c.string(block.get("text"), &format!("system[{i}].text"));
        }
    }
    let Some(messages) = root.get("messages").and_then(Node::as_array) else {
        return;
    };
    for (i, message) in messages.iter().enumerate() {
        c.group();
        let Some(blocks) = message.get("content").and_then(Node::as_array) else {
            continue;
        };
        for (j, block) in blocks.iter().enumerate() {
            content_block(c, block, &format!("messages[{i}].content[{j}]"));
        }
    }
}

fn content_block(c: &mut Collector, block: &Node, path: &str) {
    if c.string(block.get("text"), &join(path, "text")) {
        return;
    }
    c.group();
    if let Some(tool_use) = block.get("toolUse") {
        c.strings(tool_use.get("input"), &join(path, "toolUse.input"));
    } else if let Some(result) = block.get("toolResult") {
        if let Some(items) = result.get("content").and_then(Node::as_array) {
            for (k, item) in items.iter().enumerate() {
                c.strings(Some(item), &format!("{path}.toolResult.content[{k}]"));
            }
        }
    } else if let Some(document) = block.get("document") {
        let format = document
            .get("format")
            .and_then(|f| f.as_str(c.body))
            .unwrap_or_default();
        let media_type = match format.as_str() {
            "pdf" => "application/pdf".to_owned(),
            "txt" | "md" | "csv" | "html" => format!("text/{format}"),
            other => format!("application/{other}"),
        };
        c.strings(document.get("name"), &join(path, "document.name"));
        c.base64(
            document.get("source").and_then(|s| s.get("bytes")),
            &join(path, "document.source.bytes"),
            &media_type,
        );
    } else if block.get("image").is_some() || block.get("video").is_some() {
        c.media(path);
    } else {
        c.strings(Some(block), path);
    }
    c.group();
}

/// `/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/invoke` -> the model id, unescaped.
fn model_from_path(path: &str) -> Option<String> {
    let id = path.strip_prefix("/model/")?.split('/').next()?;
    let text = super::percent_decoded(id.as_bytes(), 0, false).text;
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::super::super::json::parse;
    use super::*;

    #[test]
    fn converse_and_invoke_bodies() {
        let body = r#"{"system":[{"text":"sys"}],"messages":[{"role":"user","content":[
            {"text":"hello"},{"toolResult":{"toolUseId":"t","content":[{"text":"out"}]}}]}]}"#;
        let node = parse(body.as_bytes()).unwrap();
        let mut c = Collector::new(body.as_bytes());
        read(&mut c, &node, "/model/anthropic.claude-v2%3A1/converse");
        assert_eq!(c.content.model.as_deref(), Some("anthropic.claude-v2:1"));
        let got: Vec<_> = c
            .content
            .segments
            .iter()
            .map(|s| s.location.as_str())
            .collect();
        assert_eq!(
            got,
            vec![
                "system[0].text",
                "messages[0].content[0].text",
                "messages[0].content[1].toolResult.content[0].text"
            ]
        );

        let body = r#"{"anthropic_version":"bedrock-2023-05-31","messages":[{"role":"user","content":"hi"}]}"#;
        let node = parse(body.as_bytes()).unwrap();
        let mut c = Collector::new(body.as_bytes());
        read(&mut c, &node, "/model/anthropic.claude/invoke");
        assert_eq!(c.content.segments[0].location, "messages[0].content");
    }
}
