//! Undoing what HTTP did to a body before it can be read: `Content-Encoding` (gzip, deflate,
//! br, zstd, stacked in any order) and the charset named in `Content-Type`.
//!
//! A decoder never expands without bounds: output is capped in size and in ratio to the input,
//! so a decompression bomb is refused after reading at most the cap, never expanded in memory.
//! Anything it cannot decode is an error, and the caller blocks the request (fail closed).

use std::io::Read;

use bytes::Bytes;
use http::{header, HeaderMap};

/// Bounds on what decoding may produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest decoded body, in bytes.
    pub max_decoded: usize,
    /// Largest decoded/encoded ratio accepted once the output exceeds `ratio_floor` bytes.
    pub max_ratio: usize,
    /// Below this decoded size the ratio is not checked: a small, very repetitive body
    /// compresses absurdly well and is harmless.
    pub ratio_floor: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_decoded: 32 * 1024 * 1024,
            max_ratio: 200,
            ratio_floor: 1024 * 1024,
        }
    }
}

/// Why a body could not be decoded; the message is shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the body uses content-encoding `{0}`, which egress-guard cannot inspect")]
    UnknownEncoding(String),
    #[error("the body is stacked in more than {0} content-encodings")]
    TooManyEncodings(usize),
    #[error("the {encoding} body is corrupt or truncated")]
    Corrupt { encoding: &'static str },
    #[error("the body decompresses to more than {limit} bytes (a possible decompression bomb)")]
    TooLarge { limit: usize },
    #[error(
        "the body expands more than {ratio}x when decompressed (a possible decompression bomb)"
    )]
    RatioExceeded { ratio: usize },
    #[error("the body's charset `{0}` is not supported")]
    UnknownCharset(String),
    #[error("the body is not valid {0}")]
    BadCharset(&'static str),
}

/// A body as the API will read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// UTF-8 (or binary) bytes with every content-encoding removed.
    pub bytes: Bytes,
    /// The body had a content-encoding (so a rewritten body goes out decoded, with the header
    /// removed).
    pub was_encoded: bool,
    /// The body was converted from another charset to UTF-8 (so a rewritten body is sent as
    /// UTF-8 with `charset=utf-8`).
    pub transcoded: bool,
}

const MAX_LAYERS: usize = 4;

/// Decodes `body` as described by `headers`.
pub fn decode(headers: &HeaderMap, body: &Bytes, limits: &Limits) -> Result<Decoded, DecodeError> {
    let mut encodings = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let value = value
            .to_str()
            .map_err(|_| DecodeError::UnknownEncoding("(not ASCII)".into()))?;
        for token in value.split(',') {
            let token = token.trim().to_ascii_lowercase();
            if !token.is_empty() && token != "identity" {
                encodings.push(token);
            }
        }
    }
    if encodings.len() > MAX_LAYERS {
        return Err(DecodeError::TooManyEncodings(MAX_LAYERS));
    }
    let mut bytes = body.clone();
    // Listed in the order applied, so undone in reverse.
    for encoding in encodings.iter().rev() {
        bytes = Bytes::from(decompress(encoding, &bytes, body.len(), limits)?);
    }
    let was_encoded = !encodings.is_empty();
    let (bytes, transcoded) = to_utf8(headers, bytes)?;
    Ok(Decoded {
        bytes,
        was_encoded,
        transcoded,
    })
}

fn decompress(
    encoding: &str,
    input: &[u8],
    original_len: usize,
    limits: &Limits,
) -> Result<Vec<u8>, DecodeError> {
    let (name, reader): (&'static str, Box<dyn Read + '_>) = match encoding {
        "gzip" | "x-gzip" => ("gzip", Box::new(flate2::read::MultiGzDecoder::new(input))),
        // `deflate` is meant to be zlib-wrapped, but some clients send raw deflate.
        "deflate" if input.first().is_some_and(|b| b & 0x0f == 8) => {
            ("deflate", Box::new(flate2::read::ZlibDecoder::new(input)))
        }
        "deflate" => (
            "deflate",
            Box::new(flate2::read::DeflateDecoder::new(input)),
        ),
        "br" => ("br", Box::new(brotli::Decompressor::new(input, 8192))),
        "zstd" => (
            "zstd",
            Box::new(
                zstd::stream::read::Decoder::with_buffer(input)
                    .map_err(|_| DecodeError::Corrupt { encoding: "zstd" })?,
            ),
        ),
        other => return Err(DecodeError::UnknownEncoding(other.to_owned())),
    };
    // Read one byte past the cap: reaching it proves the body is over, without expanding more.
    let cap = limits.max_decoded;
    let mut out = Vec::with_capacity(input.len().saturating_mul(4).min(cap));
    reader
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| DecodeError::Corrupt { encoding: name })?;
    if out.len() > cap {
        return Err(DecodeError::TooLarge { limit: cap });
    }
    if out.len() > limits.ratio_floor && out.len() / original_len.max(1) > limits.max_ratio {
        return Err(DecodeError::RatioExceeded {
            ratio: limits.max_ratio,
        });
    }
    Ok(out)
}

