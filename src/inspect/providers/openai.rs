//! OpenAI: Chat Completions (`messages[]`), the Responses API (`input`, `instructions`),
//! legacy completions (`prompt`) and embeddings (`input`). Tool-call arguments are JSON inside
//! a string and are read as the JSON they contain.

use super::super::content::{join, Collector};
use super::super::json::Node;
use super::string_or_blocks;

pub fn read(c: &mut Collector, root: &Node) {
    c.group();
    c.string(root.get("instructions"), "instructions");
    if let Some(messages) = root.get("messages").and_then(Node::as_array) {
        for (i, message) in messages.iter().enumerate() {
            chat_message(c, message, &format!("messages[{i}]"));
        }
    }
    match root.get("input") {
        Some(Node::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("input[{i}]");
                if item.members().is_some() {
                    response_item(c, item, &path);
                } else {
                    c.group();
                    c.strings(Some(item), &path);
                }
            }
        }
        other => {
            c.group();
            c.string(other, "input");
        }
    }
    c.group();
    c.strings(root.get("prompt"), "prompt");
}

/// A Chat Completions message: `content` (string or parts), `tool_calls`, `function_call`.
fn chat_message(c: &mut Collector, message: &Node, path: &str) {
    c.group();
    string_or_blocks(c, message.get("content"), &join(path, "content"), part);
    if let Some(calls) = message.get("tool_calls").and_then(Node::as_array) {
        for (j, call) in calls.iter().enumerate() {
            let args_path = format!("{path}.tool_calls[{j}].function.arguments");
            c.group();
            c.json_string(
                call.get("function").and_then(|f| f.get("arguments")),
                &args_path,
            );
        }
    }
    if let Some(call) = message.get("function_call") {
        c.group();
        c.json_string(
            call.get("arguments"),
            &join(path, "function_call.arguments"),
        );
    }
}

/// A content part of Chat Completions or the Responses API.
fn part(c: &mut Collector, part: &Node, path: &str) {
    let kind = part.get("type").and_then(|t| t.as_str(c.body));
    match kind.as_deref() {
        Some("text") | Some("input_text") | Some("output_text") => {
            c.string(part.get("text"), &join(path, "text"));
        }
        Some("refusal") => {
            c.string(part.get("refusal"), &join(path, "refusal"));
        }
        Some("image_url") | Some("input_image") | Some("input_audio") => {
            c.group();
            c.media(path);
        }
        Some("file") | Some("input_file") => {
            c.group();
            let file = part.get("file").unwrap_or(part);
            match file.get("file_data") {
                // A `data:<type>;base64,...` URL: the collector reads the type from it.
                Some(data) => c.base64(Some(data), &join(path, "file_data"), ""),
                None => c.strings(Some(file), path),
            }
            c.group();
        }
        _ => {
            c.group();
            c.strings(Some(part), path);
            c.group();
        }
    }
}

/// A Responses API input item.
fn response_item(c: &mut Collector, item: &Node, path: &str) {
    let kind = item.get("type").and_then(|t| t.as_str(c.body));
    c.group();
    match kind.as_deref() {
        Some("message") | None => {
            string_or_blocks(c, item.get("content"), &join(path, "content"), part);
        }
        Some("function_call") => c.json_string(item.get("arguments"), &join(path, "arguments")),
        Some("function_call_output")
        | Some("local_shell_call_output")
        | Some("custom_tool_call_output") => {
            string_or_blocks(c, item.get("output"), &join(path, "output"), part)
        }
        Some("custom_tool_call") => {
            c.string(item.get("input"), &join(path, "input"));
        }
        Some("reasoning") => c.strings(item.get("summary"), &join(path, "summary")),
        _ => c.strings(Some(item), path),
    }
    c.group();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locations(body: &str) -> Vec<(String, String)> {
        super::super::segments_read_by(read, body)
    }

    #[test]
    fn chat_completions_content_parts_and_tool_arguments() {
        let body = r#"{"model":"gpt-4o","messages":[
            {"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"https://x"}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
              "function":{"name":"sh","arguments":"{\"cmd\":\"ls\"}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"file.txt"}]}"#;
        assert_eq!(
            locations(body),
            vec![
                ("messages[0].content".into(), "be brief".into()),
                ("messages[1].content[0].text".into(), "hi".into()),
                (
                    "messages[2].tool_calls[0].function.arguments.cmd".into(),
                    "ls".into()
                ),
                ("messages[3].content".into(), "file.txt".into()),
            ]
        );
    }

    #[test]
    fn responses_api_items_and_instructions() {
        let body = r#"{"model":"gpt-5-codex","instructions":"You are Codex","input":[
            {"type":"message","role":"user","content":[{"type":"input_text","text":"fix it"}]},
            {"type":"function_call","call_id":"c","name":"shell","arguments":"{\"command\":[\"cat\",\"x\"]}"},
            {"type":"function_call_output","call_id":"c","output":"contents"}]}"#;
        assert_eq!(
            locations(body),
            vec![
                ("instructions".into(), "You are Codex".into()),
                ("input[0].content[0].text".into(), "fix it".into()),
                ("input[1].arguments.command[0]".into(), "cat".into()),
                ("input[1].arguments.command[1]".into(), "x".into()),
                ("input[2].output".into(), "contents".into()),
            ]
        );
    }
}
