//! Export object bytes → findings: gzip sniffing, streaming decompression, and splitting the
//! text into JSON values.
//!
//! GuardDuty writes one finding per line, but the reader does not trust `\n` alone: a line
//! holding several values is split, and a value spread over several lines (pretty-printed
//! JSON) is joined. A line that cannot be read is reported with its number and the reason,
//! and reading resumes at the next line. Memory holds one chunk plus the longest value, or
//! the whole text of an object held in memory (up to [`MAX_WHOLE_TEXT_BYTES`]).

use std::io::{self, BufRead, BufReader, Read};

use gdq_schemas::{LineError, ParsedFinding, parse_finding};
use serde_json::value::RawValue;

use crate::inflate::{GZIP_MAGIC, Inflater, stated_text_size};

const CHUNK: usize = 1 << 20;
/// A value joined over lines may grow to this many bytes before its first line is given up.
const MAX_VALUE_BYTES: usize = 16 << 20;
/// A gzip object in memory whose text is at most this long is inflated whole, in one call;
/// a larger one is streamed through the window, which keeps this size between objects.
/// GuardDuty's own exports hold far less; in the 1M-finding corpus 85 % of the text comes in
/// objects of at most 4 MiB, and a 16 MiB cap (every object whole) cost 12 MiB more peak
/// RSS for no CPU time that 7 pairs of runs could tell apart.
pub const MAX_WHOLE_TEXT_BYTES: usize = 4 << 20;
const _: () = assert!(
    MAX_WHOLE_TEXT_BYTES >= 2 * CHUNK,
    "the window keeps at least two chunks"
);

/// A line (or value) that could not become a finding.
#[derive(Debug)]
pub struct BadLine {
    /// 1-based number of the line the value starts on.
    pub line: u64,
    pub reason: LineError,
    pub bytes: Vec<u8>,
}

/// What the decoder found, in input order.
pub enum Event<'a, 'f> {
    Finding {
        line: u64,
        finding: &'f ParsedFinding<'a>,
    },
    Bad(BadLine),
}

/// Counts of what a stream held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamCounts {
    pub lines: u64,
    pub blank_lines: u64,
    pub bytes: u64,
}

/// Wraps `input` in a gzip decoder (multi-member) when it starts with the gzip magic bytes.
pub fn maybe_gunzip<'r, R: Read + 'r>(input: R) -> io::Result<Box<dyn Read + 'r>> {
    let mut buffered = BufReader::with_capacity(256 << 10, input);
    let head = buffered.fill_buf()?;
    if head.starts_with(&GZIP_MAGIC) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(buffered)))
    } else {
        Ok(Box::new(buffered))
    }
}

enum LineOutcome {
    Done,
    /// The line starts a value that continues on the next lines.
    NeedsMore(LineError),
}

/// Reads `input` (already decompressed) to the end and reports every finding and bad line
/// to `on_event`. An I/O error (for instance a corrupt gzip stream) ends the stream: what was
/// reported before it stands, and the error is returned with the counts so far.
pub fn for_each_finding<R: Read>(
    input: R,
    on_event: impl FnMut(Event<'_, '_>),
) -> Result<StreamCounts, (io::Error, StreamCounts)> {
    for_each_finding_in(&mut TextBuffer::default(), input, on_event)
}

/// The decoder's window over the text, kept by a worker from one object to the next: a
/// fresh window per object costs page faults and zeroing on every object (measured: ~5 % of
/// an ingest's CPU time between this buffer and the file buffer).
#[derive(Default)]
pub struct TextBuffer {
    /// Initialized once and then overwritten: `read` wants initialized bytes.
    bytes: Vec<u8>,
    /// Made at the first gzip object held whole; `None` also when libdeflate could not
    /// allocate, and then every object streams.
    inflater: Option<Inflater>,
}

impl TextBuffer {
    /// Makes room for `wanted` bytes after `filled`, giving back what an outsized value
    /// (up to [`MAX_VALUE_BYTES`]) made it grow to once it is no longer needed.
    fn room(&mut self, filled: usize, wanted: usize) -> usize {
        let needed = filled + wanted;
        if self.bytes.len() > MAX_WHOLE_TEXT_BYTES && needed <= MAX_WHOLE_TEXT_BYTES {
            self.bytes.truncate(MAX_WHOLE_TEXT_BYTES);
            self.bytes.shrink_to_fit();
        }
        if self.bytes.len() < needed {
            self.bytes.resize(needed.max(2 * CHUNK), 0);
        }
        needed
    }

