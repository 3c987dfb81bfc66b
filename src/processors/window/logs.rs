//! What a log record says about its service: its level, from `severity_number` (the OTLP data
//! model's ranges) or, when that is unset, from `severity_text`; and the code that wrote it.

pub use crate::model::window::LogLevel as Level;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;

/// Where a record was written, as a log appender says it: its logger (the instrumentation
/// scope's name) and source line (`code.line.number`, or the older `code.lineno`), as
/// `logger#line`; the logger alone without a line, empty without a logger. The line is not
/// taken without a logger: a line number alone names no code.
pub fn location(logger: &str, record: &LogRecord) -> String {
    let mut out = String::new();
    write_location(logger, record, &mut out);
    out
}

/// `location`, written into `out` (cleared first): a buffer kept from record to record, so
/// that a record's location costs no allocation.
pub fn write_location(logger: &str, record: &LogRecord, out: &mut String) {
    use std::fmt::Write;
    out.clear();
    if logger.is_empty() {
        return;
    }
    if logger.len() <= MAX_LOGGER_CHARS {
        out.push_str(logger);
    } else {
        out.extend(logger.chars().take(MAX_LOGGER_CHARS));
    }
    for kv in &record.attributes {
        if kv.key != "code.line.number" && kv.key != "code.lineno" {
            continue;
        }
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::IntValue(n)) => {
                let _ = write!(out, "#{n}");
                return;
            }
            Some(Value::StringValue(s)) if s.parse::<u64>().is_ok() => {
                out.push('#');
                out.push_str(s);
                return;
            }
            _ => {}
        }
    }
}

/// A logger name is cut after this many characters.
const MAX_LOGGER_CHARS: usize = 128;

/// The record's level: `severity_number` 13–16 is WARN, 17–24 ERROR and FATAL; when it is
/// unset (0), the text decides (`WARN`, `WARNING`, `ERROR`, `FATAL`, `CRITICAL`, `SEVERE`,
/// `ERR`, `CRIT`, `ALERT`, `EMERG`, in any case, with a trailing number such as `ERROR2`).
pub fn level(record: &LogRecord) -> Level {
    match record.severity_number {
        17..=24 => Level::Error,
        13..=16 => Level::Warning,
        1..=12 => Level::Other,
        _ => level_of_text(&record.severity_text),
    }
}

pub fn level_of_text(text: &str) -> Level {
    let word = text.trim().trim_end_matches(|c: char| c.is_ascii_digit());
    let is = |names: &[&str]| names.iter().any(|n| word.eq_ignore_ascii_case(n));
    if is(&[
        "error",
        "err",
        "fatal",
        "critical",
        "crit",
        "severe",
        "alert",
        "emerg",
        "emergency",
        "panic",
    ]) {
        Level::Error
    } else if is(&["warn", "warning"]) {
        Level::Warning
    } else {
        Level::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(number: i32, text: &str) -> LogRecord {
        LogRecord {
            severity_number: number,
            severity_text: text.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_number_decides_and_the_text_when_it_is_unset() {
        assert_eq!(level(&rec(17, "info")), Level::Error, "the number wins");
        assert_eq!(level(&rec(21, "")), Level::Error);
        assert_eq!(level(&rec(24, "")), Level::Error);
        assert_eq!(level(&rec(13, "")), Level::Warning);
        assert_eq!(level(&rec(16, "")), Level::Warning);
        assert_eq!(level(&rec(9, "ERROR")), Level::Other);
        assert_eq!(level(&rec(12, "")), Level::Other);
        for (t, l) in [
            ("ERROR", Level::Error),
            ("error", Level::Error),
            ("Fatal", Level::Error),
            ("SEVERE", Level::Error),
            ("ERROR2", Level::Error),
            (" warn ", Level::Warning),
            ("WARNING", Level::Warning),
            ("INFO", Level::Other),
            ("", Level::Other),
            ("errors", Level::Other),
        ] {
            assert_eq!(level(&rec(0, t)), l, "{t:?}");
        }
        assert_eq!(
            level(&rec(99, "ERROR")),
            Level::Error,
            "out of range: the text"
        );
    }

    #[test]
    fn a_location_is_the_logger_and_its_line_when_the_record_says() {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
        let with = |key: &str, v: Value| LogRecord {
            attributes: vec![KeyValue {
                key: key.into(),
                value: Some(AnyValue { value: Some(v) }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let r = with("code.line.number", Value::IntValue(372));
        assert_eq!(
            location("t.s.TravelServiceImpl", &r),
            "t.s.TravelServiceImpl#372"
        );
        let older = with("code.lineno", Value::StringValue("46".into()));
        assert_eq!(location("PriceController", &older), "PriceController#46");
        assert_eq!(
            location("PriceController", &LogRecord::default()),
            "PriceController"
        );
        assert_eq!(location("", &r), "", "a line alone names no code");
        let odd = with("code.line.number", Value::StringValue("n/a".into()));
        assert_eq!(location("x", &odd), "x");
    }
}
