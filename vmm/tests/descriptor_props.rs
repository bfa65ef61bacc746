//! Descriptor encode/decode round trips over every field combination.

use proptest::prelude::*;
use vmm::addr::PhysAddr;
use vmm::arch::armv7::{
    AccessPermissions, Domain, L1Descriptor, L2Descriptor, MappingAttrs, MappingFlags, MemoryType,
    PageAttributes, Tex,
};

fn attrs() -> impl Strategy<Value = PageAttributes> {
    (0..8u8, 0..8u8, any::<[bool; 5]>()).prop_map(|(ap, tex, [c, b, s, ng, xn])| PageAttributes {
        ap: AccessPermissions::new(ap).unwrap(),
        tex: Tex::new(tex).unwrap(),
        c,
        b,
        s,
        ng,
        xn,
    })
}

fn l1() -> impl Strategy<Value = L1Descriptor> {
    prop_oneof![
        Just(L1Descriptor::Fault),
        (any::<u32>(), 0..16u8, any::<bool>(), any::<bool>()).prop_map(|(pa, d, ns, pxn)| {
            L1Descriptor::PageTable {
                table: PhysAddr::new(pa & 0xFFFF_FC00),
                domain: Domain::new(d).unwrap(),
                ns,
                pxn,
            }
        }),
        (any::<u32>(), attrs(), 0..16u8, any::<bool>(), any::<bool>()).prop_map(
            |(pa, attrs, d, ns, pxn)| {
                L1Descriptor::Section {
                    base: PhysAddr::new(pa & 0xFFF0_0000),
                    attrs,
                    domain: Domain::new(d).unwrap(),
                    ns,
                    pxn,
                }
            }
        ),
    ]
}

fn l2() -> impl Strategy<Value = L2Descriptor> {
    prop_oneof![
        Just(L2Descriptor::Fault),
        (any::<u32>(), attrs()).prop_map(|(pa, attrs)| L2Descriptor::Small {
            base: PhysAddr::new(pa & 0xFFFF_F000),
            attrs
        }),
        (any::<u32>(), attrs()).prop_map(|(pa, attrs)| L2Descriptor::Large {
            base: PhysAddr::new(pa & 0xFFFF_0000),
            attrs
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn l1_fields_round_trip(d in l1()) {
        prop_assert_eq!(L1Descriptor::decode(d.encode()), d);
    }

    #[test]
    fn l2_fields_round_trip(d in l2()) {
        prop_assert_eq!(L2Descriptor::decode(d.encode()), d);
    }

    /// Decoding any word and encoding it again keeps every bit the format defines: re-decoding
    /// gives the same descriptor, and only implementation-defined or SBZ bits can differ.
    #[test]
    fn raw_words_decode_stably(raw in any::<u32>()) {
        let d1 = L1Descriptor::decode(raw);
        prop_assert_eq!(L1Descriptor::decode(d1.encode()), d1);
        let lost1 = raw ^ d1.encode();
        match d1 {
            L1Descriptor::Fault => prop_assert_eq!(raw & 3, 0),
            L1Descriptor::PageTable { .. } => prop_assert_eq!(lost1 & !((1 << 4) | (1 << 9)), 0),
            L1Descriptor::Section { .. } => prop_assert_eq!(lost1 & !(1 << 9), 0),
            L1Descriptor::Supersection(_) => prop_assert_eq!(lost1, 0),
        }
        let d2 = L2Descriptor::decode(raw);
        prop_assert_eq!(L2Descriptor::decode(d2.encode()), d2);
        let lost2 = raw ^ d2.encode();
        match d2 {
            L2Descriptor::Fault => prop_assert_eq!(raw & 3, 0),
            L2Descriptor::Large { .. } => prop_assert_eq!(lost2 & !(0b111 << 6), 0),
            L2Descriptor::Small { .. } => prop_assert_eq!(lost2, 0),
        }
    }

    /// The crate's attribute decoding accepts exactly what its encoding produces.
    #[test]
    fn mapping_attributes_decode_only_what_they_encode(a in attrs()) {
        match MappingAttrs::from_page_attributes(a) {
            Some(m) => prop_assert_eq!(m.to_page_attributes(), a),
            None => {
                for bits in 0..16u8 {
                    for memory in [MemoryType::Cached, MemoryType::Uncached, MemoryType::Device, MemoryType::StronglyOrdered] {
                        let m = MappingAttrs { flags: MappingFlags::from_bits_truncate(bits), memory };
                        prop_assert_ne!(m.to_page_attributes(), a);
                    }
                }
            }
        }
    }
}