    /// Inflates `object` into the window in one call when it is one whole gzip member with
    /// at most [`MAX_WHOLE_TEXT_BYTES`] of text, and returns the text's length; `None` leaves
    /// it to the stream.
    fn inflate_whole(&mut self, object: &[u8]) -> Option<usize> {
        let size = stated_text_size(object).filter(|&size| size <= MAX_WHOLE_TEXT_BYTES)?;
        if self.inflater.is_none() {
            self.inflater = Inflater::new();
        }
        // One byte more than the text, for the newline the decoder adds after a last line.
        let end = self.room(0, size + 1) - 1;
        self.inflater
            .as_mut()?
            .gunzip(object, &mut self.bytes[..end])
            .filter(|&len| len == size)
    }
}

/// [`for_each_finding`] with a window the caller keeps between objects.
pub fn for_each_finding_in<R: Read>(
    text: &mut TextBuffer,
    input: R,
    on_event: impl FnMut(Event<'_, '_>),
) -> Result<StreamCounts, (io::Error, StreamCounts)> {
    decode_window(text, 0, input, on_event)
}

/// [`for_each_finding_in`] over an object held whole in memory, gzip or not. A gzip object
/// is inflated straight into the window in one call when [`TextBuffer`] can take it whole,
/// and streamed otherwise: the findings, bad lines, counts and errors are the same either way.
pub fn for_each_finding_in_object(
    text: &mut TextBuffer,
    object: &[u8],
    on_event: impl FnMut(Event<'_, '_>),
) -> Result<StreamCounts, (io::Error, StreamCounts)> {
    if let Some(len) = text.inflate_whole(object) {
        decode_window(text, len, io::empty(), on_event)
    } else if object.starts_with(&GZIP_MAGIC) {
        decode_window(
            text,
            0,
            flate2::bufread::MultiGzDecoder::new(object),
            on_event,
        )
    } else {
        decode_window(text, 0, object, on_event)
    }
}

/// The decoder: `text.bytes[..filled]` already holds the start of the text, `input` the rest.
fn decode_window<R: Read>(
    text: &mut TextBuffer,
    mut filled: usize,
    mut input: R,
    mut on_event: impl FnMut(Event<'_, '_>),
) -> Result<StreamCounts, (io::Error, StreamCounts)> {
    let mut counts = StreamCounts {
        bytes: filled as u64,
        ..StreamCounts::default()
    };
    // `buf[..filled]` holds text read and not yet consumed past `pos`.
    let mut pos = 0usize;
    let mut eof = false;
    let mut stream_error: Option<io::Error> = None;
    // While joining lines: the error of the first line, its length, and how far the joined
    // text reaches (relative to `pos`, including the newline).
    let mut joining: Option<(LineError, usize, usize, u64)> = None;

    loop {
        let search_from = pos + joining.as_ref().map_or(0, |j| j.2);
        let buf = &text.bytes[..filled];
        let newline = memchr::memchr(b'\n', &buf[search_from..]).map(|i| search_from + i);
        let Some(end) = newline else {
            if eof {
                if let Some((reason, first_len, _, _)) =
                    joining.take().filter(|_| stream_error.is_none())
                {
                    counts.lines += 1;
                    on_event(Event::Bad(BadLine {
                        line: counts.lines,
                        reason,
                        bytes: buf[pos..pos + first_len].to_vec(),
                    }));
                    pos += first_len + 1;
                    continue;
                }
                break;
            }
            text.bytes.copy_within(pos..filled, 0);
            filled -= pos;
            pos = 0;
            let before = filled;
            let end = text.room(filled, CHUNK);
            // On an error, the bytes read before it are kept: decode them, drop the
            // unfinished last line, and report the error at the end.
            while filled < end {
                match input.read(&mut text.bytes[filled..end]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        stream_error = Some(e);
                        eof = true;
                        break;
                    }
                }
            }
            counts.bytes += (filled - before) as u64;
            if filled == before && !eof {
                eof = true;
                if filled > 0 && text.bytes[filled - 1] != b'\n' {
                    text.room(filled, 1);
                    text.bytes[filled] = b'\n';
                    filled += 1;
                }
            }
            continue;
        };

        match joining.take() {
            None => {
                let line_no = counts.lines + 1;
                match handle_line(&buf[pos..end], line_no, &mut counts, &mut on_event) {
                    LineOutcome::Done => {
                        counts.lines += 1;
                        pos = end + 1;
                    }
                    LineOutcome::NeedsMore(reason) => {
                        let first_len = end - pos;
                        joining = Some((reason, first_len, first_len + 1, 1));
                    }
                }
            }
            Some((reason, first_len, _, joined_lines)) => {
                let text = &buf[pos..end];
                let parsed = std::str::from_utf8(text)
                    .map_err(|_| LineError::NotUtf8(0))
                    .and_then(parse_finding);
                match parsed {
                    Ok(finding) => {
                        on_event(Event::Finding {
                            line: counts.lines + 1,
                            finding: &finding,
                        });
                        counts.lines += joined_lines + 1;
                        pos = end + 1;
                    }
                    Err(LineError::Incomplete(_)) if text.len() < MAX_VALUE_BYTES => {
                        joining = Some((reason, first_len, end + 1 - pos, joined_lines + 1));
                    }
                    Err(_) => {
                        counts.lines += 1;
                        on_event(Event::Bad(BadLine {
                            line: counts.lines,
                            reason,
                            bytes: buf[pos..pos + first_len].to_vec(),
                        }));
                        pos += first_len + 1;
                    }
                }
            }
        }
    }
    match stream_error {
        Some(e) => Err((e, counts)),
        None => Ok(counts),
    }
}

