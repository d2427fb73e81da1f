//! Netlink framing for nf_tables: attributes, messages, and the batch that
//! makes a change one transaction.
//!
//! A message is a `nlmsghdr` (16 bytes, host order), an `nfgenmsg` (family,
//! version, resource id in network order), then attributes: each a 4-byte
//! header (length including the header, type; host order) and its data,
//! padded to 4 bytes. Nested attributes carry `NLA_F_NESTED`. Numbers in
//! nf_tables attributes are big-endian (`NLA_U32` read with `nla_get_be32`).
//!
//! A batch is `NFNL_MSG_BATCH_BEGIN`, the messages, `NFNL_MSG_BATCH_END`, in
//! one datagram: the kernel applies all of it or none of it.

use super::uapi::*;

/// Appends one attribute, padded to 4 bytes.
pub(super) fn put(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = NLA_HDRLEN + data.len();
    push_header(buf, len, ty);
    buf.extend_from_slice(data);
    pad(buf);
}

/// Appends a big-endian u32 attribute (`NLA_U32` in nf_tables).
pub(super) fn put_u32(buf: &mut Vec<u8>, ty: u16, value: u32) {
    put(buf, ty, &value.to_be_bytes());
}

/// Appends a NUL-terminated string attribute (`NLA_STRING`).
pub(super) fn put_str(buf: &mut Vec<u8>, ty: u16, s: &str) {
    let len = NLA_HDRLEN + s.len() + 1;
    push_header(buf, len, ty);
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
    pad(buf);
}

/// Appends a nested attribute whose contents `inner` writes.
pub(super) fn nest(buf: &mut Vec<u8>, ty: u16, inner: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    push_header(buf, 0, ty | NLA_F_NESTED);
    inner(buf);
    let len = buf.len() - start;
    set_u16(buf, start, len);
}

fn push_header(buf: &mut Vec<u8>, len: usize, ty: u16) {
    buf.extend_from_slice(&u16_len(len).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
}

/// Lengths here are bounded by what berth validates (names, comments) and
/// by the few expressions of a rule, far below 64 KiB; a longer attribute
/// is clamped and the kernel refuses the message rather than misreading it.
fn u16_len(len: usize) -> u16 {
    debug_assert!(
        len <= usize::from(u16::MAX),
        "netlink attribute of {len} bytes"
    );
    u16::try_from(len).unwrap_or(u16::MAX)
}

fn set_u16(buf: &mut [u8], at: usize, len: usize) {
    buf[at..at + 2].copy_from_slice(&u16_len(len).to_ne_bytes());
}

fn pad(buf: &mut Vec<u8>) {
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

/// Appends a netlink header and an `nfgenmsg`, then the body, and sets the
/// message's length.
fn message(
    buf: &mut Vec<u8>,
    ty: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    body: impl FnOnce(&mut Vec<u8>),
) {
    let start = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set below
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    buf.push(family);
    buf.push(NFNETLINK_V0);
    buf.extend_from_slice(&res_id.to_be_bytes());
    body(buf);
    let len = u32::try_from(buf.len() - start).unwrap_or(u32::MAX);
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// nf_tables messages for one transaction, with what each one does.
///
/// Message `i` (from 0) has sequence number `i + 1`; the batch's begin has
/// 0 and its end `len + 1`, as nft numbers them. Every message asks for an
/// acknowledgement, so the kernel answers each one.
#[derive(Debug, Default)]
pub struct Batch {
    buf: Vec<u8>,
    ops: Vec<String>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Appends a message of nf_tables type `ty` for the ip family; `op`
    /// says what it does, for errors.
    pub(super) fn push(
        &mut self,
        ty: u16,
        flags: u16,
        op: String,
        body: impl FnOnce(&mut Vec<u8>),
    ) {
        let seq = u32::try_from(self.ops.len() + 1).unwrap_or(u32::MAX);
        message(
            &mut self.buf,
            (NFNL_SUBSYS_NFTABLES << 8) | ty,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            seq,
            NFPROTO_IPV4,
            0,
            body,
        );
        self.ops.push(op);
    }

    /// How many messages (begin and end not counted).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there is no message.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// What the message with sequence number `seq` does.
    pub fn op(&self, seq: u32) -> String {
        let end = self.ops.len() + 1;
        match usize::try_from(seq).unwrap_or(usize::MAX) {
            0 => "begin the nftables batch".into(),
            s if s == end => "commit the nftables batch".into(),
            s => self
                .ops
                .get(s.wrapping_sub(1))
                .cloned()
                .unwrap_or_else(|| format!("unknown message #{seq}")),
        }
    }

    /// The datagram: begin, the messages, end.
    pub fn to_bytes(&self) -> Vec<u8> {
        let framing = 2 * (NLMSG_HDRLEN + NFGENMSG_LEN);
        let mut out = Vec::with_capacity(self.buf.len() + framing);
        let end = u32::try_from(self.ops.len() + 1).unwrap_or(u32::MAX);
        let res = NFNL_SUBSYS_NFTABLES;
        message(
            &mut out,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            0,
            AF_UNSPEC,
            res,
            |_| {},
        );
        out.extend_from_slice(&self.buf);
        message(
            &mut out,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            end,
            AF_UNSPEC,
            res,
            |_| {},
        );
        out
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Splits a datagram into its netlink messages.
    pub fn split(mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while bytes.len() >= 4 {
            let len = u32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize;
            out.push(bytes[..len].to_vec());
            bytes = &bytes[((len + 3) & !3).min(bytes.len())..];
        }
        out
    }

    #[test]
    fn attributes_are_padded_and_nested_lengths_cover_their_contents() {
        let mut buf = Vec::new();
        nest(&mut buf, 4, |b| {
            put_str(b, 1, "nat");
            put(b, 2, &[0xac, 0x11]);
            put_u32(b, 3, 0x64);
        });
        assert_eq!(
            buf,
            [
                28, 0, 4, 0x80, // nested, 28 bytes
                8, 0, 1, 0, b'n', b'a', b't', 0, // "nat\0"
                6, 0, 2, 0, 0xac, 0x11, 0, 0, // 2 bytes, padded
                8, 0, 3, 0, 0, 0, 0, 0x64, // big-endian u32
            ]
        );
    }

    #[test]
    fn a_batch_is_framed_by_begin_and_end_with_sequence_numbers() {
        let mut batch = Batch::new();
        batch.push(NFT_MSG_DELTABLE, 0, "delete table ip berth".into(), |b| {
            put_str(b, NFTA_TABLE_NAME, "berth")
        });
        let msgs = split(&batch.to_bytes());
        assert_eq!(msgs.len(), 3);
        // begin: type 0x10, request, seq 0, AF_UNSPEC, res_id 10 (big-endian)
        assert_eq!(hex(&msgs[0]), "140000001000010000000000000000000000000a");
        // delete: (10 << 8) | 2, request | ack, seq 1, AF_INET
        assert_eq!(
            hex(&msgs[1]),
            "20000000020a05000100000000000000020000000a0001006265727468000000"
        );
        // end: type 0x11, seq 2
        assert_eq!(hex(&msgs[2]), "140000001100010002000000000000000000000a");
        assert_eq!(batch.op(1), "delete table ip berth");
        assert_eq!(batch.op(2), "commit the nftables batch");
        assert_eq!(batch.op(0), "begin the nftables batch");
    }

    pub fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
