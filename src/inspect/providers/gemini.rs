//! Gemini `generateContent` / `streamGenerateContent` (AI Studio and Vertex): `contents[].parts[]`
//! (text, functionCall.args, functionResponse.response, inline text data) and
//! `systemInstruction`. The model is named in the path (`/models/{model}:generateContent`).

use super::super::content::{join, Collector};
use super::super::json::Node;

pub fn read(c: &mut Collector, root: &Node, path: &str) {
    c.content.model = model_from_path(path);
    let system = root
        .get("systemInstruction")
        .or_else(|| root.get("system_instruction"));
    if let Some(system) = system {
        content(c, system, "systemInstruction");
    }
    if let Some(contents) = root.get("contents").and_then(Node::as_array) {
        for (i, item) in contents.iter().enumerate() {
            content(c, item, &format!("contents[{i}]"));
        }
    }
}

fn content(c: &mut Collector, item: &Node, path: &str) {
    c.group();
    let Some(parts) = item.get("parts").and_then(Node::as_array) else {
        // A bare string is accepted by some SDKs.
        c.string(Some(item), path);
        return;
    };
    for (j, part) in parts.iter().enumerate() {
        let part_path = format!("{path}.parts[{j}]");
        if c.string(part.get("text"), &join(&part_path, "text")) {
            continue;
        }
        c.group();
        if let Some(call) = part
            .get("functionCall")
            .or_else(|| part.get("function_call"))
        {
            c.strings(call.get("args"), &join(&part_path, "functionCall.args"));
        } else if let Some(response) = part
            .get("functionResponse")
            .or_else(|| part.get("function_response"))
        {
            c.strings(
                response.get("response"),
                &join(&part_path, "functionResponse.response"),
            );
        } else if let Some(inline) = part.get("inlineData").or_else(|| part.get("inline_data")) {
            let media_type = inline
                .get("mimeType")
                .or_else(|| inline.get("mime_type"))
                .and_then(|m| m.as_str(c.body))
                .unwrap_or_default();
            c.base64(
                inline.get("data"),
                &join(&part_path, "inlineData.data"),
                &media_type,
            );
        } else if part.get("fileData").is_some() {
            c.media(&part_path);
        } else {
            c.strings(Some(part), &part_path);
        }
        c.group();
    }
}

/// `.../models/gemini-2.5-pro:generateContent` -> `gemini-2.5-pro`.
fn model_from_path(path: &str) -> Option<String> {
    let after = path.split("/models/").nth(1)?;
    let model = after.split(':').next()?;
    (!model.is_empty()).then(|| model.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::super::json::parse;
    use super::*;

    #[test]
    fn reads_parts_function_calls_and_the_model_from_the_path() {
        let body = r#"{"systemInstruction":{"parts":[{"text":"sys"}]},"contents":[
            {"role":"user","parts":[{"text":"hello"},{"text":" world"}]},
            {"role":"model","parts":[{"functionCall":{"name":"read","args":{"path":"/etc/passwd"}}}]},
            {"role":"user","parts":[{"functionResponse":{"name":"read","response":{"output":"root:x"}}}]}]}"#;
        let node = parse(body.as_bytes()).unwrap();
        let mut c = Collector::new(body.as_bytes());
        read(
            &mut c,
            &node,
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
        );
        assert_eq!(c.content.model.as_deref(), Some("gemini-2.5-pro"));
        let got: Vec<_> = c
            .content
            .segments
            .iter()
            .map(|s| (s.location.as_str(), s.text.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("systemInstruction.parts[0].text", "sys"),
                ("contents[0].parts[0].text", "hello"),
                ("contents[0].parts[1].text", " world"),
                ("contents[1].parts[0].functionCall.args.path", "/etc/passwd"),
                (
                    "contents[2].parts[0].functionResponse.response.output",
                    "root:x"
                ),
            ]
        );
        assert_eq!(c.content.segments[1].group, c.content.segments[2].group);
    }
}
