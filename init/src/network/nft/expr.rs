//! nf_tables expressions: the instructions of the kernel's rule machine,
//! encoded as nft encodes them (same attributes, same order), so that
//! `nft --debug=netlink` and berth describe a rule with the same bytes.
//!
//! A rule is a list of expressions run in order on registers: loads
//! (`payload`, `meta`, `fib`, `immediate`) fill a register, `bitwise`
//! transforms it, `cmp` ends the rule when its comparison is false, and the
//! last expression acts (`nat`, `masq`, or a verdict such as a jump).

use std::net::Ipv4Addr;

use super::msg::{nest, put, put_str, put_u32};
use super::uapi::*;

/// One expression. Loads and comparisons use register 1; a DNAT takes its
/// address from register 1 and its port from register 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Expr {
    /// `payload load LEN @ BASE + OFFSET => reg 1`
    Payload { base: u32, offset: u32, len: u32 },
    /// `meta load KEY => reg 1`
    Meta { key: u32 },
    /// `fib daddr type => reg 1`: the route type of the destination.
    FibDaddrType,
    /// `bitwise reg 1 = (reg 1 & MASK) ^ 0`
    Bitwise { mask: Vec<u8> },
    /// `cmp OP reg 1 DATA`
    Cmp { op: u32, data: Vec<u8> },
    /// `immediate reg REG DATA`
    Immediate { reg: u32, data: Vec<u8> },
    /// `immediate reg 0 jump -> CHAIN`
    Jump(String),
    /// `nat dnat ip addr_min reg 1 [proto_min reg 2]`
    Dnat { with_port: bool },
    /// `masq`
    Masq,
}

impl Expr {
    /// Loads an IPv4 address into register `reg`.
    pub fn immediate_addr(reg: u32, addr: Ipv4Addr) -> Expr {
        Expr::Immediate {
            reg,
            data: addr.octets().to_vec(),
        }
    }

    /// Loads a port (network order) into register `reg`.
    pub fn immediate_port(reg: u32, port: u16) -> Expr {
        Expr::Immediate {
            reg,
            data: port.to_be_bytes().to_vec(),
        }
    }

