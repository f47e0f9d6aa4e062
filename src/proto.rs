//! Generated protobuf and gRPC code for `consentledger.v1`, its descriptor set (served
//! by reflection and used for the JSON mapping of the command-line client), and the codec
//! the generated services and clients use.

/// `consentledger.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    tonic::include_proto!("consentledger.v1");

    pub use super::Decisions;
}

/// `consentledger.v1.Decisions`, a batch of `Screen` decisions and the frame they share.
///
/// Written by hand rather than generated so that a server can send decisions it has
/// already encoded ([`Decisions::encoded`]): a screened contact's answer is then written
/// once, straight from the decision, instead of built as a message of a dozen strings and
/// buffers, measured, encoded and freed. On the wire it is exactly the generated message;
/// read back, every decision is in `decisions`.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct Decisions {
    /// The decisions, in order.
    pub decisions: Vec<v1::Decision>,
    /// What every decision of this batch shares.
    pub frame: Option<v1::DecisionFrame>,
    /// Decisions already encoded as field 1 records, sent after `decisions`.
    encoded: Vec<u8>,
}

impl Decisions {
    /// A batch of decisions already encoded, each as a field 1 record (key, length,
    /// `Decision`), as [`prost::encoding::message::encode`] writes one.
    pub fn encoded(encoded: Vec<u8>, frame: v1::DecisionFrame) -> Self {
        Self {
            decisions: Vec::new(),
            frame: Some(frame),
            encoded,
        }
    }
}

impl prost::Message for Decisions {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        use prost::encoding::message;
        message::encode_repeated(1, &self.decisions, buf);
        buf.put_slice(&self.encoded);
        if let Some(frame) = &self.frame {
            message::encode(2, frame, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        use prost::encoding::{message, skip_field};
        let named = |field| {
            move |mut err: prost::DecodeError| {
                err.push("Decisions", field);
                err
            }
        };
        match tag {
            1 => message::merge_repeated(wire_type, &mut self.decisions, buf, ctx)
                .map_err(named("decisions")),
            2 => message::merge(
                wire_type,
                self.frame.get_or_insert_with(Default::default),
                buf,
                ctx,
            )
            .map_err(named("frame")),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        use prost::encoding::message;
        message::encoded_len_repeated(1, &self.decisions)
            + self.encoded.len()
            + self
                .frame
                .as_ref()
                .map_or(0, |frame| message::encoded_len(2, frame))
    }

    fn clear(&mut self) {
        self.decisions.clear();
        self.frame = None;
        self.encoded.clear();
    }
}

impl v1::DecisionFrame {
    /// Fills in the fields of `decision` that the frame holds for every decision of its
    /// batch, so that it reads as a `Check` answer does.
    pub fn fill(&self, decision: &mut v1::Decision) {
        decision.purpose.clone_from(&self.purpose);
        decision.channel.clone_from(&self.channel);
        decision.policy_version.clone_from(&self.policy_version);
        decision.policy_sha256.clone_from(&self.policy_sha256);
        decision.tree_size = self.tree_size;
        decision.decided_for = self.decided_for;
        decision.time_basis = self.time_basis;
    }
}

/// The encoded `FileDescriptorSet` of every proto file the service uses.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/consentledger_descriptor.bin"));

/// The codec of every service: protobuf by prost, as `tonic_prost::ProstCodec` does, but
/// written to and read from contiguous memory. tonic's own buffers take a message a byte
/// at a time through several calls (each varint byte a one-byte copy into the frame
/// buffer); here a message is encoded into a buffer kept by the stream and copied into
/// the frame once, and decoded from the frame's bytes as one slice. Before it, a full
/// `Screen` spent about a quarter of the connection thread's CPU writing varints and the
/// client a fifth of its CPU reading them.
pub mod codec {
    use std::marker::PhantomData;

    use prost::bytes::{Buf, BufMut};
    use prost::Message;
    use tonic::codec::{DecodeBuf, EncodeBuf};
    use tonic::Status;

    /// An encode buffer grown past this is not kept for the stream's next message.
    const KEEP_SCRATCH: usize = 1 << 20;

    /// Encodes `T`, decodes `U`.
    #[derive(Debug)]
    pub struct Codec<T, U>(PhantomData<fn(T) -> U>);

    impl<T, U> Default for Codec<T, U> {
        fn default() -> Self {
            Self(PhantomData)
        }
    }

    impl<T, U> tonic::codec::Codec for Codec<T, U>
    where
        T: Message + Send + 'static,
        U: Message + Default + Send + 'static,
    {
        type Encode = T;
        type Decode = U;
        type Encoder = Encoder<T>;
        type Decoder = Decoder<U>;

        fn encoder(&mut self) -> Encoder<T> {
            Encoder {
                scratch: Vec::new(),
                _message: PhantomData,
            }
        }

        fn decoder(&mut self) -> Decoder<U> {
            Decoder(PhantomData)
        }
    }

    /// Encodes each message of a stream into one buffer, then copies it into the frame.
    #[derive(Debug)]
    pub struct Encoder<T> {
        scratch: Vec<u8>,
        _message: PhantomData<fn(T)>,
    }

    impl<T: Message> tonic::codec::Encoder for Encoder<T> {
        type Item = T;
        type Error = Status;

        fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
            self.scratch.clear();
            item.encode(&mut self.scratch)
                .map_err(|err| Status::internal(format!("encoding a message: {err}")))?;
            buf.put_slice(&self.scratch);
            if self.scratch.capacity() > KEEP_SCRATCH {
                self.scratch = Vec::new();
            }
            Ok(())
        }
    }

    /// Decodes each message from the frame's bytes as one slice.
    #[derive(Debug)]
    pub struct Decoder<U>(PhantomData<fn() -> U>);

    impl<U: Message + Default> tonic::codec::Decoder for Decoder<U> {
        type Item = U;
        type Error = Status;

        fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
            // As tonic_prost reports a message that does not decode.
            decode(buf)
                .map(Some)
                .map_err(|err| Status::internal(err.to_string()))
        }
    }

