//! Documents attached to a prompt are read for what they say, not only for their bytes: a PDF
//! sent to Claude as a base64 `document` block has its compressed page text inflated and
//! scanned, through the real binary over loopback TLS against the fake upstream.

mod support;

use std::io::Write;

use base64::Engine;
use serde_json::json;
use support::guard::Guard;
use support::upstream::FakeUpstream;

/// Made up for these tests, in the documented shapes of an AWS key id and secret access key.
const AWS_KEY: &str = "AKIAQ7RZ4MXW2KPL5TDN";
const AWS_SECRET: &str = "Zq7/Rt3Kp9+Wm2XvB8nL4cYh6JdF1sGe5TuA0oQi";
const MESSAGES: &str = "https://api.anthropic.com/v1/messages";

fn guard(upstream: &FakeUpstream) -> Guard {
    Guard::for_upstream(upstream.resolve_args(), upstream.ca_pem_path(), &[])
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A minimal one-page PDF whose page content stream (FlateDecode) is `content`.
fn pdf(content: &str) -> Vec<u8> {
    let stream = deflate(content.as_bytes());
    let mut pdf = Vec::new();
    pdf.extend(b"%PDF-1.7\n");
    pdf.extend(b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n");
    pdf.extend(b"2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n");
    pdf.extend(
        b"3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
          /Resources << /Font << /F1 5 0 R >> >> >>\nendobj\n",
    );
    pdf.extend(
        format!(
            "4 0 obj\n<< /Length {} /Filter /FlateDecode >>\nstream\n",
            stream.len()
        )
        .bytes(),
    );
    pdf.extend(&stream);
    pdf.extend(b"\nendstream\nendobj\n");
    pdf.extend(b"5 0 obj\n<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>\nendobj\n");
    pdf.extend(b"trailer\n<< /Root 1 0 R /Size 6 >>\n%%EOF\n");
    pdf
}

/// A Claude request with `pdf` attached as a base64 document and a question about it.
fn with_document(pdf: &[u8]) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(pdf);
    json!({"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": data}},
        {"type": "text", "text": "Summarise the attached runbook."}
    ]}]})
    .to_string()
}

async fn post(guard: &Guard, body: String) -> reqwest::Response {
    guard
        .client()
        .post(MESSAGES)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("a response through the proxy")
}

#[tokio::test]
async fn aws_keys_in_the_compressed_text_of_an_attached_pdf_are_blocked() {
    let upstream = FakeUpstream::start().await;
    let guard = guard(&upstream);
    let document = pdf(&format!(
        "BT /F1 11 Tf 72 700 Td (Deploy runbook) Tj 0 -14 Td \
         (aws_access_key_id = {AWS_KEY}) Tj 0 -14 Td \
         [(aws_secret_access_key = ) -12 ({AWS_SECRET})] TJ ET"
    ));
    let raw = String::from_utf8_lossy(&document);
    assert!(
        !raw.contains(AWS_KEY) && !raw.contains("aws_secret"),
        "the key is only in the compressed stream"
    );

    let response = post(&guard, with_document(&document)).await;
    assert_eq!(response.status(), 403);
    let reply = response.text().await.unwrap();
    assert!(
        reply.contains("messages[0].content[0].source.data"),
        "the user is told where: {reply}"
    );
    assert!(!reply.contains(AWS_KEY) && !reply.contains(AWS_SECRET));
    assert!(upstream.requests().is_empty(), "nothing was sent upstream");
}

#[tokio::test]
async fn an_attached_pdf_without_secrets_reaches_the_api_unchanged() {
    let upstream = FakeUpstream::start().await;
    let guard = guard(&upstream);
    let body = with_document(&pdf(
        "BT /F1 11 Tf 72 700 Td (Deploy runbook) Tj 0 -14 Td (1. Run the migrations.) Tj ET",
    ));
    let response = post(&guard, body.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.last_request().unwrap().body, body.as_bytes());
}

#[tokio::test]
async fn a_pdf_whose_stream_is_a_decompression_bomb_is_blocked_unread() {
    let upstream = FakeUpstream::start().await;
    let guard = guard(&upstream);
    // 8 MiB of spaces compress to a few KB: far past the default 200x ratio.
    let bomb = pdf(&" ".repeat(8 * 1024 * 1024));
    let response = post(&guard, with_document(&bomb)).await;
    assert_eq!(response.status(), 403);
    let reply = response.text().await.unwrap();
    assert!(reply.contains("could not be inspected"), "{reply}");
    assert!(upstream.requests().is_empty());
}
