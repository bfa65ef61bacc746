//! The divergence report: numbered listing, the diverging step marked, a model-vs-vmm diff.

use checker::{Config, Divergence, DivergenceKind, Op, Sequence, Step, parse_ops, run};

#[test]
fn a_report_is_readable() {
    let steps = parse_ops(
        "spawn\nmmap s=0 addr=0 len=0x1000 prot=0x3 flags=0x22\nread s=0 addr=r0+0p+0w mode=user\n",
    )
    .unwrap();
    let d = Divergence {
        kind: DivergenceKind::ReturnValue,
        config: Config::DEFAULT,
        steps,
        at: 1,
        model: "Ok(528482304)\n".into(),
        vmm: "Err(12)\n".into(),
    };
    let text = d.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "divergence: ReturnValue at step 2 of 3");
    assert_eq!(lines[1], "     1  spawn");
    assert_eq!(
        lines[2],
        ">>   2  mmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22"
    );
    assert!(text.contains("model (left) vs vmm (right):"));
    // The diff is coloured: compare without the escape sequences.
    let plain = strip_ansi(&text);
    assert!(
        plain.contains("Ok(528482304)") && plain.contains("Err(12)"),
        "{plain}"
    );
}

#[test]
fn a_clean_sequence_runs_to_the_end() {
    let steps = vec![
        Step {
            op: Op::Spawn,
            refuse: None,
        },
        Step {
            op: Op::Write {
                s: 0,
                addr: checker::Addr::Heap(0),
                value: 1,
                kernel: false,
                cpu: 0,
            },
            refuse: None,
        },
    ];
    assert_eq!(run(&Sequence::new(steps)).map_err(|d| d.to_string()), Ok(2));
}

/// A sequence in another world than the default one says so under the heading, as the
/// `.ops` line that sets it.
#[test]
fn a_report_names_the_world_when_it_is_not_the_default() {
    let d = Divergence {
        kind: DivergenceKind::ReturnValue,
        config: Config {
            pool_frames: 32,
            asids: 2,
            cpus: 1,
        },
        steps: parse_ops("spawn\n").unwrap(),
        at: 0,
        model: "Ok(0)\n".into(),
        vmm: "Err(12)\n".into(),
    };
    let text = d.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[1], "         pool frames=32 asids=2");
    assert_eq!(lines[2], ">>   1  spawn");
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
