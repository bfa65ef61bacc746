//! `.ops` text: print -> parse gives the same steps, for arbitrary steps; errors name the line.

use arbitrary::{Arbitrary, Unstructured};
use checker::{Op, Step, parse_ops, print_ops};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn print_then_parse_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut u = Unstructured::new(&bytes);
        let steps: Vec<Step> = Vec::arbitrary(&mut u).unwrap_or_default();
        let text = print_ops(&steps);
        prop_assert_eq!(parse_ops(&text), Ok(steps), "{}", text);
    }
}

#[test]
fn all_zero_bytes_decode_to_the_simplest_op() {
    let mut u = Unstructured::new(&[0; 16]);
    assert_eq!(Op::arbitrary(&mut u).unwrap(), Op::Spawn);
}

#[test]
fn hand_written_files_parse_and_errors_name_the_line() {
    let text = "# a comment\nspawn\nmmap s=0 addr=0 len=0x2000 prot=0x3 flags=0x22   # first fit\n\nwrite s=0 addr=r0+1p+2w value=7 mode=user refuse=0\n";
    let steps = parse_ops(text).unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[2].refuse, Some(0));
    assert_eq!(
        print_ops(&steps).lines().nth(2),
        Some("write s=0 addr=r0+1p+2w value=0x7 mode=user refuse=0")
    );
    assert_eq!(
        parse_ops("spawn\nfrob s=1\n"),
        Err("line 2: unknown op `frob`: `frob s=1`".to_string())
    );
    assert!(
        parse_ops("munmap s=0 addr=r0+1 len=1\n")
            .unwrap_err()
            .starts_with("line 1: bad address")
    );
    assert!(parse_ops("fork s=300\n").unwrap_err().contains("below 256"));
}
