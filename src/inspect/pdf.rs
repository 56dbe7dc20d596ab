//! The text a PDF document shows, read cheaply enough to do on every request.
//!
//! A base64 PDF sent to a model is mostly compressed content streams, so scanning its raw bytes
//! finds nothing its pages say. This reads each content stream (uncompressed, or compressed with
//! FlateDecode alone, inflated under the same bomb limits as a request body) and collects the
//! string operands of the text-showing operators (`Tj`, `TJ`, `'`, `"`), a line per text line.
//!
//! It is not a PDF reader: no fonts or custom encodings (text drawn with glyph ids comes out as
//! noise), no object streams, no other filters (streams using them are skipped, as images are).
//! A stream it cannot inflate, or one that inflates past the limits, is an error: the caller
//! cannot vouch for the document and blocks the request.
//!
//! It must never panic, whatever the bytes: every index is checked, and work and output are
//! bounded by the input and the limits.

use std::io::Read;

use memchr::memmem;

use super::decode::Limits;

/// Why a PDF's text could not be read; completes "the PDF document ... could not be inspected:".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PdfError {
    #[error(
        "its compressed streams expand to more than {limit} bytes (a possible decompression bomb)"
    )]
    TooLarge { limit: usize },
    #[error("its compressed streams expand more than {ratio}x (a possible decompression bomb)")]
    RatioExceeded { ratio: usize },
    #[error("one of its compressed streams is corrupt")]
    Corrupt,
    #[error("one of its page streams is compressed in a way egress-guard cannot read")]
    Unsupported,
}

/// How far back from a `stream` keyword its dictionary is looked for.
const MAX_DICTIONARY: usize = 4096;

/// Names in a stream's dictionary that mark it as something other than page content: images,
/// embedded font programs, cross-reference and object streams, XML metadata (which is not
/// compressed in practice, so its raw bytes are scanned anyway).
const NOT_CONTENT: &[&[u8]] = &[
    b"Image",
    b"XRef",
    b"ObjStm",
    b"Length1",
    b"Length2",
    b"Length3",
    b"FontFile",
    b"FontFile2",
    b"FontFile3",
    b"Metadata",
];

/// The text shown by the content streams of `pdf` (empty when it shows none).
pub fn text(pdf: &[u8], limits: &Limits) -> Result<String, PdfError> {
    let mut out = String::new();
    let mut inflated = 0usize;
    let mut pos = 0;
    while let Some(found) = memmem::find(pdf.get(pos..).unwrap_or_default(), b"stream") {
        let keyword = pos + found;
        pos = keyword + b"stream".len();
        if keyword >= 3 && pdf.get(keyword - 3..keyword) == Some(b"end".as_slice()) {
            continue;
        }
        let dictionary = dictionary_before(pdf, keyword);
        // The data starts after the end of line that follows the keyword.
        let mut start = pos;
        if pdf.get(start) == Some(&b'\r') {
            start += 1;
        }
        if pdf.get(start) == Some(&b'\n') {
            start += 1;
        }
        let rest = pdf.get(start..).unwrap_or_default();
        // A stream that never ends is a cut or crafted file: what it holds cannot be read, so
        // it cannot be let through unread.
        let Some(length) = memmem::find(rest, b"endstream") else {
            return Err(PdfError::Corrupt);
        };
        let data = &rest[..length];
        pos = start + length + b"endstream".len();
        if names(dictionary).any(|name| NOT_CONTENT.contains(&name)) {
            continue;
        }
        match filter(dictionary) {
            Filter::None => show_text(data, &mut out),
            Filter::Flate => {
                let budget = limits.max_decoded.saturating_sub(inflated);
                let content = inflate(data, budget).map_err(|e| match e {
                    PdfError::TooLarge { .. } => PdfError::TooLarge {
                        limit: limits.max_decoded,
                    },
                    other => other,
                })?;
                inflated += content.len();
                if inflated > limits.ratio_floor && inflated / pdf.len().max(1) > limits.max_ratio {
                    return Err(PdfError::RatioExceeded {
                        ratio: limits.max_ratio,
                    });
                }
                show_text(&content, &mut out);
            }
            // Page content behind a filter this reader lacks (LZW, ASCII85, ...) would leave
            // unread: fail closed, as for an undecodable body.
            Filter::Other => return Err(PdfError::Unsupported),
        }
    }
    Ok(out)
}

/// The dictionary of the stream whose keyword is at `keyword`: from its object's `obj` on.
fn dictionary_before(pdf: &[u8], keyword: usize) -> &[u8] {
    let window = pdf
        .get(keyword.saturating_sub(MAX_DICTIONARY)..keyword)
        .unwrap_or_default();
    match memmem::rfind(window, b"obj") {
        Some(at) => &window[at..],
        None => window,
    }
}