    /// Appends the expression's `NFTA_EXPR_NAME` and `NFTA_EXPR_DATA`.
    fn encode(&self, buf: &mut Vec<u8>) {
        put_str(buf, NFTA_EXPR_NAME, self.name());
        nest(buf, NFTA_EXPR_DATA, |b| match self {
            Expr::Payload { base, offset, len } => {
                put_u32(b, NFTA_PAYLOAD_DREG, NFT_REG_1);
                put_u32(b, NFTA_PAYLOAD_BASE, *base);
                put_u32(b, NFTA_PAYLOAD_OFFSET, *offset);
                put_u32(b, NFTA_PAYLOAD_LEN, *len);
            }
            Expr::Meta { key } => {
                put_u32(b, NFTA_META_KEY, *key);
                put_u32(b, NFTA_META_DREG, NFT_REG_1);
            }
            Expr::FibDaddrType => {
                put_u32(b, NFTA_FIB_FLAGS, NFTA_FIB_F_DADDR);
                put_u32(b, NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
                put_u32(b, NFTA_FIB_DREG, NFT_REG_1);
            }
            Expr::Bitwise { mask } => {
                put_u32(b, NFTA_BITWISE_SREG, NFT_REG_1);
                put_u32(b, NFTA_BITWISE_DREG, NFT_REG_1);
                put_u32(b, NFTA_BITWISE_LEN, len32(mask));
                value(b, NFTA_BITWISE_MASK, mask);
                value(b, NFTA_BITWISE_XOR, &vec![0; mask.len()]);
            }
            Expr::Cmp { op, data } => {
                put_u32(b, NFTA_CMP_SREG, NFT_REG_1);
                put_u32(b, NFTA_CMP_OP, *op);
                value(b, NFTA_CMP_DATA, data);
            }
            Expr::Immediate { reg, data } => {
                put_u32(b, NFTA_IMMEDIATE_DREG, *reg);
                value(b, NFTA_IMMEDIATE_DATA, data);
            }
            Expr::Jump(chain) => {
                put_u32(b, NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
                nest(b, NFTA_IMMEDIATE_DATA, |b| {
                    nest(b, NFTA_DATA_VERDICT, |b| {
                        put(b, NFTA_VERDICT_CODE, &NFT_JUMP.to_be_bytes());
                        put_str(b, NFTA_VERDICT_CHAIN, chain);
                    })
                });
            }
            Expr::Dnat { with_port } => {
                put_u32(b, NFTA_NAT_TYPE, NFT_NAT_DNAT);
                put_u32(b, NFTA_NAT_FAMILY, u32::from(NFPROTO_IPV4));
                put_u32(b, NFTA_NAT_REG_ADDR_MIN, NFT_REG_1);
                if *with_port {
                    put_u32(b, NFTA_NAT_REG_PROTO_MIN, NFT_REG_2);
                    put_u32(b, NFTA_NAT_FLAGS, NF_NAT_RANGE_PROTO_SPECIFIED);
                }
            }
            Expr::Masq => {}
        });
    }

    fn name(&self) -> &'static str {
        match self {
            Expr::Payload { .. } => "payload",
            Expr::Meta { .. } => "meta",
            Expr::FibDaddrType => "fib",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Cmp { .. } => "cmp",
            Expr::Immediate { .. } | Expr::Jump(_) => "immediate",
            Expr::Dnat { .. } => "nat",
            Expr::Masq => "masq",
        }
    }
}

/// Appends `NFTA_RULE_EXPRESSIONS`: the list of expressions.
pub(super) fn put_list(buf: &mut Vec<u8>, exprs: &[Expr]) {
    nest(buf, NFTA_RULE_EXPRESSIONS, |b| {
        for e in exprs {
            nest(b, NFTA_LIST_ELEM, |b| e.encode(b));
        }
    });
}

/// A nested `NFTA_DATA_VALUE`.
fn value(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    nest(buf, ty, |b| put(b, NFTA_DATA_VALUE, data));
}

fn len32(data: &[u8]) -> u32 {
    u32::try_from(data.len()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::msg::tests::hex;
    use super::*;

    fn encoded(e: &Expr) -> String {
        let mut buf = Vec::new();
        nest(&mut buf, NFTA_LIST_ELEM, |b| e.encode(b));
        hex(&buf)
    }

    // Each expected string is a list element nft 1.0.6 sent for the same
    // expression in testdata/example.nft (see testdata/README.md).

    #[test]
    fn loads() {
        let saddr16 = Expr::Payload {
            base: NFT_PAYLOAD_NETWORK_HEADER,
            offset: 12,
            len: 2,
        };
        assert_eq!(
            encoded(&saddr16),
            "340001800c0001007061796c6f6164002400028008000100000000010800020000000001\
             080003000000000c0800040000000002"
        );
        let dport = Expr::Payload {
            base: NFT_PAYLOAD_TRANSPORT_HEADER,
            offset: 2,
            len: 2,
        };
        assert_eq!(
            encoded(&dport),
            "340001800c0001007061796c6f6164002400028008000100000000010800020000000002\
             08000300000000020800040000000002"
        );
        let oifname = Expr::Meta {
            key: NFT_META_OIFNAME,
        };
        assert_eq!(
            encoded(&oifname),
            "24000180090001006d657461000000001400028008000200000000070800010000000001"
        );
        assert_eq!(
            encoded(&Expr::FibDaddrType),
            "2800018008000100666962001c000280080003000000000208000200000000030800010000000001"
        );
        assert_eq!(
            encoded(&Expr::immediate_addr(
                NFT_REG_1,
                Ipv4Addr::new(172, 17, 0, 2)
            )),
            "2c0001800e000100696d6d6564696174650000001800028008000100000000010c00028008000100ac110002"
        );
        assert_eq!(
            encoded(&Expr::immediate_port(NFT_REG_2, 80)),
            "2c0001800e000100696d6d6564696174650000001800028008000100000000020c0002800600010000500000"
        );
    }

    #[test]
    fn comparisons() {
        let mut name = b"berth0".to_vec();
        name.resize(IFNAMSIZ, 0);
        let ne = Expr::Cmp {
            op: NFT_CMP_NEQ,
            data: name,
        };
        assert_eq!(
            encoded(&ne),
            "3800018008000100636d70002c0002800800010000000001080002000000000118000380\
             1400010062657274683000000000000000000000"
        );
        let gte = Expr::Cmp {
            op: NFT_CMP_GTE,
            data: 8000u16.to_be_bytes().to_vec(),
        };
        assert_eq!(
            encoded(&gte),
            "2c00018008000100636d700020000280080001000000000108000200000000050c000380\
             060001001f400000"
        );
        let local = Expr::Cmp {
            op: NFT_CMP_EQ,
            data: RTN_LOCAL.to_ne_bytes().to_vec(),
        };
        assert_eq!(
            encoded(&local),
            "2c00018008000100636d700020000280080001000000000108000200000000000c000380\
             0800010002000000"
        );
    }

    #[test]
    fn actions() {
        assert_eq!(
            encoded(&Expr::Jump("published".into())),
            "400001800e000100696d6d6564696174650000002c0002800800010000000000200002801c000280\
             08000100fffffffd0e0002007075626c6973686564000000"
        );
        assert_eq!(
            encoded(&Expr::Dnat { with_port: true }),
            "38000180080001006e6174002c0002800800010000000001080002000000000208000300000000010800\
             0500000000020800070000000002"
        );
        assert_eq!(
            encoded(&Expr::Dnat { with_port: false }),
            "28000180080001006e6174001c000280080001000000000108000200000000020800030000000001"
        );
        assert_eq!(
            encoded(&Expr::Masq),
            "14000180090001006d6173710000000004000280"
        );
    }

    #[test]
    fn bitwise_mask_of_a_slash_twenty() {
        // From testdata/narrow.nft: ip saddr 10.88.0.0/20.
        assert_eq!(
            encoded(&Expr::Bitwise {
                mask: vec![0xff, 0xff, 0xf0, 0x00]
            }),
            "440001800c000100626974776973650034000280080001000000000108000200000000010800\
             0300000000040c00048008000100fffff0000c0005800800010000000000"
        );
    }
}
