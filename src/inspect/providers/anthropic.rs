//! Anthropic Messages API (`/v1/messages`, `/v1/messages/count_tokens`; also the body of
//! Bedrock's and Vertex's Claude endpoints).
//!
//! Reads `system` and `messages[].content` (a string or blocks: text, tool_use.input,
//! tool_result.content, documents including base64 text and PDF, thinking). Tool definitions
//! are the agent's, not the user's, and are not scanned.

use super::super::content::{index, join, Collector};
use super::super::json::Node;
use super::string_or_blocks;

pub fn read(c: &mut Collector, root: &Node) {
    c.group();
    string_or_blocks(c, root.get("system"), "system", block);
    if let Some(messages) = root.get("messages").and_then(Node::as_array) {
        for (i, message) in messages.iter().enumerate() {
            c.group();
            string_or_blocks(
                c,
                message.get("content"),
                &join(&index("messages", i), "content"),
                block,
            );
        }
    }
}

/// One content block. Consecutive text blocks stay in one group so a value split between them
/// is still found; every other block starts its own.
pub fn block(c: &mut Collector, block: &Node, path: &str) {
    let kind = block.get("type").and_then(|t| t.as_str(c.body));
    match kind.as_deref() {
        Some("text") => {
            c.string(block.get("text"), &join(path, "text"));
        }
        Some("thinking") => {
            c.group();
            c.string(block.get("thinking"), &join(path, "thinking"));
            c.group();
        }
        Some("redacted_thinking") => {}
        Some("tool_use") | Some("server_tool_use") => {
            c.group();
            c.strings(block.get("input"), &join(path, "input"));
            c.group();
        }
        Some("tool_result") => {
            c.group();
            string_or_blocks(c, block.get("content"), &join(path, "content"), self::block);
            c.group();
        }
        Some("image") => {
            c.group();
            c.media(path);
        }
        Some("document") => {
            c.group();
            document(c, block, path);
            c.group();
        }
        // Unknown or future block types: every string leaf, rather than nothing.
        _ => {
            c.group();
            c.strings(Some(block), path);
            c.group();
        }
    }
}

fn document(c: &mut Collector, block: &Node, path: &str) {
    c.strings(block.get("title"), &join(path, "title"));
    c.strings(block.get("context"), &join(path, "context"));
    let Some(source) = block.get("source") else {
        return;
    };
    let source_path = join(path, "source");
    let media_type = source
        .get("media_type")
        .and_then(|m| m.as_str(c.body))
        .unwrap_or_default();
    match source.get("type").and_then(|t| t.as_str(c.body)).as_deref() {
        Some("base64") => c.base64(source.get("data"), &join(&source_path, "data"), &media_type),
        Some("text") => {
            c.group();
            c.string(source.get("data"), &join(&source_path, "data"));
        }
        Some("content") => string_or_blocks(
            c,
            source.get("content"),
            &join(&source_path, "content"),
            self::block,
        ),
        _ => c.strings(Some(source), &source_path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_body(body: &str) -> Vec<(String, String)> {
        super::super::segments_read_by(read, body)
    }

    #[test]
    fn reads_system_messages_tools_and_documents_with_their_paths() {
        let body = r#"{"model":"claude-sonnet-4-5","max_tokens":10,
          "system":[{"type":"text","text":"You are helpful"}],
          "tools":[{"name":"bash","description":"run commands","input_schema":{}}],
          "messages":[
            {"role":"user","content":"plain string"},
            {"role":"assistant","content":[{"type":"text","text":"ok"},
               {"type":"tool_use","id":"toolu_1","name":"bash","input":{"command":"cat .env"}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1",
               "content":[{"type":"text","text":"A=1"}]},
               {"type":"document","source":{"type":"text","media_type":"text/plain","data":"doc text"}},
               {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBOR"}}]}
          ]}"#;
        let segments = read_body(body);
        let expected = [
            ("system[0].text", "You are helpful"),
            ("messages[0].content", "plain string"),
            ("messages[1].content[0].text", "ok"),
            ("messages[1].content[1].input.command", "cat .env"),
            ("messages[2].content[0].content[0].text", "A=1"),
            ("messages[2].content[1].source.data", "doc text"),
        ];
        let got: Vec<(&str, &str)> = segments
            .iter()
            .map(|(l, t)| (l.as_str(), t.as_str()))
            .collect();
        assert_eq!(got, expected);
    }
}