/// The names (`/Name`, without the slash) in `dictionary`, in order.
fn names(dictionary: &[u8]) -> impl Iterator<Item = &[u8]> {
    dictionary.split(|&b| b == b'/').skip(1).map(|rest| {
        let end = rest
            .iter()
            .position(|&b| is_delimiter(b) || b.is_ascii_whitespace())
            .unwrap_or(rest.len());
        &rest[..end]
    })
}

enum Filter {
    None,
    Flate,
    Other,
}

/// The stream's filter chain: none, FlateDecode alone, or anything else.
fn filter(dictionary: &[u8]) -> Filter {
    let Some(at) = memmem::find(dictionary, b"/Filter") else {
        return Filter::None;
    };
    let rest = dictionary
        .get(at + b"/Filter".len()..)
        .unwrap_or_default()
        .trim_ascii_start();
    let chain: &[u8] = if rest.first() == Some(&b'[') {
        let end = rest.iter().position(|&b| b == b']').unwrap_or(rest.len());
        &rest[..end]
    } else {
        // One name: up to the next name, dictionary end or space after it.
        let end = rest
            .iter()
            .skip(1)
            .position(|&b| b == b'/' || b == b'>' || b.is_ascii_whitespace())
            .map_or(rest.len(), |p| p + 1);
        &rest[..end]
    };
    let filters: Vec<&[u8]> = names(chain).filter(|n| !n.is_empty()).collect();
    match filters.as_slice() {
        [] => Filter::None,
        [only] if *only == b"FlateDecode" || *only == b"Fl" => Filter::Flate,
        _ => Filter::Other,
    }
}

/// Inflates a FlateDecode stream (zlib, or raw deflate from lax writers), at most `budget`
/// bytes; reading one byte past it proves the stream is over without expanding further.
fn inflate(data: &[u8], budget: usize) -> Result<Vec<u8>, PdfError> {
    let reader: Box<dyn Read + '_> = if data.first().is_some_and(|b| b & 0x0f == 8) {
        Box::new(flate2::read::ZlibDecoder::new(data))
    } else {
        Box::new(flate2::read::DeflateDecoder::new(data))
    };
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(budget));
    reader
        .take(budget as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| PdfError::Corrupt)?;
    if out.len() > budget {
        return Err(PdfError::TooLarge { limit: budget });
    }
    Ok(out)
}

fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

/// A `TJ` adjustment (thousandths of a text unit) wider than this reads as a word space;
/// kerning between letters stays well under it.
const WORD_SPACE: f64 = 180.0;

/// Appends the strings shown by the text operators of one content stream to `out`.
fn show_text(content: &[u8], out: &mut String) {
    // Strings seen since the last operator: the operands of the next one.
    let mut operands: Vec<Vec<u8>> = Vec::new();
    // Inside a `[...] TJ` array, a large negative adjustment is how most writers (TeX among
    // them) draw the space between two words; without it words run together and detectors
    // that need a word boundary miss what follows.
    let mut in_array = false;
    let mut i = 0;
    while let Some(&b) = content.get(i) {
        match b {
            b'[' => {
                in_array = true;
                i += 1;
            }
            b']' => {
                in_array = false;
                i += 1;
            }
            b'-' | b'+' | b'.' | b'0'..=b'9' => {
                let start = i;
                while content
                    .get(i)
                    .is_some_and(|&c| matches!(c, b'-' | b'+' | b'.' | b'0'..=b'9'))
                {
                    i += 1;
                }
                let number = std::str::from_utf8(&content[start..i])
                    .ok()
                    .and_then(|n| n.parse::<f64>().ok());
                if in_array && number.is_some_and(|n| n < -WORD_SPACE) {
                    operands.push(b" ".to_vec());
                }
            }
            b'(' => {
                let (string, next) = literal_string(content, i + 1);
                operands.push(string);
                i = next;
            }
            b'<' if content.get(i + 1) == Some(&b'<') => i += 2,
            b'<' => {
                let (string, next) = hex_string(content, i + 1);
                operands.push(string);
                i = next;
            }
            b'%' => {
                // A comment, to the end of the line.
                i += content[i..]
                    .iter()
                    .position(|&c| c == b'\n' || c == b'\r')
                    .unwrap_or(content.len() - i);
            }
            b'/' => {
                // A name operand (a font, a resource): never text.
                i += 1;
                while content
                    .get(i)
                    .is_some_and(|&c| !is_delimiter(c) && !c.is_ascii_whitespace())
                {
                    i += 1;
                }
            }
            b'\'' | b'"' => {
                // Move to the next line, then show the string.
                new_line(out);
                show(&mut operands, out);
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'*' => {
                let start = i;
                while content
                    .get(i)
                    .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'*')
                {
                    i += 1;
                }
                match &content[start..i] {
                    b"Tj" | b"TJ" => show(&mut operands, out),
                    b"Td" | b"TD" | b"T*" | b"Tm" | b"BT" | b"ET" => {
                        new_line(out);
                        operands.clear();
                    }
                    _ => operands.clear(),
                }
            }
            _ => i += 1,
        }
    }
}

