//! What one boot of the guest says about each sequence of its batch: nothing the guest wrote
//! is dropped silently. A sequence passes only when its records are all there, in order, and
//! agree with the model; a missing, extra or out-of-order record, a crash, a timeout, or a
//! guest that exits with anything but success after its last record is a failure naming the
//! sequence and the step.

use std::time::Duration;

use checker::Divergence;

use crate::compare::compare;
use crate::plan::Plan;
use crate::qemu::GuestRun;

/// What happened to one sequence.
#[derive(Debug)]
pub enum Verdict {
    /// The guest ran it and everything agreed with the model.
    Pass,
    /// The guest ran it and something disagreed.
    Diverged(Box<Divergence>),
    /// The guest did not run it through, or its records cannot be trusted: why, naming the
    /// step.
    Crashed(String),
}

/// The verdicts of `plans` (one batch, in order) from `run`: every sequence the guest finished,
/// then the one it stopped in, if any. The caller runs the rest in a new boot.
#[must_use]
pub fn judge(plans: &[&Plan], run: &GuestRun, timeout: Duration) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    let finished = run
        .sequences
        .iter()
        .take_while(|s| s.end_free.is_some())
        .count();
    for (plan, report) in plans.iter().zip(&run.sequences).take(finished) {
        verdicts.push(match compare(plan, report) {
            Ok(()) => Verdict::Pass,
            Err(d) => Verdict::Diverged(d),
        });
    }
    let guest_said = || {
        let detail = run
            .report_error
            .as_ref()
            .map_or(String::new(), |e| format!("; {e}"));
        format!("{detail}\nguest output:\n{}", run.output.trim_end())
    };
    if finished < plans.len() {
        // The sequence the boot stopped in: the step it had reached, and why it stopped.
        let step = run.sequences.get(finished).map_or(0, |s| s.steps.len());
        let why = match (&run.record_error, run.status) {
            (Some(e), _) if e.sequence == finished => e.why.clone(),
            (_, None) => format!("the guest timed out after {} s", timeout.as_secs()),
            (_, Some(0)) => "the guest ended without finishing it".to_string(),
            (_, Some(code)) => format!("the guest crashed (exit status {code})"),
        };
        let steps = plans[finished].steps.len();
        let at = if step < steps {
            format!("at step {} of {steps}", step + 1)
        } else {
            format!("after step {steps} of {steps}")
        };
        verdicts.push(Verdict::Crashed(format!("{at}: {why}{}", guest_said())));
        return verdicts;
    }
    // Every sequence finished: nothing may follow, and the guest must say it succeeded.
    let after = match (
        &run.record_error,
        run.status,
        run.sequences.len() > plans.len(),
    ) {
        (Some(e), _, _) => Some(format!("a record after its end: {}", e.why)),
        (None, _, _) if run.report_error.is_some() => {
            Some("an unreadable record after its end".to_string())
        }
        (None, _, true) => Some(format!(
            "the guest reported {} sequences for a batch of {}",
            run.sequences.len(),
            plans.len()
        )),
        (None, Some(0), false) => None,
        (None, None, false) => Some(format!(
            "the guest timed out after its last record ({} s)",
            timeout.as_secs()
        )),
        (None, Some(code), false) => Some(format!(
            "the guest exited with status {code} after its last record"
        )),
    };
    if let (Some(why), Some(last)) = (after, verdicts.last_mut()) {
        let steps = plans.last().map_or(0, |p| p.steps.len());
        *last = Verdict::Crashed(format!(
            "after step {steps} of {steps}: {why}{}",
            guest_said()
        ));
    }
    verdicts
}

#[cfg(test)]
mod tests {
    use op_driver::Outcome;
    use op_driver::guest::Record;

    use super::*;
    use crate::plan::plan;
    use crate::qemu::split;

    /// A sequence of two steps and what a sound guest reports for it.
    fn two_steps() -> Plan {
        plan(&checker::parse_sequence("spawn\nfork s=0\n").expect("parses"))
    }

    fn sound_records(p: &Plan, seq: u32) -> Vec<Record> {
        let mut out = vec![Record::Sequence {
            seq,
            free: p.start_free,
        }];
        for (i, e) in p.expected.iter().enumerate() {
            out.push(Record::Step {
                step: i as u32,
                outcome: e.outcome,
                free: e.free,
                probes: Vec::new(),
            });
        }
        out.push(Record::End {
            seq,
            free: p.start_free,
        });
        out
    }

    fn run_of(records: Vec<Record>, status: Option<i32>) -> GuestRun {
        let (sequences, record_error) = split(records);
        GuestRun {
            sequences,
            record_error,
            status,
            output: "guest: ...".into(),
            elapsed: Duration::ZERO,
            report_error: None,
        }
    }

    fn judged(records: Vec<Record>, status: Option<i32>) -> Vec<String> {
        judged_run(&run_of(records, status))
    }

