//! gRPC codecs that keep requests as raw protobuf bytes.
//!
//! The receiver takes the request body as `Bytes` (zero-copy from tonic's buffer), decodes it
//! itself and keeps the bytes next to the decoded message; the `otlp` exporter then sends those
//! same bytes downstream. Forwarding therefore never re-encodes what it did not change.

use bytes::{BufMut, Bytes};
use prost::Message;
use std::marker::PhantomData;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// Server side: requests stay bytes, responses are protobuf messages.
pub struct ServerCodec<R>(PhantomData<R>);

impl<R> Default for ServerCodec<R> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

/// Client side: requests are sent as the bytes given, responses are decoded.
pub struct ClientCodec<R>(PhantomData<R>);

impl<R> Default for ClientCodec<R> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

pub struct BytesDecoder;
pub struct BytesEncoder;
pub struct MessageEncoder<R>(PhantomData<R>);
pub struct MessageDecoder<R>(PhantomData<R>);

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl<R: Message> Encoder for MessageEncoder<R> {
    type Item = R;
    type Error = Status;
    fn encode(&mut self, item: R, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the response: {e}")))
    }
}

impl<R: Message + Default> Decoder for MessageDecoder<R> {
    type Item = R;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        R::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("decoding the response: {e}")))
    }
}

impl<R: Message + Default + Send + 'static> Codec for ServerCodec<R> {
    type Encode = R;
    type Decode = Bytes;
    type Encoder = MessageEncoder<R>;
    type Decoder = BytesDecoder;
    fn encoder(&mut self) -> Self::Encoder {
        MessageEncoder(PhantomData)
    }
    fn decoder(&mut self) -> Self::Decoder {
        BytesDecoder
    }
}

impl<R: Message + Default + Send + 'static> Codec for ClientCodec<R> {
    type Encode = Bytes;
    type Decode = R;
    type Encoder = BytesEncoder;
    type Decoder = MessageDecoder<R>;
    fn encoder(&mut self) -> Self::Encoder {
        BytesEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        MessageDecoder(PhantomData)
    }
}