fn new_line(out: &mut String) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
}

/// Appends the pending string operands as text: UTF-16 when they say so (a byte order mark),
/// otherwise one character per byte (PDFDocEncoding and WinAnsi agree with Latin-1 on the
/// characters a secret or an address is made of).
fn show(operands: &mut Vec<Vec<u8>>, out: &mut String) {
    for string in operands.drain(..) {
        if let Some(utf16) = string.strip_prefix(&[0xFE, 0xFF]) {
            let units = utf16
                .chunks(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]));
            out.extend(char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)));
        } else {
            out.extend(string.iter().map(|&b| b as char));
        }
    }
}

/// A `(literal string)` whose content starts at `i`: its bytes, and where parsing resumes.
fn literal_string(content: &[u8], mut i: usize) -> (Vec<u8>, usize) {
    let mut bytes = Vec::new();
    let mut depth = 0usize;
    while let Some(&b) = content.get(i) {
        i += 1;
        match b {
            b'(' => {
                depth += 1;
                bytes.push(b);
            }
            b')' if depth == 0 => return (bytes, i),
            b')' => {
                depth -= 1;
                bytes.push(b);
            }
            b'\\' => {
                let Some(&escaped) = content.get(i) else {
                    break;
                };
                i += 1;
                match escaped {
                    b'n' => bytes.push(b'\n'),
                    b'r' => bytes.push(b'\r'),
                    b't' => bytes.push(b'\t'),
                    b'b' => bytes.push(0x08),
                    b'f' => bytes.push(0x0C),
                    b'0'..=b'7' => {
                        // Up to three octal digits; the high bit overflows away as in readers.
                        let mut value = u32::from(escaped - b'0');
                        for _ in 0..2 {
                            match content.get(i) {
                                Some(&d @ b'0'..=b'7') => {
                                    value = value * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        bytes.push((value & 0xFF) as u8);
                    }
                    // A backslash at the end of a line continues the string on the next.
                    b'\r' => {
                        if content.get(i) == Some(&b'\n') {
                            i += 1;
                        }
                    }
                    b'\n' => {}
                    other => bytes.push(other),
                }
            }
            other => bytes.push(other),
        }
    }
    (bytes, i)
}

/// A `<hex string>` whose digits start at `i`: its bytes, and where parsing resumes.
fn hex_string(content: &[u8], mut i: usize) -> (Vec<u8>, usize) {
    let mut bytes = Vec::new();
    let mut high: Option<u8> = None;
    while let Some(&b) = content.get(i) {
        i += 1;
        if b == b'>' {
            break;
        }
        let Some(digit) = (b as char).to_digit(16) else {
            continue;
        };
        match high.take() {
            Some(h) => bytes.push(h << 4 | digit as u8),
            None => high = Some(digit as u8),
        }
    }
    if let Some(h) = high {
        bytes.push(h << 4);
    }
    (bytes, i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// A one-page PDF around `content`, compressed when `compressed` is set.
    fn pdf(content: &[u8], compressed: bool) -> Vec<u8> {
        let (data, filter) = if compressed {
            (deflate(content), " /Filter /FlateDecode")
        } else {
            (content.to_vec(), "")
        };
        let mut pdf = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n".to_vec();
        pdf.extend(format!("4 0 obj\n<< /Length {}{filter} >>\nstream\n", data.len()).bytes());
        pdf.extend(&data);
        pdf.extend(b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n");
        pdf
    }

    #[test]
    fn text_operators_of_compressed_and_plain_streams_are_read() {
        let content = br"BT /F1 12 Tf 72 712 Td (Hello \(world\)) Tj 0 -14 Td [(spl) -20 (it) 5 (\101\102)] TJ T* <48690A> Tj (next) ' ET";
        for compressed in [true, false] {
            let text = text(&pdf(content, compressed), &Limits::default()).unwrap();
            assert_eq!(text, "Hello (world)\nsplitAB\nHi\nnext\n", "{compressed}");
        }
    }

    #[test]
    fn wide_adjustments_in_an_array_read_as_word_spaces() {
        let content = b"BT [(key)-333(=)-333(AK)12(IA)] TJ 0 -500 Td (x) Tj ET";
        assert_eq!(
            text(&pdf(content, true), &Limits::default()).unwrap(),
            "key = AKIA\nx\n"
        );
    }

    #[test]
    fn utf16_strings_and_line_continuations_are_decoded() {
        let content = b"BT <FEFF00410042> Tj (one\\\ntwo) Tj ET";
        assert_eq!(
            text(&pdf(content, true), &Limits::default()).unwrap(),
            "ABonetwo\n"
        );
    }

    #[test]
    fn images_are_skipped_and_page_streams_behind_other_filters_refused() {
        let image = b"%PDF-1.4\n5 0 obj\n<< /Subtype /Image /Filter /FlateDecode >>\nstream\nnot zlib (x) Tj\nendstream\nendobj\n";
        assert_eq!(text(image, &Limits::default()).unwrap(), "");
        let chained = b"%PDF-1.4\n6 0 obj\n<< /Filter [/ASCII85Decode /FlateDecode] >>\nstream\n(y) Tj\nendstream\nendobj\n";
        assert_eq!(
            text(chained, &Limits::default()),
            Err(PdfError::Unsupported)
        );
    }

    #[test]
    fn a_bomb_or_a_corrupt_stream_is_an_error() {
        let bomb = pdf(&vec![b' '; 4 * 1024 * 1024], true);
        let limits = Limits {
            max_decoded: 1024 * 1024,
            ..Limits::default()
        };
        assert_eq!(
            text(&bomb, &limits),
            Err(PdfError::TooLarge { limit: 1024 * 1024 })
        );
        let ratio = Limits {
            max_ratio: 10,
            ratio_floor: 1024,
            ..Limits::default()
        };
        assert_eq!(
            text(&bomb, &ratio),
            Err(PdfError::RatioExceeded { ratio: 10 })
        );
        let mut corrupt = deflate(b"BT (abc) Tj ET");
        corrupt.truncate(corrupt.len() / 2);
        let mut broken = b"1 0 obj << /Filter /FlateDecode >> stream\n".to_vec();
        broken.extend(corrupt);
        broken.extend(b"\x00\x01garbage\nendstream");
        assert_eq!(text(&broken, &Limits::default()), Err(PdfError::Corrupt));
    }

    #[test]
    fn page_text_that_cannot_be_read_fails_closed() {
        let with = |pdf: Vec<u8>, entries: &[u8]| {
            let at = memmem::find(&pdf, b"<< /Length").expect("has a stream") + 3;
            [&pdf[..at], entries, &pdf[at..]].concat()
        };
        let lzw = with(
            pdf(b"BT (AKIAQYLPMN5HHHFPZAM2) Tj ET", false),
            b"/Filter /LZWDecode ",
        );
        assert_eq!(text(&lzw, &Limits::default()), Err(PdfError::Unsupported));
        let mut cut = pdf(b"BT (AKIAQYLPMN5HHHFPZAM2) Tj ET", true);
        let at = memmem::find(&cut, b"endstream").expect("has an end");
        cut.truncate(at);
        assert_eq!(text(&cut, &Limits::default()), Err(PdfError::Corrupt));
        // An image behind a filter the reader lacks is not page text: skipped, not refused.
        let image = with(
            pdf(b"\xff\xd8 jpeg bytes", false),
            b"/Subtype /Image /Filter /DCTDecode ",
        );
        assert_eq!(text(&image, &Limits::default()), Ok(String::new()));
    }

    proptest::proptest! {
        /// Whatever the bytes (a mangled PDF, a truncated one, noise), reading ends without a
        /// panic: with text, or with an error the caller blocks on.
        #[test]
        fn malformed_pdfs_never_panic(
            noise in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
            cut in 0usize..400,
            at in 0usize..400,
        ) {
            let mut pdf = pdf(b"BT (abc) Tj [(d) 1 (e)] TJ <4142 ET", cut % 2 == 0);
            let at = at.min(pdf.len());
            pdf.splice(at..at, noise.iter().copied());
            pdf.truncate(pdf.len().saturating_sub(cut));
            let limits = Limits { max_decoded: 64 * 1024, ..Limits::default() };
            if let Ok(text) = text(&pdf, &limits) {
                proptest::prop_assert!(text.len() <= 2 * (pdf.len() + limits.max_decoded));
            }
            let _ = text(&noise, &limits);
        }
    }
}