    /// Decodes all of `buf` as one `U`: from one slice when it is contiguous, as tonic's
    /// buffer of a whole message is.
    fn decode<U: Message + Default>(buf: &mut impl Buf) -> Result<U, prost::DecodeError> {
        let len = buf.remaining();
        if buf.chunk().len() == len {
            let decoded = U::decode(buf.chunk());
            buf.advance(len);
            decoded
        } else {
            U::decode(buf.copy_to_bytes(len))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::proto::v1 as pb;

        fn sample() -> pb::ScreenRequest {
            pb::ScreenRequest {
                target: Some(pb::ScreenTarget {
                    purpose: "marketing_email".into(),
                    channel: "email".into(),
                    brief: true,
                    ..Default::default()
                }),
                contact_ids: (0..300).map(|i| format!("contact-{i}")).collect(),
            }
        }

        #[test]
        fn a_message_decodes_the_same_from_one_slice_or_from_pieces() {
            let bytes = sample().encode_to_vec();
            let mut whole = bytes.as_slice();
            assert_eq!(decode::<pb::ScreenRequest>(&mut whole).unwrap(), sample());
            assert!(whole.is_empty(), "the message is consumed");
            for split in [1, 7, bytes.len() / 2, bytes.len() - 1] {
                let mut pieces = bytes[..split].chain(&bytes[split..]);
                assert_eq!(decode::<pb::ScreenRequest>(&mut pieces).unwrap(), sample());
                assert_eq!(pieces.remaining(), 0);
            }
        }

        #[test]
        fn a_truncated_message_is_an_error() {
            let bytes = sample().encode_to_vec();
            let mut truncated = &bytes[..bytes.len() - 3];
            assert!(decode::<pb::ScreenRequest>(&mut truncated).is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn decisions_read_back_the_same_sent_as_messages_or_already_encoded() {
        let decisions: Vec<v1::Decision> = (0..3)
            .map(|i| v1::Decision {
                contact_id: format!("crm-{i}"),
                allowed: i % 2 == 0,
                rule_id: "consent.granted".into(),
                reasons: vec![format!("reason {i}")],
                ..Default::default()
            })
            .collect();
        let frame = v1::DecisionFrame {
            purpose: "email_marketing".into(),
            tree_size: 9,
            ..Default::default()
        };
        let mut encoded = Vec::new();
        for decision in &decisions {
            prost::encoding::message::encode(1, decision, &mut encoded);
        }
        let sent = Decisions::encoded(encoded, frame.clone());
        let as_messages = Decisions {
            decisions,
            frame: Some(frame),
            encoded: Vec::new(),
        };
        let bytes = sent.encode_to_vec();
        assert_eq!(bytes, as_messages.encode_to_vec());
        assert_eq!(sent.encoded_len(), bytes.len());
        assert_eq!(Decisions::decode(bytes.as_slice()).unwrap(), as_messages);
        assert!(Decisions::decode(&bytes[..bytes.len() - 1]).is_err());
        // And inside the response that carries it.
        let response = |batch| v1::ScreenResponse {
            kind: Some(v1::screen_response::Kind::Decisions(batch)),
        };
        let bytes = response(sent).encode_to_vec();
        assert_eq!(
            v1::ScreenResponse::decode(bytes.as_slice()).unwrap(),
            response(as_messages)
        );
    }
}
