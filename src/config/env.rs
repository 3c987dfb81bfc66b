//! `${env:NAME}` and `${env:NAME:-default}` expansion.
//!
//! Expansion happens on the text, before YAML parsing, so a reference works anywhere a value can
//! stand, including inside flow sequences (`endpoints: [${env:ES_URL}]`, where `{` would otherwise
//! end a plain scalar), and the expanded text is read as YAML, so `${env:PORT}` may become a number.
//! `$$` stands for a literal `$`. An unset variable without a default is an error (with its line),
//! never a silent empty string.

use super::error::ConfigError;

pub(super) fn expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) -> String {
    let mut out = String::with_capacity(text.len());
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(stripped) = after.strip_prefix('$') {
                out.push('$');
                rest = stripped;
                continue;
            }
            let Some(body) = after.strip_prefix("{env:") else {
                out.push('$');
                rest = after;
                continue;
            };
            let Some(end) = body.find('}') else {
                errors.push(ConfigError::new(
                    format!("line {}", lineno + 1),
                    "unterminated ${env:...} reference",
                ));
                out.push_str(&rest[pos..]);
                rest = "";
                break;
            };
            let reference = &body[..end];
            let (name, default) = match reference.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (reference, None),
            };
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                errors.push(ConfigError::new(
                    format!("line {}", lineno + 1),
                    format!("invalid environment variable name {name:?} in ${{env:{reference}}}"),
                ));
            } else {
                match (lookup(name), default) {
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => errors.push(ConfigError::new(
                        format!("line {}", lineno + 1),
                        format!(
                            "environment variable {name} is not set (write ${{env:{name}:-default}} to give a default)"
                        ),
                    )),
                }
            }
            rest = &body[end + 1..];
        }
        out.push_str(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("collector:4317".into()),
            "PORT" => Some("9000".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_default_and_escape() {
        let mut errs = Vec::new();
        let out = expand(
            "a: ${env:HOST}\nb: ${env:NOPE:-x:1}\nc: [${env:PORT}]\nd: $$HOME $x\n",
            &env,
            &mut errs,
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(out, "a: collector:4317\nb: x:1\nc: [9000]\nd: $HOME $x\n");
    }

    #[test]
    fn unset_and_invalid_references_are_errors_with_lines() {
        let mut errs = Vec::new();
        expand(
            "a: 1\nb: ${env:MISSING}\nc: ${env:9X}\nd: ${env:OPEN\n",
            &env,
            &mut errs,
        );
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs[0].starts_with("line 2: environment variable MISSING is not set"));
        assert!(msgs[1].starts_with("line 3: invalid environment variable name"));
        assert!(msgs[2].starts_with("line 4: unterminated"));
    }
}
