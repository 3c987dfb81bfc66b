//! The `_bulk` request and its answer, without I/O: documents split into requests by count
//! and size, each request's NDJSON body, and one outcome per item.

use super::Doc;
use serde_json::Value;

/// About how many bytes a document takes in a `_bulk` body.
pub fn size(d: &Doc) -> usize {
    d.body.get().len() + d.index.len() + d.id.len() + 48
}

/// How many of the documents (in order) the next request takes: at most `max_docs` and about
/// `max_bytes`, and always at least one.
pub fn next_request<'a>(
    docs: impl IntoIterator<Item = &'a Doc>,
    max_docs: usize,
    max_bytes: usize,
) -> usize {
    let mut n = 0;
    let mut bytes = 0;
    for d in docs {
        let size = size(d);
        if n > 0 && (n >= max_docs || bytes + size > max_bytes) {
            break;
        }
        bytes += size;
        n += 1;
    }
    n
}

/// The NDJSON body of one `_bulk` request: an action line and the stored body per document.
pub fn body(docs: &[Doc]) -> Vec<u8> {
    let mut out = Vec::with_capacity(docs.iter().map(|d| d.body.get().len() + 96).sum());
    for d in docs {
        let op = if d.replace { "index" } else { "create" };
        let mut meta = serde_json::json!({ "_index": d.index, "_id": d.id });
        if let Some(v) = d.version {
            meta["version"] = v.into();
            meta["version_type"] = "external_gte".into();
        }
        let action = serde_json::json!({ op: meta });
        out.extend_from_slice(action.to_string().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(d.body.get().as_bytes());
        out.push(b'\n');
    }
    out
}

/// What happened to one item of a `_bulk` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    Written,
    /// 409: the id exists, so an earlier attempt wrote it.
    AlreadyWritten,
    Retry(u16),
    Rejected {
        status: u16,
        reason: String,
    },
}

/// Reads a `_bulk` response body into one outcome per item, in order.
pub fn parse_bulk_response(body: &Value, expected: usize) -> Result<Vec<ItemOutcome>, String> {
    let items = body["items"]
        .as_array()
        .ok_or_else(|| "the _bulk response has no items".to_string())?;
    if items.len() != expected {
        return Err(format!(
            "the _bulk response has {} items for {expected} documents",
            items.len()
        ));
    }
    Ok(items
        .iter()
        .map(|item| {
            let op = item
                .as_object()
                .and_then(|o| o.values().next())
                .cloned()
                .unwrap_or(Value::Null);
            let status = op["status"].as_u64().unwrap_or(0) as u16;
            match status {
                200..=299 => ItemOutcome::Written,
                409 => ItemOutcome::AlreadyWritten,
                429 | 500..=599 => ItemOutcome::Retry(status),
                _ => ItemOutcome::Rejected {
                    status,
                    reason: format!(
                        "{}: {}",
                        op["error"]["type"].as_str().unwrap_or("error"),
                        op["error"]["reason"].as_str().unwrap_or("no reason given")
                    ),
                },
            }
        })
        .collect())
}