    /// The verdicts of a batch of two `two_steps` sequences, each as its first line.
    fn judged_run(run: &GuestRun) -> Vec<String> {
        let p = two_steps();
        judge(&[&p, &p], run, Duration::from_secs(9))
            .into_iter()
            .map(|v| match v {
                Verdict::Pass => "pass".to_string(),
                Verdict::Diverged(d) => format!("diverged {:?} at {}", d.kind, d.at + 1),
                Verdict::Crashed(why) => why.lines().next().unwrap_or("").to_string(),
            })
            .collect()
    }

    fn batch() -> Vec<Record> {
        let p = two_steps();
        let mut r = sound_records(&p, 0);
        r.extend(sound_records(&p, 1));
        r
    }

    #[test]
    fn a_sound_batch_passes() {
        assert_eq!(judged(batch(), Some(0)), ["pass", "pass"]);
    }

    #[test]
    fn a_missing_step_record_names_the_step() {
        // The last step's record is missing: the sequence ended early, which the comparison
        // reports at that step.
        let mut r = batch();
        r.remove(2); // sequence 0, step 1
        assert_eq!(judged(r, Some(0)), ["diverged ReturnValue at 2", "pass"]);
        let mut r = batch();
        r.remove(1); // sequence 0, step 0
        assert_eq!(
            judged(r, Some(0)),
            ["at step 1 of 2: the record of step 2 after a missing one (step 1 was due)"]
        );
    }

    #[test]
    fn an_extra_or_repeated_record_names_the_step() {
        let mut r = batch();
        let again = r[2].clone();
        r.insert(3, again); // step 1 of sequence 0 twice
        assert_eq!(
            judged(r, Some(0)),
            ["after step 2 of 2: the record of step 2 again or out of order (step 3 was due)"]
        );
        let mut r = batch();
        r.push(Record::Step {
            step: 0,
            outcome: Outcome::Ok(0),
            free: 0,
            probes: Vec::new(),
        });
        assert_eq!(
            judged(r, Some(0)),
            [
                "pass",
                "after step 2 of 2: a record after its end: the record of step 1 outside any sequence"
            ]
        );
    }

    /// A step record in its place but beyond the plan: the guest ran a step nobody asked for.
    #[test]
    fn a_step_beyond_the_plan_diverges() {
        let mut r = batch();
        r.insert(
            3,
            Record::Step {
                step: 2,
                outcome: Outcome::Ok(0),
                free: 0,
                probes: Vec::new(),
            },
        );
        assert_eq!(judged(r, Some(0)), ["diverged ReturnValue at 3", "pass"]);
    }

    #[test]
    fn records_of_the_wrong_sequence_are_refused() {
        let p = two_steps();
        let mut r = sound_records(&p, 0);
        r.extend(sound_records(&p, 5));
        assert_eq!(
            judged(r, Some(0)),
            [
                "pass",
                "at step 1 of 2: a record of sequence 5 where sequence 1 was due"
            ]
        );
    }

    #[test]
    fn a_guest_that_fails_after_its_last_record_fails_the_last_sequence() {
        assert_eq!(
            judged(batch(), Some(3)),
            [
                "pass",
                "after step 2 of 2: the guest exited with status 3 after its last record"
            ]
        );
        assert_eq!(
            judged(batch(), None),
            [
                "pass",
                "after step 2 of 2: the guest timed out after its last record (9 s)"
            ]
        );
    }

    #[test]
    fn a_crash_or_a_timeout_names_the_step_it_stopped_at() {
        let mut r = batch();
        r.truncate(6); // sequence 1 has run step 0 only
        assert_eq!(
            judged(r.clone(), Some(134)),
            [
                "pass",
                "at step 2 of 2: the guest crashed (exit status 134)"
            ]
        );
        assert_eq!(
            judged(r, None),
            ["pass", "at step 2 of 2: the guest timed out after 9 s"]
        );
    }

    /// A report as words, read back as the runner reads one.
    fn run_of_words(words: &[u32], status: Option<i32>) -> Vec<String> {
        let (records, error) = op_driver::guest::decode_report_prefix(words);
        let mut run = run_of(records, status);
        run.report_error = error.map(|e| format!("{e:?}"));
        judged_run(&run)
    }

    #[test]
    fn a_torn_report_keeps_what_came_before_and_fails_what_follows() {
        let mut words = Vec::new();
        for r in batch() {
            r.encode(&mut words);
        }
        // Cut inside the last record (the guest died while writing it): sequence 0 stands.
        let torn = &words[..words.len() - 2];
        assert_eq!(
            run_of_words(torn, Some(3)),
            [
                "pass",
                "after step 2 of 2: the guest crashed (exit status 3); Truncated(34)"
            ]
        );
        // Words that are no record after a whole batch fail its last sequence.
        let mut garbage = words.clone();
        garbage.extend([99, 1, 2]);
        assert_eq!(
            run_of_words(&garbage, Some(0)),
            [
                "pass",
                "after step 2 of 2: an unreadable record after its end; UnknownTag(38)"
            ]
        );
        assert_eq!(run_of_words(&words, Some(0)), ["pass", "pass"]);
    }
}