fn trim(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &line[start..end.max(start)]
}

fn handle_line(
    raw: &[u8],
    line: u64,
    counts: &mut StreamCounts,
    on_event: &mut impl FnMut(Event<'_, '_>),
) -> LineOutcome {
    let bytes = trim(raw);
    if bytes.is_empty() {
        counts.blank_lines += 1;
        return LineOutcome::Done;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            on_event(Event::Bad(BadLine {
                line,
                reason: LineError::NotUtf8(e.valid_up_to()),
                bytes: bytes.to_vec(),
            }));
            return LineOutcome::Done;
        }
    };
    match parse_finding(text) {
        Ok(finding) => on_event(Event::Finding {
            line,
            finding: &finding,
        }),
        Err(LineError::Incomplete(e)) => return LineOutcome::NeedsMore(LineError::Incomplete(e)),
        Err(LineError::TrailingText(_)) => split_values(text, line, on_event),
        Err(reason) => on_event(Event::Bad(BadLine {
            line,
            reason,
            bytes: bytes.to_vec(),
        })),
    }
    LineOutcome::Done
}

/// Several JSON values on one line: each becomes a finding or a bad value of its own.
fn split_values(text: &str, line: u64, on_event: &mut impl FnMut(Event<'_, '_>)) {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
    let mut consumed = 0;
    while let Some(next) = stream.next() {
        match next {
            Ok(value) => {
                consumed = stream.byte_offset();
                match parse_finding(value.get()) {
                    Ok(finding) => on_event(Event::Finding {
                        line,
                        finding: &finding,
                    }),
                    Err(reason) => on_event(Event::Bad(BadLine {
                        line,
                        reason,
                        bytes: value.get().as_bytes().to_vec(),
                    })),
                }
            }
            Err(e) => {
                let rest = text[consumed..].trim();
                on_event(Event::Bad(BadLine {
                    line,
                    reason: LineError::NotJson(e.to_string()),
                    bytes: rest.as_bytes().to_vec(),
                }));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Seen {
        Ok(u64, String),
        Bad(u64, String),
    }

    impl Seen {
        fn of(event: Event<'_, '_>) -> Seen {
            match event {
                Event::Finding { line, finding } => Seen::Ok(line, finding.id().to_string()),
                Event::Bad(b) => Seen::Bad(b.line, b.reason.to_string()),
            }
        }
    }

    fn decode(input: &[u8]) -> (Vec<Seen>, StreamCounts) {
        let mut seen = Vec::new();
        let counts = for_each_finding(input, |e| seen.push(Seen::of(e)))
            .map_err(|(e, _)| e)
            .unwrap();
        (seen, counts)
    }

    fn ok(line: u64, id: &str) -> Seen {
        Seen::Ok(line, id.to_string())
    }

    #[test]
    fn one_finding_per_line_with_or_without_final_newline() {
        let (seen, counts) =
            decode(b"{\"id\":\"a\",\"type\":\"T\"}\n{\"id\":\"b\",\"type\":\"T\"}");
        assert_eq!(seen, vec![ok(1, "a"), ok(2, "b")]);
        assert_eq!(counts.lines, 2);
    }

    #[test]
    fn bad_lines_are_reported_and_reading_resumes() {
        let input = b"{\"id\":\"a\",\"type\":\"T\"}\n{\"id\":\"trunc\n\n[1]\n{\"type\":\"T\"}\n\xff\xfe\n{\"id\":\"b\",\"type\":\"T\"}\r\n";
        let (seen, counts) = decode(input);
        assert_eq!(seen.len(), 6, "{seen:?}");
        assert_eq!(seen[0], ok(1, "a"));
        assert!(
            matches!(&seen[1], Seen::Bad(2, r) if r.starts_with("incomplete JSON")),
            "{seen:?}"
        );
        assert!(matches!(&seen[2], Seen::Bad(4, r) if r == "not a JSON object"));
        assert!(matches!(&seen[3], Seen::Bad(5, r) if r == "no `id` string"));
        assert!(matches!(&seen[4], Seen::Bad(6, r) if r.starts_with("not UTF-8")));
        assert_eq!(seen[5], ok(7, "b"));
        assert_eq!(counts.blank_lines, 1);
        assert_eq!(counts.lines, 7);
    }

    #[test]
    fn several_values_on_one_line_are_split() {
        let (seen, _) =
            decode(b"{\"id\":\"a\",\"type\":\"T\"} {\"id\":\"b\",\"type\":\"T\"}{\"oops\n");
        assert_eq!(seen[0], ok(1, "a"));
        assert_eq!(seen[1], ok(1, "b"));
        assert!(matches!(&seen[2], Seen::Bad(1, _)));
    }

    #[test]
    fn pretty_printed_values_are_joined() {
        let input = b"{\n  \"id\": \"a\",\n  \"type\": \"T\"\n}\n{\"id\":\"b\",\"type\":\"T\"}\n";
        let (seen, counts) = decode(input);
        assert_eq!(seen, vec![ok(1, "a"), ok(5, "b")]);
        assert_eq!(counts.lines, 5);
    }

    #[test]
    fn a_truncated_line_does_not_swallow_the_next_one() {
        let input = b"{\"id\":\"a\",\"ty\n{\"id\":\"b\",\"type\":\"T\"}\n{\"id\":\"c\",\n{\"id\":\"d\",\"type\":\"T\"}\n";
        let (seen, _) = decode(input);
        assert!(matches!(&seen[0], Seen::Bad(1, _)));
        assert_eq!(seen[1], ok(2, "b"));
        assert!(matches!(&seen[2], Seen::Bad(3, _)));
        assert_eq!(seen[3], ok(4, "d"));
    }

    #[test]
    fn gzip_is_detected_by_magic_bytes_and_members_are_concatenated() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let mut out = Vec::new();
        for part in [
            &b"{\"id\":\"a\",\"type\":\"T\"}\n"[..],
            &b"{\"id\":\"b\",\"type\":\"T\"}\n"[..],
        ] {
            let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
            enc.write_all(part).unwrap();
            out.extend(enc.finish().unwrap());
        }
        let (seen, _) = decode_reader(maybe_gunzip(&out[..]).unwrap());
        assert_eq!(seen, vec![ok(1, "a"), ok(2, "b")]);
        let (seen, _) = decode_reader(maybe_gunzip(&b"{\"id\":\"p\",\"type\":\"T\"}"[..]).unwrap());
        assert_eq!(seen, vec![ok(1, "p")]);
    }

    #[test]
    fn corrupt_gzip_keeps_what_came_before_and_reports_the_error() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        for i in 0..2000 {
            writeln!(
                enc,
                "{{\"id\":\"{i}\",\"type\":\"T\",\"pad\":\"{}\"}}",
                "x".repeat(i % 97)
            )
            .unwrap();
        }
        let mut gz = enc.finish().unwrap();
        let cut = gz.len() / 2;
        gz.truncate(cut);
        let mut found = 0;
        let result = for_each_finding(maybe_gunzip(&gz[..]).unwrap(), |e| {
            if let Event::Finding { .. } = e {
                found += 1;
            }
        });
        assert!(result.is_err());
        assert!(found > 0 && found < 2000, "{found}");
    }

    #[test]
    fn a_reused_buffer_starts_each_object_clean() {
        let mut text = TextBuffer::default();
        let mut run = |input: &[u8]| {
            let mut seen = Vec::new();
            for_each_finding_in(&mut text, input, |e| seen.push(Seen::of(e)))
                .map_err(|(e, _)| e)
                .unwrap();
            seen
        };
        // A value longer than the window keeps, then one cut off by the end of its object.
        let long = format!(
            "{{\"id\":\"long\",\"type\":\"T\",\"pad\":\"{}\"}}\n{{\"id\":\"cut",
            "x".repeat(MAX_WHOLE_TEXT_BYTES + CHUNK)
        );
        let first = run(long.as_bytes());
        assert_eq!(first[0], ok(1, "long"));
        assert!(matches!(&first[1], Seen::Bad(2, _)), "{first:?}");
        assert_eq!(
            run(b"{\"id\":\"next\",\"type\":\"T\"}\n"),
            vec![ok(1, "next")]
        );
        assert!(
            text.bytes.len() <= MAX_WHOLE_TEXT_BYTES,
            "the outsized window was given back"
        );
    }

    fn gzip_members(parts: &[&[u8]]) -> Vec<u8> {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let mut out = Vec::new();
        for part in parts {
            let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
            enc.write_all(part).unwrap();
            out.extend(enc.finish().unwrap());
        }
        out
    }

    type Decoded = (Vec<Seen>, Result<StreamCounts, (String, StreamCounts)>);

    fn seen_by(
        decode: impl FnOnce(
            &mut dyn FnMut(Event<'_, '_>),
        ) -> Result<StreamCounts, (io::Error, StreamCounts)>,
    ) -> Decoded {
        let mut seen = Vec::new();
        let result = decode(&mut |e| seen.push(Seen::of(e)));
        (seen, result.map_err(|(e, counts)| (e.to_string(), counts)))
    }

    #[test]
    fn an_object_in_memory_decodes_as_its_stream_does() {
        let lines = b"{\"id\":\"a\",\"type\":\"T\"}\n\n{\n \"id\": \"b\",\n \"type\": \"T\"\n}\n[1]\n{\"id\":\"c\",\"type\":\"T\"} {\"id\":\"d\",\"type\":\"T\"}\n{\"id\":\"cut";
        let many: String = (0..3000)
            .map(|i| {
                format!(
                    "{{\"id\":\"{i}\",\"type\":\"T\",\"pad\":\"{}\"}}\n",
                    "x".repeat(i % 89)
                )
            })
            .collect();
        let whole = gzip_members(&[lines]);
        let mut cut = gzip_members(&[many.as_bytes()]);
        cut.truncate(cut.len() / 2);
        let mut damaged = gzip_members(&[many.as_bytes()]);
        let crc = damaged.len() - 8;
        damaged[crc] ^= 0xff;
        let objects: [(&str, Vec<u8>, bool); 6] = [
            ("plain text", lines.to_vec(), false),
            ("one gzip member", whole.clone(), true),
            (
                "two members",
                gzip_members(&[lines, b"\n{\"id\":\"e\",\"type\":\"T\"}"]),
                false,
            ),
            ("cut short", cut, false),
            ("wrong CRC", damaged, false),
            ("empty member", gzip_members(&[b""]), true),
        ];
        let mut text = TextBuffer::default();
        for (what, object, in_one_call) in objects {
            assert_eq!(
                text.inflate_whole(&object).is_some(),
                in_one_call,
                "{what}: inflated in one call"
            );
            let streamed =
                seen_by(|on_event| for_each_finding(maybe_gunzip(&object[..]).unwrap(), on_event));
            let held = seen_by(|on_event| for_each_finding_in_object(&mut text, &object, on_event));
            assert_eq!(held, streamed, "{what}");
        }
        // The cases differ where they should: rows, a stream error, bad lines.
        let held = seen_by(|on_event| for_each_finding_in_object(&mut text, &whole, on_event));
        let found: Vec<_> = held
            .0
            .iter()
            .filter(|s| matches!(s, Seen::Ok(..)))
            .collect();
        assert_eq!(found.len(), 4, "{held:?}");
        assert_eq!(held.0.len(), 6, "{held:?}");
    }

    fn decode_reader(r: impl Read) -> (Vec<Seen>, StreamCounts) {
        let mut bytes = Vec::new();
        let mut r = r;
        r.read_to_end(&mut bytes).unwrap();
        decode(&bytes)
    }
}