/// The charset parameter of `Content-Type`, lower-case, if any.
fn charset(headers: &HeaderMap) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_ascii_lowercase())
    })
}

fn to_utf8(headers: &HeaderMap, bytes: Bytes) -> Result<(Bytes, bool), DecodeError> {
    let Some(charset) = charset(headers) else {
        return Ok((bytes, false));
    };
    match charset.as_str() {
        "utf-8" | "utf8" | "us-ascii" | "ascii" => Ok((bytes, false)),
        "iso-8859-1" | "latin1" | "latin-1" | "iso8859-1" => {
            if bytes.is_ascii() {
                return Ok((bytes, false));
            }
            let text: String = bytes.iter().map(|&b| b as char).collect();
            Ok((Bytes::from(text), true))
        }
        "utf-16" | "utf-16le" | "utf-16be" => {
            let big_endian =
                charset == "utf-16be" || (charset == "utf-16" && bytes.starts_with(&[0xfe, 0xff]));
            if !bytes.len().is_multiple_of(2) {
                return Err(DecodeError::BadCharset("UTF-16"));
            }
            let units = bytes.chunks_exact(2).map(|pair| {
                if big_endian {
                    u16::from_be_bytes([pair[0], pair[1]])
                } else {
                    u16::from_le_bytes([pair[0], pair[1]])
                }
            });
            let text: String = char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .map_err(|_| DecodeError::BadCharset("UTF-16"))?;
            let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text).to_owned();
            Ok((Bytes::from(text), true))
        }
        other => Err(DecodeError::UnknownCharset(other.to_owned())),
    }
}

/// Compression helpers shared by tests and benchmarks (never used on the request path).
pub mod encode {
    use std::io::Write;

    pub fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = e.write_all(data);
        e.finish().unwrap_or_default()
    }

    pub fn deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        let _ = e.write_all(data);
        e.finish().unwrap_or_default()
    }

    pub fn br(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            let _ = w.write_all(data);
        }
        out
    }

    pub fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::encode_all(data, 3).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(encoding: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_str(encoding).unwrap(),
        );
        h
    }

    const BODY: &[u8] = br#"{"messages":[{"role":"user","content":"hello"}]}"#;

    #[test]
    fn every_supported_encoding_decodes() {
        for (name, data) in [
            ("gzip", encode::gzip(BODY)),
            ("deflate", encode::deflate(BODY)),
            ("br", encode::br(BODY)),
            ("zstd", encode::zstd(BODY)),
            ("identity", BODY.to_vec()),
        ] {
            let decoded = decode(&headers(name), &Bytes::from(data), &Limits::default()).unwrap();
            assert_eq!(&decoded.bytes[..], BODY, "{name}");
            assert_eq!(decoded.was_encoded, name != "identity");
        }
    }

    #[test]
    fn stacked_encodings_are_undone_in_reverse_order() {
        let data = encode::br(&encode::gzip(BODY));
        let decoded = decode(&headers("gzip, br"), &Bytes::from(data), &Limits::default()).unwrap();
        assert_eq!(&decoded.bytes[..], BODY);
    }

    #[test]
    fn a_decompression_bomb_is_refused_not_expanded() {
        let zeros = vec![0u8; 8 * 1024 * 1024];
        let bomb = Bytes::from(encode::gzip(&zeros));
        let err = decode(&headers("gzip"), &bomb, &Limits::default()).unwrap_err();
        assert!(matches!(err, DecodeError::RatioExceeded { .. }), "{err}");
        let small = Limits {
            max_decoded: 1024 * 1024,
            ..Limits::default()
        };
        let err = decode(&headers("gzip"), &bomb, &small).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn corrupt_and_unknown_encodings_fail_closed() {
        let err = decode(
            &headers("gzip"),
            &Bytes::from_static(b"not gzip"),
            &Limits::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("corrupt"));
        let err = decode(
            &headers("compress"),
            &Bytes::from_static(BODY),
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(err, DecodeError::UnknownEncoding("compress".into()));
    }

    #[test]
    fn utf16_and_latin1_bodies_become_utf8() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-16LE"),
        );
        let utf16: Vec<u8> = "{\"a\":\"é\"}"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let decoded = decode(&h, &Bytes::from(utf16), &Limits::default()).unwrap();
        assert_eq!(&decoded.bytes[..], "{\"a\":\"é\"}".as_bytes());
        assert!(decoded.transcoded);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=iso-8859-1"),
        );
        let decoded = decode(&h, &Bytes::from_static(b"caf\xe9"), &Limits::default()).unwrap();
        assert_eq!(&decoded.bytes[..], "café".as_bytes());
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=klingon"),
        );
        assert!(decode(&h, &Bytes::from_static(b"x"), &Limits::default()).is_err());
    }
}
