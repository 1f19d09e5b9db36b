//! Span fields written straight as one JSON object, for the JSON log format.
//!
//! tracing-subscriber's `JsonFields` collects a span's fields into a map of JSON values and
//! serialises the map, when the span is made: for the span every request gets, that was the
//! largest single cost of a decision in production (about a seventh of its instructions). The
//! JSON event formatter only needs the fields as the text of one JSON object, which this writes
//! field by field. Events' own fields are written by the event formatter, not by this.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// Formats span fields as the text of one JSON object: `{"request_id":7,"route":"/healthz"}`.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonSpanFields;

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut object = JsonObject::default();
        fields.record(&mut object);
        writer.write_str(&object.close()?)
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        if current.fields.is_empty() {
            return self.format_fields(current.as_writer(), fields);
        }
        // Fields recorded later go inside the object already written: reopen it.
        if !current.fields.ends_with('}') {
            return Err(fmt::Error);
        }
        let mut object = JsonObject::default();
        fields.record(&mut object);
        let added = object.close()?;
        if added.len() > 2 {
            current.fields.pop();
            if current.fields.len() > 1 {
                current.fields.push(',');
            }
            current.fields.push_str(&added[1..]);
        }
        Ok(())
    }
}

/// The text of a JSON object being written, one member per visited field. Written into its
/// own buffer, sized for a request's span, and copied once: the log's writer grows its string
/// one write at a time.
struct JsonObject {
    text: String,
    result: fmt::Result,
}

impl Default for JsonObject {
    fn default() -> Self {
        let mut text = String::with_capacity(128);
        text.push('{');
        Self {
            text,
            result: Ok(()),
        }
    }
}

impl JsonObject {
    /// The object's text, `{…}`, unless a field could not be written.
    fn close(mut self) -> Result<String, fmt::Error> {
        self.result?;
        self.text.push('}');
        Ok(self.text)
    }

    /// Writes `"name":` and then the value, unless an earlier write failed.
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut String) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        if self.text.len() > 1 {
            self.text.push(',');
        }
        self.result = write_json_string(&mut self.text, field.name())
            .and_then(|()| self.text.write_char(':'))
            .and_then(|()| value(&mut self.text));
    }
}

impl Visit for JsonObject {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |w| write_json_string(w, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |w| {
            w.push_str(itoa::Buffer::new().format(value));
            Ok(())
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |w| {
            w.push_str(itoa::Buffer::new().format(value));
            Ok(())
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity.
        if value.is_finite() {
            self.member(field, |w| write!(w, "{value}"));
        } else {
            self.member(field, |w| w.write_str("null"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |w| write_json_string(w, &format!("{value:?}")));
    }
}

/// Writes `text` as a JSON string, quoted and escaped (RFC 8259, section 7). What needs escaping
/// is ASCII, so the text is scanned by byte and copied in runs.
fn write_json_string(writer: &mut impl Write, text: &str) -> fmt::Result {
    writer.write_char('"')?;
    let bytes = text.as_bytes();
    // Names and routes need no escaping: one pass without early exit (which the compiler
    // can vectorise) tells, and the text is written whole.
    let needs_escape = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
    if !bytes.iter().fold(false, |any, &b| any | needs_escape(b)) {
        writer.write_str(text)?;
        return writer.write_char('"');
    }
    let mut plain = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        // `at` is an ASCII byte's index, so both slices end on character boundaries.
        writer.write_str(&text[plain..at])?;
        if escape.is_empty() {
            write!(writer, "\\u{byte:04x}")?;
        } else {
            writer.write_str(escape)?;
        }
        plain = at + 1;
    }
    writer.write_str(&text[plain..])?;
    writer.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> String {
        let mut out = String::new();
        write_json_string(&mut out, text).unwrap();
        out
    }

    #[test]
    fn strings_read_back_as_the_same_text() {
        for text in [
            "",
            "/v1/slots/{slot}/ad",
            "Publicité 2",
            "quote \" backslash \\ slash /",
            "lines\n\r\ttab",
            "controls \u{0} \u{1f} \u{7f}",
            "emoji 🎯",
        ] {
            let written = json(text);
            let read: String =
                serde_json::from_str(&written).unwrap_or_else(|e| panic!("{written}: {e}"));
            assert_eq!(read, text);
        }
    }

    #[test]
    fn span_fields_make_one_object_also_when_recorded_later() {
        use tracing_subscriber::layer::SubscriberExt;

        let (writer, lines) = Capture::new();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .fmt_fields(JsonSpanFields)
                .with_writer(writer),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                request_id = 7u64,
                route = "/v1/i/{token}",
                delta = -3i64,
                ok = true,
                ratio = 0.5f64,
                later = tracing::field::Empty,
                what = ?("a\"b", 1),
            );
            span.in_scope(|| tracing::info!("first"));
            span.record("later", "set \"later\"");
            span.in_scope(|| tracing::info!("second"));
            let empty = tracing::info_span!("empty", only = tracing::field::Empty);
            empty.record("only", 1u64);
            empty.in_scope(|| tracing::info!("third"));
        });
        let lines = lines.lock().unwrap();
        let events: Vec<serde_json::Value> = String::from_utf8(lines.clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 3);
        let expected = serde_json::json!({
            "name": "request",
            "request_id": 7,
            "route": "/v1/i/{token}",
            "delta": -3,
            "ok": true,
            "ratio": 0.5,
            "what": "(\"a\\\"b\", 1)",
        });
        assert_eq!(events[0]["span"], expected);
        let mut with_later = expected;
        with_later["later"] = "set \"later\"".into();
        assert_eq!(events[1]["span"], with_later);
        assert_eq!(
            events[2]["span"],
            serde_json::json!({"name": "empty", "only": 1})
        );
    }

    /// A log writer into shared memory.
    #[derive(Clone)]
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Capture {
        fn new() -> (Self, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
            let shared = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            (Self(shared.clone()), shared)
        }
    }

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }
}
