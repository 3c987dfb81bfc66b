//! `google.rpc.Status` and `google.rpc.RetryInfo`, the error bodies OTLP uses on both transports.
//! Three small messages do not justify another dependency.

use prost::Message;
use std::time::Duration;

#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types_any::Any>,
}

/// `google.protobuf.Any` and `google.protobuf.Duration`, as far as OTLP needs them.
pub mod prost_types_any {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ProtoDuration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<prost_types_any::ProtoDuration>,
}

pub const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

impl RpcStatus {
    pub fn new(code: tonic::Code, message: impl Into<String>) -> Self {
        Self {
            code: code as i32,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn with_retry_delay(mut self, delay: Duration) -> Self {
        let info = RetryInfo {
            retry_delay: Some(prost_types_any::ProtoDuration {
                seconds: delay.as_secs() as i64,
                nanos: delay.subsec_nanos() as i32,
            }),
        };
        self.details.push(prost_types_any::Any {
            type_url: RETRY_INFO_TYPE.into(),
            value: info.encode_to_vec(),
        });
        self
    }

    /// The JSON form used for OTLP/HTTP JSON error bodies.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::json!({ "code": self.code, "message": self.message });
        if !self.details.is_empty() {
            v["details"] = self
                .details
                .iter()
                .map(|d| serde_json::json!({ "@type": d.type_url }))
                .collect();
        }
        v.to_string().into_bytes()
    }

    /// A tonic status carrying these details (`grpc-status-details-bin`).
    pub fn into_tonic(self) -> tonic::Status {
        let code = tonic::Code::from_i32(self.code);
        let message = self.message.clone();
        let details = self.encode_to_vec();
        tonic::Status::with_details(code, message, details.into())
    }
}

/// The server's requested retry delay, if a status carries `RetryInfo`.
pub fn retry_delay(status: &tonic::Status) -> Option<Duration> {
    let details = status.details();
    if details.is_empty() {
        return None;
    }
    let st = RpcStatus::decode(details).ok()?;
    st.details
        .iter()
        .filter(|d| d.type_url == RETRY_INFO_TYPE)
        .find_map(|d| RetryInfo::decode(d.value.as_slice()).ok())
        .and_then(|r| r.retry_delay)
        .map(|d| Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_round_trips_through_tonic_status() {
        let st = RpcStatus::new(tonic::Code::ResourceExhausted, "full")
            .with_retry_delay(Duration::from_millis(1500))
            .into_tonic();
        assert_eq!(st.code(), tonic::Code::ResourceExhausted);
        assert_eq!(retry_delay(&st), Some(Duration::from_millis(1500)));
        assert_eq!(retry_delay(&tonic::Status::unavailable("x")), None);
    }
}
