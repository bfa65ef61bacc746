//! Malformed hand-written `.ops` files: each is refused with an error that names the line and
//! the key or step at fault, never run as something else.

use std::process::Command;

/// Parse errors: the text, and what the error must say.
const PARSE_ERRORS: &[(&str, &str)] = &[
    // A misspelled key would otherwise run the fork without its refusal.
    (
        "spawn\nfork s=0 refuze=0\n",
        "line 2: unknown key `refuze=` for `fork`",
    ),
    (
        "spawn\nfork s=0 len=0x5\n",
        "line 2: unknown key `len=` for `fork`",
    ),
    (
        "spawn\nread s=0 s=1 addr=0x0 mode=user\n",
        "line 2: `s=` given twice",
    ),
    (
        "spawn\nfork s=0 refuse=1 refuse=2\n",
        "line 2: `refuse=` given twice",
    ),
    ("spawn\nfork s=256\n", "line 2: `s` must be below 256"),
    ("spawn\nfork\n", "line 2: missing `s=`"),
    ("spawn\nfork s=zero\n", "line 2: `s=zero` is not a number"),
    ("spawn\nforks s=0\n", "line 2: unknown op `forks`"),
    ("spawn\nfork s 0\n", "line 2: `s` is not key=value"),
    (
        "spawn\nread s=0 addr=0x0 mode=root\n",
        "line 2: `mode=root`: user or kernel",
    ),
    (
        "spawn\nmapdev s=0 addr=0x0 page=65536 len=0x1000 prot=0x3\n",
        "line 2: `page` must be below 65536",
    ),
    ("pool frames=8\nspawn\n", "line 1"),
    ("pool frames=64 frames=64\nspawn\n", "line 1"),
    ("pool framez=64\nspawn\n", "line 1"),
    ("spawn\npool frames=64\n", "line 2: unknown op `pool`"),
];

#[test]
fn parse_errors_name_the_line_and_the_key() {
    for (text, expected) in PARSE_ERRORS {
        match checker::parse_sequence(text) {
            Ok(s) => panic!("{text:?} parsed as {:?}", s.steps),
            Err(e) => assert!(e.contains(expected), "{text:?}: {e:?} lacks {expected:?}"),
        }
    }
}

/// Steps that parse but name nothing live, or would not run: `checker replay` refuses the file
/// (exit status 2), naming the line of the step, and still replays the other files.
#[test]
fn replay_refuses_steps_that_only_wrap_or_do_not_run() {
    let dir = std::env::temp_dir().join(format!("checker-malformed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "wraps.ops",
            "# one live space\nspawn\n\nfork s=3\n",
            "wraps.ops: line 4: `fork s=3`: `s=3` names no live space (1 live: s=0..0)",
        ),
        (
            "region.ops",
            "pool frames=64\nspawn\nmmap s=0 addr=0x0 len=0x1000 prot=0x3 flags=0x22\nread s=0 addr=r2+0p+0w mode=user\n",
            "region.ops: line 4: `read s=0 addr=r2+0p+0w mode=user`: `r2+0p+0w` names no region (1 in the space: r0..r0)",
        ),
        (
            "skipped.ops",
            "spawn\nread s=0 addr=0x40000000 mode=kernel  # the linear map: not modelled\n",
            "skipped.ops: line 2: `read s=0 addr=0x40000000 mode=kernel`: the step would not run (Skipped)",
        ),
        (
            "before_spawn.ops",
            "exit s=0\nspawn\n",
            "before_spawn.ops: line 1: `exit s=0`: `s=0`: no space is live",
        ),
    ];
    for (name, text, _) in cases {
        std::fs::write(dir.join(name), text).unwrap();
    }
    std::fs::write(dir.join("good.ops"), "spawn\nfork s=0\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_checker"))
        .current_dir(&dir)
        .arg("replay")
        .args(cases.iter().map(|(name, _, _)| *name))
        .arg("good.ops")
        .output()
        .expect("the checker runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    for (_, _, expected) in cases {
        assert!(
            stdout.contains(&format!("ERROR {expected}")),
            "lacks {expected:?}:\n{stdout}"
        );
    }
    assert!(stdout.contains("PASS good.ops (2 steps)"), "{stdout}");
    assert!(
        stdout.contains("SUMMARY: 5 files, 0 diverged, 4 unreadable"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
