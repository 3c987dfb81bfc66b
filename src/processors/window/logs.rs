//! What a log record says about its service: its level, from `severity_number` (the OTLP data
//! model's ranges) or, when that is unset, from `severity_text`.

pub use crate::model::window::LogLevel as Level;
use opentelemetry_proto::tonic::logs::v1::LogRecord;

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
}
